"""Exact cosine k-NN by blocked matrix products: O(N*k) memory, never the N x N matrix."""

from __future__ import annotations

import numpy as np

BLOCK = 1024


def knn(vectors: np.ndarray, k: int, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Indices and similarities of each row's k nearest other rows (unit vectors), best first.

    torch's top-k is used for the selection: numpy's argpartition over a 1024 x 100k block is
    ~50x slower (docs/benchmarks.md). torch is imported here, not at start-up of the app.
    """
    import torch

    n = len(vectors)
    k = min(k, n - 1)
    x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    idx = np.empty((n, k), dtype=np.int64)
    sim = np.empty((n, k), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, n, block):
            scores = x[start : start + block] @ x.T
            rows = torch.arange(scores.shape[0])
            scores[rows, start + rows] = -torch.inf  # not one's own neighbour
            values, indices = torch.topk(scores, k, dim=1)
            idx[start : start + block] = indices.numpy()
            sim[start : start + block] = values.numpy()
    return idx, sim
