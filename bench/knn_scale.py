"""The shared k-NN in memory at 10^5-10^6 clips: clustered (the audit's path above 20k clips) against exact.

    python bench/knn_scale.py [--sizes 100000 1000000] [--dim 512]

Vectors are bench/synthetic.py's (50 Gaussian classes, cosine ~0.7 to their centre; the hard case for
clustered search, since a class has no finer structure). Exact search over all N is too slow to run at 10^6,
so its time is measured on 1,024 query rows and scaled by N / 1,024; recall@10 of the clustered search is
measured against exact on 1,000 seeded rows it did not calibrate on.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

from auditor.knn import exact_rows, neighbours, sample_recall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for n in args.sizes:
        x = clustered(n, args.dim)
        t0 = time.perf_counter()
        found = neighbours(x, args.k, exact_max=0)
        seconds = time.perf_counter() - t0
        check = np.random.default_rng(123).choice(n, 1000, replace=False)
        t0 = time.perf_counter()
        exact_rows(x, np.arange(1024), args.k)
        exact = (time.perf_counter() - t0) * n / 1024
        print(f"N={n:,} x {args.dim}: clustered {seconds:.0f}s ({found.detail}), recall@{args.k} "
              f"{sample_recall(x, found.idx, check):.3f} on 1,000 held-out rows "
              f"(calibration sample said {found.recall:.3f}); exact would take ~{exact:.0f}s; "
              f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB; "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip


def clustered(n: int, dim: int, classes: int = 50, seed: int = 0) -> np.ndarray:
    """bench/synthetic.py's class clusters, made in chunks so 10^6 x 512 needs only the result's memory."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    x = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        m = min(n, start + 100_000) - start
        chunk = centres[rng.integers(0, classes, m)] + rng.normal(size=(m, dim)).astype(np.float32)
        x[start : start + m] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return x


if __name__ == "__main__":
    main()
