"""What the audit's thumbnail pass costs at N clips: its time and what it adds to memory, on a real store.

    PYTHONPATH=. python bench/thumbs_file.py --audit AUDIT_DIR --uri STORE_URI

Writes `thumbs.<run_id>.bin` into AUDIT_DIR (a schema-4 folder `bench/audit_scale.py --store` made, or a copy of
one) as the audit's report stage does: every clip of its clip table, read from the store shard by shard. The store
is opened as the audit opens it (Milvus Lite runs inside this process, so its memory is in this process's RSS,
sampled every 10 ms from the pass's start). Also sets report.json's `thumbnails` to the file's name.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

from auditor.thumbfile import ThumbnailFile, thumbs_name, write_thumbnails
from auditor.workspace import open_audit
from taxonomy_core.atomic import write_atomic
from taxonomy_core.store import open_store


def rss_gb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audit", required=True)
    parser.add_argument("--uri", required=True)
    args = parser.parse_args()
    folder = Path(args.audit).resolve()
    audit = open_audit(folder, (folder,))
    run_id, ids = audit.report["run_id"], audit.clips.column("clip_id").tolist()
    store = open_store(args.uri)
    layout = store.layout(audit.report["dataset"], audit.report["model"])
    print(f"{len(ids)} clips, {layout.shards} shards; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    base, peak, done = rss_gb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_gb())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    path = write_thumbnails(store, layout, folder, run_id, ids)
    took = time.perf_counter() - t0
    done.set()
    sampler.join()
    store.close()
    held = ThumbnailFile(path, run_id, len(ids))
    lacking = int((held.index[:, 0] < 0).sum())
    print(f"wrote {path.name}: {path.stat().st_size / 1e6:.0f} MB, {path.stat().st_size / len(ids):.0f} B a clip, "
          f"{lacking} clips the store did not return; {took:.1f} s; RSS {base:.2f} GB before, peak "
          f"{peak[0]:.2f} GB (+{peak[0] - base:.2f} GB)")  # fmt: skip
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    write_atomic(folder / "report.json", json.dumps({**report, "thumbnails": thumbs_name(run_id)}))
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
