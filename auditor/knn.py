"""Exact cosine k-NN by blocked matrix products: O(N*k) memory, never the N x N matrix."""

from __future__ import annotations

import numpy as np

BLOCK = 1024


def knn(vectors: np.ndarray, k: int, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Indices and similarities of each row's k nearest other rows (unit vectors), best first."""
    n = len(vectors)
    k = min(k, n - 1)
    idx = np.empty((n, k), dtype=np.int64)
    sim = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, block):
        scores = vectors[start : start + block] @ vectors.T
        rows = np.arange(scores.shape[0])
        scores[rows, start + rows] = -np.inf  # not one's own neighbour
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1)
        idx[start : start + block] = np.take_along_axis(top, order, axis=1)
        sim[start : start + block] = np.take_along_axis(top_scores, order, axis=1)
    return idx, sim
