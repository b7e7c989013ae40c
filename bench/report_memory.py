"""What the report stage adds to an audit's memory at N clips: the clip table, the search copies, the HTML map.

    PYTHONPATH=. python bench/report_memory.py --clips 300000

Synthetic inputs of the real shapes (1280 + 384-d vectors; the per-clip fields the checks record: map position,
cluster, similarities, a 3-step timeline, core, box, gain); RSS sampled every 10 ms from the stage's start.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd

from auditor.cliptable import ClipTable, build_table, write_table
from auditor.report import write_html
from auditor.searchcopies import write_copies
from taxonomy_core import schema as S


def rss_gb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 1e9


def inputs(n: int):
    rng = np.random.default_rng(0)
    ids = [f"{i:020x}" for i in range(n)]
    clips = pd.DataFrame({
        S.CLIP_ID: ids, S.ROW: np.arange(n), S.LABEL: [f"class_{i % 100:03d}" for i in range(n)],
        S.SPLIT: ["train"] * n, S.VIDEO: [f"/data/v{i}.mp4" for i in range(n)], S.START: 0.0, S.END: 3.0,
    })  # fmt: skip
    xy = rng.normal(size=(n, 2))
    timeline = {"times": [0.5, 1.5, 2.5], "similarity": [0.66, 0.67, 0.68], "text_similarity": [0.67, 0.69, 0.68]}
    per_clip = [
        {c: {"umap": [float(x), float(y)], "cluster": i % 50} for i, (c, (x, y)) in enumerate(zip(ids, xy))},
        {c: {"own_similarity": 0.7, "knn_agreement": 1.0} for c in ids},
        {c: {"timeline": dict(timeline), "core": [0.0, 3.0], "shot_cuts": []} for c in ids},
        {c: {"best_box": [0.333, 0.0, 0.667, 0.333], "crop_gain": -0.09} for c in ids},
    ]
    ctx = SimpleNamespace(clips=clips, position={c: i for i, c in enumerate(ids)}, rows=np.arange(n))
    vectors = rng.normal(size=(n, 1280)).astype(np.float32), rng.normal(size=(n, 384)).astype(np.float32)
    return ctx, [SimpleNamespace(clips=p) for p in per_clip], vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=300_000)
    n = parser.parse_args().clips
    ctx, results, (vectors, text) = inputs(n)
    base, peak, done = rss_gb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_gb())
            time.sleep(0.01)

    threading.Thread(target=sample, daemon=True).start()
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        table = ClipTable(build_table(ctx, results, {r: ["likely_mislabel"] for r in range(0, n, 30)}))
        made = time.perf_counter() - t0
        write_table(table.table, out, "bench")
        write_copies(out, "bench", vectors, text)
        files, files_peak = time.perf_counter() - t0, peak[0]
        report = {"dataset": "synthetic", "model": "m", "generated_at": "-", "classes": [], "findings": []}
        write_html(report, table, {}, f"{out}/report.html")
        done.set()
        print(f"{n} clips; RSS at the stage's start {base:.2f} GB")
        print(f"clip table {made:.1f} s; table and copies written {files:.1f} s, +{files_peak - base:.2f} GB")
        print(f"with the HTML report {time.perf_counter() - t0:.1f} s, +{peak[0] - base:.2f} GB")


if __name__ == "__main__":
    main()
