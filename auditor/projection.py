"""The map: UMAP to 2-D (cosine, seeded) and HDBSCAN clusters on it."""

from __future__ import annotations

import logging
import warnings

import numpy as np

log = logging.getLogger(__name__)


def project(vectors: np.ndarray, seed: int = 0, max_fit: int = 200_000) -> np.ndarray:
    """2-D coordinates; above `max_fit` points, UMAP is fitted on a seeded sample and the rest transformed."""
    n = len(vectors)
    if n < 5:
        return _pca2(vectors)
    import umap

    reducer = umap.UMAP(n_components=2, metric="cosine", n_neighbors=min(15, n - 1), min_dist=0.1, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by setting random_state": seeded means serial
        if n <= max_fit:
            return reducer.fit_transform(vectors).astype(np.float32)
        sample = np.random.default_rng(seed).choice(n, max_fit, replace=False)
        reducer.fit(vectors[sample])
        return reducer.transform(vectors).astype(np.float32)


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
