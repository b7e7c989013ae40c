"""The proposed fixed manifest: relabels, trims and drops applied to a copy, in the input's own format."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

from taxonomy_core.edits import Edit
from taxonomy_core.findings import Finding
from taxonomy_core.formats import AUTOML_SPLITS, Manifest


def proposed_edits(findings: list[Finding], excluded: dict[int, str]) -> list[Edit]:
    """Every fix the audit can apply mechanically; drops win over other edits of the same row."""
    edits: dict[str, Edit] = {}
    for row, reason in excluded.items():
        edits[f"drop:{row}"] = Edit(row, "drop", reason, "invalid_annotation")
    for f in findings:
        s = f.suggestion or {}
        if f.kind == "likely_mislabel" and "label" in s:
            row = s.get("row", f.rows[0])
            edits.setdefault(f"relabel:{row}", Edit(row, "relabel", s["label"], f.kind))
        elif f.kind == "temporal_looseness":
            edits.setdefault(f"trim:{f.rows[0]}", Edit(f.rows[0], "trim", (s["start"], s["end"]), f.kind))
        elif f.kind == "split_leak" and "drop" in s:
            edits.setdefault(f"drop:{s['drop']}", Edit(s["drop"], "drop", f.message, f.kind))
    dropped = {e.row for e in edits.values() if e.action == "drop"}
    return sorted(
        (e for e in edits.values() if e.action == "drop" or e.row not in dropped), key=lambda e: (e.row, e.action)
    )


def write_fixed_manifest(manifest: Manifest, edits: list[Edit], out_dir: Path) -> Path:
    """Write the edited copy next to the report; the input file is never touched."""
    relabel = {e.row: e.value for e in edits if e.action == "relabel"}
    trim = {e.row: e.value for e in edits if e.action == "trim"}
    drop = {e.row for e in edits if e.action == "drop"}
    writer = WRITERS.get(manifest.format, _write_generic_from_clips)
    return writer(manifest, relabel, trim, drop, out_dir)


def _fmt(seconds: float) -> str:
    return f"{seconds:.2f}".rstrip("0").rstrip(".")


def _write_table(manifest, relabel, trim, drop, out_dir) -> Path:
    path = Path(manifest.path)
    suffix = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}[manifest.format]
    target = out_dir / f"fixed_manifest{suffix}"
    if manifest.format == "jsonl":
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        frame = None
    else:
        frame = (
            pd.read_parquet(path)
            if manifest.format == "parquet"
            else pd.read_csv(path, dtype=str, keep_default_na=False)
        )
        records = frame.to_dict("records")
    columns = {
        c.strip().lower(): c for c in (frame.columns if frame is not None else records[0].keys() if records else [])
    }
    out = []
    for row, record in enumerate(records):
        if row in drop:
            continue
        record = dict(record)
        if row in relabel:
            record[columns.get("label", "label")] = relabel[row]
        if row in trim:
            start, end = trim[row]
            record[columns.get("start", "start")] = start if manifest.format != "csv" else _fmt(start)
            record[columns.get("end", "end")] = end if manifest.format != "csv" else _fmt(end)
        out.append(record)
    if manifest.format == "jsonl":
        target.write_text("".join(json.dumps(r, default=str) + "\n" for r in out), encoding="utf-8")
    elif manifest.format == "parquet":
        pd.DataFrame(out, columns=frame.columns).to_parquet(target)
    else:
        pd.DataFrame(out, columns=frame.columns).to_csv(target, index=False)
    return target


def _write_automl(manifest, relabel, trim, drop, out_dir) -> Path:
    target = out_dir / "fixed_manifest.csv"
    with open(manifest.path, newline="", encoding="utf-8-sig") as handle, target.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        for row, cells in enumerate(csv.reader(handle)):
            if row in drop:
                continue
            offset = 1 if cells and cells[0].strip().upper() in AUTOML_SPLITS else 0
            if row in relabel:
                cells[offset + 1] = relabel[row]
            if row in trim:
                cells = cells[: offset + 2] + [_fmt(trim[row][0]), _fmt(trim[row][1])]
            writer.writerow(cells)
    return target


def _write_kinetics(manifest, relabel, trim, drop, out_dir) -> Path:
    """Labels and drops only: a Kinetics row names a file, and trimming it would break the name."""
    frame = pd.read_csv(manifest.path, dtype=str, keep_default_na=False)
    label = next(c for c in frame.columns if c.strip().lower() == "label")
    for row, value in relabel.items():
        frame.loc[row, label] = value
    target = out_dir / "fixed_manifest.csv"
    frame.drop(index=sorted(drop)).to_csv(target, index=False)
    return target


def _write_generic_from_clips(manifest, relabel, trim, drop, out_dir) -> Path:
    """Formats without a table of their own (a folder per class) get a generic CSV."""
    target = out_dir / "fixed_manifest.csv"
    rows = []
    for clip in manifest.clips:
        if clip.row in drop:
            continue
        start, end = trim.get(clip.row, (clip.start, clip.end))
        rows.append(
            {
                "video": clip.video,
                "start": "" if start is None else _fmt(start),
                "end": "" if end is None else _fmt(end),
                "label": relabel.get(clip.row, clip.label),
                "split": clip.split or "",
            }
        )
    pd.DataFrame(rows, columns=["video", "start", "end", "label", "split"]).to_csv(target, index=False)
    return target


WRITERS = {
    "csv": _write_table,
    "jsonl": _write_table,
    "parquet": _write_table,
    "automl": _write_automl,
    "kinetics": _write_kinetics,
}
