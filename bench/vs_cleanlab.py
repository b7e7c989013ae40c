"""Our audit vs cleanlab's Datalab on the same vectors: time, and recall of planted mislabels and cross-split copies.

pip install -e '.[bench]' && python bench/vs_cleanlab.py [--n 10000]
python bench/vs_cleanlab.py --real FOLDER   # real footage (tests/real_footage.py; needs Debian's opencv-doc)

The real mode indexes the real-footage fixture once with the offline model into FOLDER, relabels a few rows
(planted mislabels), and gives both tools the same stored vectors. It has a synonym pair (one film's clips under
`rabbit` and `bunny`), a static street camera and a copy of a training clip in test: no planted mislabel there.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))  # tests/real_footage.py

import numpy as np  # noqa: E402
from synthetic import synthetic_dataset  # noqa: E402

from auditor.checks import build_checks, run_checks  # noqa: E402
from auditor.reconcile import reconcile  # noqa: E402


def ours(planted, checks=("mislabels", "duplicates")) -> tuple[float, set[int], set[frozenset[int]]]:
    """The findings the audit reports (reconciled: a confusable pair's clips are not accused one by one)."""
    t0 = time.perf_counter()
    results = run_checks(planted.context, build_checks(list(checks)))
    findings, _ = reconcile(results)
    seconds = time.perf_counter() - t0
    at = {int(r): i for i, r in enumerate(planted.context.rows)}  # findings name manifest rows; Datalab positions
    mislabels = {at[f.rows[0]] for f in findings if f.kind == "likely_mislabel"}
    pairs = {  # each accused evaluation copy with the training original named as its evidence
        frozenset((at[copy], at[e.row]))
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


# Real footage: (manifest row, wrong label) planted over tests/real_footage.py's taxonomy.
REAL_MISLABELS = {5: "phone_call", 9: "bicycle", 19: "street", 21: "cartoon", 36: "street", 27: "street"}


def real_dataset(folder: Path):
    """The real-footage fixture indexed with the offline model, a few rows relabelled: the same Planted shape."""
    import csv

    from synthetic import Planted

    from auditor.context import AuditContext
    from indexer.embedders import load_embedder
    from indexer.pipeline import IndexConfig, run_indexing
    from taxonomy_core.store import open_store
    from tests import real_footage

    manifest, answers = real_footage.build(folder)
    rows = list(csv.DictReader(manifest.open(newline="")))
    for row, label in REAL_MISLABELS.items():
        rows[row]["label"] = label
    planted_manifest = folder / "mislabelled.csv"
    with planted_manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    config = IndexConfig(dataset="vs_cleanlab", model="effnet-lite0", uri=str(folder / "real.db"), workers=1)
    run_indexing(planted_manifest, config, embedder=load_embedder("effnet-lite0", device="cpu"))
    store = open_store(config.uri)
    ctx = AuditContext.from_store(store, store.layout("vs_cleanlab"))
    at = {int(r): i for i, r in enumerate(ctx.rows)}
    truth = ctx.labels.copy()
    for row in REAL_MISLABELS:
        truth[at[row]] = next(r["label"] for i, r in enumerate(csv.DictReader(manifest.open(newline=""))) if i == row)
    copies = {(at[answers.copy_original], at[answers.copy_row])}
    return Planted(ctx, truth, {at[r] for r in REAL_MISLABELS}, copies), {int(r) for r in ctx.rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--real", type=Path, default=None, help="folder for the real-footage fixture and its store")
    args = parser.parse_args()
    if args.real:
        planted, rows = real_dataset(args.real)
        args.n = len(rows)
        what = f"real footage, {len(set(planted.context.labels))} classes, offline model"
    else:
        planted = synthetic_dataset(args.n)
        what = "512-d, 50 classes"
    truth_pairs = {frozenset(p) for p in planted.copies}
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; N={args.n} ({what}), "
        f"{len(planted.mislabelled)} planted mislabels, {len(truth_pairs)} planted train/test copies"
    )
    checks = ("mislabels", "duplicates", "structure") if args.real else ("mislabels", "duplicates")
    for name, run in (("taxonomy-auditor", lambda p: ours(p, checks)), ("cleanlab Datalab", datalab)):
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
