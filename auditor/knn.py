"""Cosine k-NN of every clip: exact below EXACT_MAX clips, else clustered (IVF) with a measured recall.

Exact is blocked matrix products (O(N*k) memory, never the N x N matrix). Above EXACT_MAX, k-means lists
(faiss) cut the work: each list's clips are scored, in one matrix product, against the clips of the `probe`
lists nearest to it. `probe` is the smallest that reaches the target recall@k on a seeded calibration sample,
and the recall reported is measured on another sample against exact search, so it is never a guess.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

BLOCK = 1024
EXACT_MAX = 20_000  # exact takes seconds up to here (3 s at 10k x 512 on 2 cores)
TARGET_RECALL = 0.95
SAMPLE = 500  # clips whose exact neighbours calibrate the probe count, and as many again to measure recall
SCORES_PER_BLOCK = 1 << 25  # query x candidate scores held at once (128 MB of float32)


def blocked_top_k(
    score: Callable[[int, int], np.ndarray], n: int, queries: int, k: int, block: int, threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of `n` rows for each of `queries` queries: ([queries, k] positions, scores), best first, ties by
    position. `score(start, stop)` gives the [queries, stop - start] scores of one block of rows, so no more than a
    block's scores exist at once; `threads` scan every threads-th block (BLAS and numpy's casts release the GIL)."""
    k = min(k, n)
    if k <= 0:
        return np.zeros((queries, 0), np.int64), np.zeros((queries, 0), np.float32)

    def scan(starts: list[int]) -> tuple[np.ndarray, np.ndarray]:
        best_i, best_s = np.zeros((queries, 0), np.int64), np.zeros((queries, 0), np.float32)
        for start in starts:
            scores = score(start, min(start + block, n))
            keep = min(k, scores.shape[1])
            part = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
            best_i = np.concatenate([best_i, part + start], axis=1)
            best_s = np.concatenate([best_s, np.take_along_axis(scores, part, axis=1)], axis=1)
            best_i, best_s = _k_best(best_i, best_s, k)
        return best_i, best_s

    starts = list(range(0, n, block))
    lanes = [starts[i::threads] for i in range(min(threads, len(starts)))]
    if len(lanes) > 1:
        with ThreadPoolExecutor(len(lanes)) as pool:
            parts = list(pool.map(scan, lanes))
    else:
        parts = [scan(starts)]
    idx, sim = np.hstack([p[0] for p in parts]), np.hstack([p[1] for p in parts])
    order = np.lexsort((idx, -sim), axis=1)[:, :k]
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(sim, order, axis=1)


