"""The map: UMAP to 2-D (cosine, seeded) and HDBSCAN clusters on it."""

from __future__ import annotations

import logging
import warnings

import numpy as np

log = logging.getLogger(__name__)
PROXY_DIMS = 32  # what UMAP gets beside precomputed neighbours (at 10^5 x 1280, its copy of the data was 0.5 GB)


def project(
    vectors: np.ndarray, seed: int = 0, max_fit: int = 100_000, neighbours: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """2-D coordinates; above `max_fit` points, UMAP is fitted on a seeded sample and the rest placed.

    `neighbours` (positions, cosines of each point's nearest others, as the audit context shares them) spare
    UMAP its own nearest-neighbour search: its graph is then built on the same neighbours every check used.
    Above `max_fit`, UMAP lays out a seeded sample (its own neighbours, on the vectors' principal axes) and every
    other point goes to the similarity-weighted mean of its shared neighbours already placed (O(N k), seconds
    at 10^6); only a point none of whose neighbours could be placed goes through UMAP's slower `transform`.
    """
    n = len(vectors)
    if n < 5:
        return _pca2(vectors)
    import umap

    graph = neighbours is not None and neighbours[0].shape[1] >= 2
    shared = graph and n <= max_fit
    n_neighbors = min(15, n - 1, neighbours[0].shape[1] + 1) if shared else min(15, n - 1)
    knn_graph = _with_self(*neighbours, n_neighbors) if shared else (None, None, None)
    reducer = umap.UMAP(
        n_components=2, metric="cosine", n_neighbors=n_neighbors, min_dist=0.1, random_state=seed,
        precomputed_knn=knn_graph,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by setting random_state": seeded means serial
        if shared:  # the graph is given: the data only places disconnected pieces of it, and UMAP copies it
            return reducer.fit_transform(_principal(vectors, PROXY_DIMS, seed)).astype(np.float32)
        if n <= max_fit:
            return reducer.fit_transform(vectors).astype(np.float32)
        proxy = _principal(vectors, PROXY_DIMS, seed)
        sample = np.sort(np.random.default_rng(seed).choice(n, max_fit, replace=False))
        points = np.full((n, 2), np.nan, np.float32)
        points[sample] = reducer.fit_transform(proxy[sample])
        if graph:
            points = place_by_neighbours(points, *neighbours)
        missing = np.flatnonzero(np.isnan(points[:, 0]))
        if len(missing):
            log.info("map: %d points placed by UMAP's transform (no placed neighbour)", len(missing))
            points[missing] = reducer.transform(proxy[missing])
        return points


def place_by_neighbours(points: np.ndarray, idx: np.ndarray, sim: np.ndarray, rounds: int = 4) -> np.ndarray:
    """Unplaced rows (NaN) at the similarity-weighted mean of their placed neighbours, `rounds` times over (each
    round places points whose neighbours the previous one placed). Rows with no placed neighbour stay NaN."""
    points = points.copy()
    weights = np.maximum(sim, 0.0).astype(np.float32) + 1e-6
    for _ in range(rounds):
        todo = np.flatnonzero(np.isnan(points[:, 0]))
        if not len(todo):
            break
        before = points.copy()  # a round reads only what the rounds before it placed
        for start in range(0, len(todo), 65_536):
            rows = todo[start : start + 65_536]
            near = before[idx[rows]]  # [r, k, 2]
            w = np.where(np.isnan(near[..., 0]), 0.0, weights[rows])
            total = w.sum(axis=1)
            ok = total > 0
            placed = np.einsum("rk,rkd->rd", w, np.nan_to_num(near)) / np.maximum(total, 1e-12)[:, None]
            points[rows[ok]] = placed[ok]
    return points


def _principal(vectors: np.ndarray, dims: int, seed: int, sample: int = 20_000) -> np.ndarray:
    """The vectors on the `dims` axes that carry most of their energy (uncentred, so cosines stay close; found on a
    seeded sample): a small stand-in for them."""
    if vectors.shape[1] <= dims:
        return vectors
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), min(len(vectors), sample), replace=False))
    some = vectors[rows].astype(np.float64)
    _, axes = np.linalg.eigh(some.T @ some)  # ascending: the last columns carry the most
    return np.ascontiguousarray(vectors @ axes[:, ::-1][:, :dims].astype(np.float32))


def _with_self(idx: np.ndarray, sim: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, None]:
    """UMAP's precomputed k-NN, `width` columns: each point is its own first neighbour; cosine distances."""
    n = len(idx)
    own = np.arange(n, dtype=idx.dtype)[:, None]
    distances = np.clip(1.0 - sim, 0.0, 2.0).astype(np.float32)
    indices = np.hstack([own, idx])[:, :width]
    return indices, np.hstack([np.zeros((n, 1), np.float32), distances])[:, :width], None


def cluster(points: np.ndarray, min_cluster_size: int = 5) -> np.ndarray:
    """HDBSCAN labels per point (-1: noise)."""
    if len(points) < max(2 * min_cluster_size, 4):
        return np.full(len(points), -1)
    import hdbscan

    return hdbscan.HDBSCAN(min_cluster_size=min_cluster_size).fit_predict(points).astype(int)


def _pca2(vectors: np.ndarray) -> np.ndarray:
    centred = vectors - vectors.mean(axis=0)
    if len(vectors) < 2:
        return np.zeros((len(vectors), 2), np.float32)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = centred @ vt[:2].T
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1]))).astype(np.float32)
