"""Our audit vs cleanlab's Datalab on the same vectors: time, and recall of planted mislabels and cross-split copies.

pip install -e '.[bench]' && python bench/vs_cleanlab.py [--n 10000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from synthetic import synthetic_dataset  # noqa: E402

from auditor.checks import build_checks, run_checks  # noqa: E402


def ours(planted) -> tuple[float, set[int], set[frozenset[int]]]:
    t0 = time.perf_counter()
    results = run_checks(planted.context, build_checks(["mislabels", "duplicates"]))
    seconds = time.perf_counter() - t0
    findings = [f for r in results for f in r.findings]
    mislabels = {f.rows[0] for f in findings if f.kind == "likely_mislabel"}
    pairs = {  # each accused evaluation copy with the training original named as its evidence
        frozenset((copy, e.row))
        for f in findings
        if f.kind == "split_leak"
        for copy in f.rows
        for e in f.evidence
        if e.role == "train_original"
    }
    return seconds, mislabels, pairs


def datalab(planted) -> tuple[float, set[int], set[frozenset[int]]]:
    from cleanlab import Datalab

    ctx = planted.context
    t0 = time.perf_counter()
    lab = Datalab(data={"label": list(ctx.labels)}, label_name="label", verbosity=0)
    lab.find_issues(features=ctx.vectors, issue_types={"label": {}, "near_duplicate": {}})
    seconds = time.perf_counter() - t0
    label_issues = lab.get_issues("label")
    mislabels = set(np.flatnonzero(label_issues["is_label_issue"].to_numpy()))
    dups = lab.get_issues("near_duplicate")
    pairs = set()
    for i, row in dups[dups["is_near_duplicate_issue"]].iterrows():
        pairs |= {frozenset((int(i), int(j))) for j in row["near_duplicate_sets"]}
    return seconds, mislabels, pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    planted = synthetic_dataset(args.n)
    truth_pairs = {frozenset(p) for p in planted.copies}
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; N={args.n} x 512-d, 50 classes, "
        f"{len(planted.mislabelled)} planted mislabels, {len(truth_pairs)} planted train/test copies"
    )
    for name, run in (("taxonomy-auditor", ours), ("cleanlab Datalab", datalab)):
        seconds, mislabels, pairs = run(planted)
        recall_m = len(mislabels & planted.mislabelled) / len(planted.mislabelled)
        precision_m = len(mislabels & planted.mislabelled) / max(1, len(mislabels))
        recall_c = len(pairs & truth_pairs) / len(truth_pairs)
        print(
            f"{name:18s} {seconds:7.1f}s  mislabels recall {recall_m:.2f} precision {precision_m:.2f}  "
            f"cross-split copies recall {recall_c:.2f} (flagged as leaks across splits: "
            f"{'yes' if name.startswith('tax') else 'no split notion'})"
        )


if __name__ == "__main__":
    main()
