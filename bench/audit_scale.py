"""Audit time on 10k and 100k synthetic clip vectors (512-d, clustered, planted defects), by check.

    python bench/audit_scale.py [--sizes 10000 100000]

Temporal and spatial checks read timeline/crop vectors from Milvus and are timed by the demo audit
instead (they are per-clip and linear). Peak memory is reported to show there is no N x N matrix.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from synthetic import synthetic_dataset  # noqa: E402

from auditor.checks import build_checks, run_checks  # noqa: E402

CHECKS = ["tightness", "mislabels", "duplicates", "search", "diversity", "structure", "shortcut"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    for n in args.sizes:
        planted = synthetic_dataset(n)
        ctx = planted.context
        t0 = time.perf_counter()
        _ = ctx.neighbours  # shared by several checks: timed on its own
        knn_s = time.perf_counter() - t0
        results = run_checks(ctx, build_checks(CHECKS))
        total = knn_s + sum(r.seconds for r in results)
        rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(f"\nN={n} x 512-d, 50 classes: total {total:.1f}s, peak RSS {rss_gb:.1f} GB")
        print(f"  {'knn (k=10, blocked)':24s} {knn_s:8.1f}s")
        for r in results:
            note = f"  ERROR {r.error.splitlines()[0]}" if r.error else ""
            print(f"  {r.name:24s} {r.seconds:8.1f}s  {len(r.findings):6d} findings{note}")


if __name__ == "__main__":
    main()
