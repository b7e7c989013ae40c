"""Rewrite a schema-3 audit folder (the clips inside report.json) as schema 4 (a clip table and search copies
beside it), without auditing again: what `bench/app_scale.py` needs from an audit made before schema 4.

    python bench/report_v4.py --audit AUDIT_DIR/report --uri AUDIT_DIR/store.db

The search copies come from the store's clip matrix (the int8 copies the audit read, one pass over every clip
shard: minutes at 3 x 10^5 on a Lite file); the folder is changed in place, report.json last.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from auditor.cliptable import ClipTable, table_name, write_table
from auditor.context import AuditContext
from auditor.report import SCHEMA_VERSION, write_json
from auditor.searchcopies import copies_name, write_copies
from taxonomy_core.store import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audit", required=True)
    parser.add_argument("--uri", required=True)
    args = parser.parse_args()
    folder = Path(args.audit)
    t0 = time.perf_counter()
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    if report.get("schema_version") != 3:
        raise SystemExit(f"{folder / 'report.json'} has schema {report.get('schema_version')!r}, not 3")
    clips = ClipTable.from_records(report.pop("clips"))
    run_id = report["run_id"]
    write_table(clips.table, folder, run_id)
    print(f"clip table: {len(clips)} clips in {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    store = open_store(args.uri)
    try:
        ctx = AuditContext.from_store(store, store.layout(report["dataset"], report["model"]), None)
    finally:
        store.close()
    order = np.array([ctx.position[c] for c in clips.column("clip_id")])
    text = ctx.text_vectors[order] if ctx.text_vectors is not None else None
    write_copies(folder, run_id, ctx.vectors[order], text)
    print(f"search copies from the store's clip matrix in {time.perf_counter() - t0:.1f} s", flush=True)
    report |= {"schema_version": SCHEMA_VERSION, "clip_count": len(clips)}
    report |= {"clip_table": table_name(run_id), "search_copies": copies_name(run_id)}
    write_json(report, folder / "report.json")


if __name__ == "__main__":
    main()