def _k_best(idx: np.ndarray, sim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k highest of each row (unordered), when there are more."""
    if sim.shape[1] <= k:
        return idx, sim
    keep = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    return np.take_along_axis(idx, keep, axis=1), np.take_along_axis(sim, keep, axis=1)


@dataclass(frozen=True)
class Neighbours:
    """Each clip's k nearest others (positions, cosines, best first), how they were found, and their recall@k."""

    idx: np.ndarray  # [N, k] int64
    sim: np.ndarray  # [N, k] float32
    method: str  # "exact", "ivf" (clustered, in memory) or "milvus" (the store's own index)
    recall: float | None = None  # against exact, on a seeded sample; None when exact
    seconds: float = 0.0
    detail: str = ""  # e.g. "316 lists, probe 8"
    requested_k: int | None = None  # the configured knn_k, when fewer clips allowed only a smaller k

    def summary(self) -> dict:
        recall = None if self.recall is None else round(self.recall, 4)
        k = self.idx.shape[1]
        clamped = self.requested_k is not None and self.requested_k > k
        note = f"knn_k = {self.requested_k} was clamped to {k}: the dataset has {k + 1} clips" if clamped else None
        return {"method": self.method, "k": k, "recall": recall, "seconds": round(self.seconds, 2),
                "detail": self.detail, "requested_k": self.requested_k, "clamped": note}  # fmt: skip


def knn(vectors: np.ndarray, k: int, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Indices and similarities of each row's k nearest other rows (unit vectors), best first; exact.

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


def neighbours(
    vectors: np.ndarray, k: int, *, seed: int = 0, exact_max: int = EXACT_MAX, target: float = TARGET_RECALL
) -> Neighbours:
    """The neighbours every check and the map share: exact for small sets, clustered with measured recall above."""
    t0 = time.perf_counter()
    if len(vectors) <= exact_max:
        idx, sim = knn(vectors, k)
        return Neighbours(idx, sim, "exact", None, time.perf_counter() - t0)
    lists = ClusteredLists.build(vectors, seed)
    calibration, check = np.array_split(_sample(len(vectors), 2 * SAMPLE, seed), 2)
    probe = lists.probe_for(vectors, k, calibration, target)
    idx, sim = lists.search(vectors, k, probe)
    recall = sample_recall(vectors, idx, check)
    detail = f"{lists.count} lists, probe {probe}"
    log.info("k-NN by %s: recall@%d %.3f on %d clips", detail, k, recall, len(check))
    return Neighbours(idx, sim, "ivf", recall, time.perf_counter() - t0, detail)


def sample_recall(vectors: np.ndarray, idx: np.ndarray, sample: np.ndarray) -> float:
    """Share of the exact k nearest neighbours of `sample`'s clips that `idx` found."""
    k = idx.shape[1]
    exact = exact_rows(vectors, sample, k)
    return float(np.mean([len(set(idx[i]) & set(e)) / k for i, e in zip(sample, exact)]))


def exact_rows(vectors: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Exact k nearest other rows of a few rows (in blocks: never more than SCORES_PER_BLOCK scores at once)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    block = max(1, SCORES_PER_BLOCK // len(x))
    out = np.empty((len(rows), k), dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, len(rows), block):
            some = torch.from_numpy(np.asarray(rows[start : start + block]))
            scores = x[some] @ x.T
            scores[torch.arange(len(some)), some] = -torch.inf
            out[start : start + len(some)] = torch.topk(scores, k, dim=1).indices.numpy()
    return out


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).choice(n, min(n, size), replace=False)


@dataclass
class ClusteredLists:
    """Spherical k-means lists over the clips: members of each list and which lists lie nearest each list."""

    members: list[np.ndarray]  # positions per list
    order: np.ndarray  # [L, L] lists by centroid similarity to each list, itself first

    @property
    def count(self) -> int:
        return len(self.members)

    @classmethod
    def build(cls, vectors: np.ndarray, seed: int) -> ClusteredLists:
        import faiss

        n, d = vectors.shape
        count = int(np.clip(round(2 * math.sqrt(n)), 1, min(4096, n // 40)))  # faiss wants 39 points a list
        train = vectors[_sample(n, 40 * count, seed)]
        kmeans = faiss.Kmeans(d, count, niter=12, seed=seed, spherical=True, verbose=False)
        kmeans.train(np.ascontiguousarray(train, dtype=np.float32))
        _, assigned = kmeans.index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
        assigned = assigned[:, 0]
        members = [np.flatnonzero(assigned == c) for c in range(count)]
        order = np.argsort(-(kmeans.centroids @ kmeans.centroids.T), axis=1).astype(np.int32)
        keep = np.array([len(m) > 0 for m in members])
        remap = np.cumsum(keep) - 1
        order = np.array([remap[row[keep[row]]] for row in order[keep]], dtype=np.int32)
        return cls([m for m in members if len(m)], order)

    def candidates(self, home: int, probe: int, k: int) -> np.ndarray:
        """Members of the `probe` lists nearest list `home` (home's own first); at least k + 1 clips."""
        picked, total = [], 0
        for rank, other in enumerate(self.order[home]):
            if rank >= probe and total > k:
                break
            picked.append(self.members[other])
            total += len(self.members[other])
        return np.concatenate(picked)

    def probe_for(self, vectors: np.ndarray, k: int, sample: np.ndarray, target: float) -> int:
        """The fewest lists to probe for recall@k >= target (plus a margin for sampling error) on `sample`.

        A true neighbour is found when its list is among the `probe` nearest lists of the query's own list, so
        the recall of every probe count follows from the rank of each true neighbour's list: one exact search.
        """
        k = min(k, len(vectors) - 1)
        home = np.empty(len(vectors), dtype=np.int64)
        for c, m in enumerate(self.members):
            home[m] = c
        rank = np.argsort(self.order, axis=1)  # rank[a, b]: where list b stands among the lists nearest a
        needed = rank[home[sample][:, None], home[exact_rows(vectors, sample, k)]].ravel()
        want = min(1.0, target + 0.5 / math.sqrt(len(sample)))  # plus the worst-case standard error of a mean
        return int(np.sort(needed)[math.ceil(want * len(needed)) - 1]) + 1

    def search(self, vectors: np.ndarray, k: int, probe: int) -> tuple[np.ndarray, np.ndarray]:
        """Each clip's k nearest among the members of its home list's `probe` nearest lists.

        In float32. Scoring the lists in bfloat16 on an AMX CPU (then rescoring a shortlist) was tried: under a
        shared machine's load it ran 2x slower than float32 (10^5 x 1280 and 2 x 10^5 x 512, load 6-7), and
        oneDNN kept ~0.6 GB a 10^5 clips resident afterwards (a kernel per list shape), which the audit's memory
        target at 3 x 10^5 could not afford (docs/benchmarks.md).
        """
        import torch

        n = len(vectors)
        k = min(k, n - 1)
        x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
        idx = np.empty((n, k), dtype=np.int64)
        sim = np.empty((n, k), dtype=np.float32)
        with torch.inference_mode():
            for home, queries in enumerate(self.members):
                pool = torch.from_numpy(self.candidates(home, probe, k))
                block = max(1, SCORES_PER_BLOCK // len(pool))
                candidates = x[pool]
                for start in range(0, len(queries), block):
                    rows = queries[start : start + block]
                    scores = x[torch.from_numpy(rows)] @ candidates.T
                    own = torch.arange(len(rows))
                    scores[own, start + own] = -torch.inf  # home's members come first in the pool, in order
                    values, found = torch.topk(scores, min(k, len(pool) - 1), dim=1)
                    idx[rows] = pool[found].numpy()
                    sim[rows] = values.numpy()
        return idx, sim
