"""The map: UMAP to 2-D (cosine, seeded) and HDBSCAN clusters on it."""

from __future__ import annotations

import logging
import warnings

import numpy as np

log = logging.getLogger(__name__)
PROXY_DIMS = 32  # what UMAP gets beside precomputed neighbours (at 10^5 x 1280, its copy of the data was 0.5 GB)


def project(
    vectors: np.ndarray, seed: int = 0, max_fit: int = 200_000, neighbours: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """2-D coordinates; above `max_fit` points, UMAP is fitted on a seeded sample and the rest transformed.

    `neighbours` (positions, cosines of each point's nearest others, as the audit context shares them) spare
    UMAP its own nearest-neighbour search: its graph is then built on the same neighbours every check used.
    """
    n = len(vectors)
    if n < 5:
        return _pca2(vectors)
    import umap

    shared = neighbours is not None and n <= max_fit and neighbours[0].shape[1] >= 2
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
        sample = np.random.default_rng(seed).choice(n, max_fit, replace=False)
        reducer.fit(vectors[sample])
        return reducer.transform(vectors).astype(np.float32)


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
