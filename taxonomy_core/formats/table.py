"""The generic table `video,start,end,label[,split]` (other columns kept as metadata), in three encodings.

CSV, JSON Lines and Parquet are one format as far as meaning goes: the same columns, the same row -> ClipSpec
rule and the same edits (relabel the label cell, trim the start/end cells, drop the row). Only the bytes
differ, so the three registered formats live here together and differ only in how they load and save
records; splitting them would copy the column contract three times.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from taxonomy_core.atomic import atomic_target
from taxonomy_core.edits import Edit
from taxonomy_core.formats.base import (
    FIXED_STEM,
    EditPlan,
    Manifest,
    ManifestError,
    ReadOptions,
    Rows,
    TextStyle,
    first_csv_row,
    format_seconds,
    parse_time,
    resolve_video,
    text,
)
from taxonomy_core.schema import ClipSpec

GENERIC_COLUMNS = ("video", "start", "end", "label", "split")
REQUIRED_COLUMNS = frozenset({"video", "label"})


class _Table:
    """What the three encodings share: records in, ClipSpec rows out; edits applied to records."""

    name: str
    suffix: str
    supports_trim = True

    def records(self, path: Path) -> Iterable[tuple[int, dict[str, Any] | str]]:
        """(row, record) pairs, or (row, reason) for a row that is not a record at all."""
        raise NotImplementedError

    def read(self, path: Path, options: ReadOptions) -> Manifest:
        rows = Rows(path, self.name)
        for row, record in self.records(path):
            if isinstance(record, str):
                rows.reject(row, record)
            else:
                rows.add(row, lambda row=row, record=record: generic_clip(row, record, path.parent, options))
        return rows.manifest()

    def target(self, out_dir: Path) -> Path:
        return Path(out_dir) / f"{FIXED_STEM}{self.suffix}"

    def __repr__(self) -> str:
        return f"<manifest format {self.name}>"


class CsvTable(_Table):
    name, suffix = "csv", ".csv"

    def sniff(self, path: Path) -> bool:
        header = first_csv_row(path)
        return bool(header) and REQUIRED_COLUMNS <= {cell.strip().lower() for cell in header}

    def records(self, path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        return enumerate(_lowercase_columns(frame, path).to_dict("records"))

    def write_fixed(self, manifest: Manifest, edits: Sequence[Edit], out_dir: Path) -> Path:
        """Cells of untouched rows are written as read (all text); trims are written as short decimals."""
        plan = EditPlan.of(edits)
        frame = pd.read_csv(manifest.path, dtype=str, keep_default_na=False)
        out = _edited_records(frame.to_dict("records"), plan, as_text=True)
        style = TextStyle.of(manifest.path)
        target = self.target(out_dir)
        with atomic_target(target) as tmp:
            pd.DataFrame(out, columns=_columns(frame, out)).to_csv(
                tmp, index=False, lineterminator=style.newline, encoding=style.encoding
            )
        return target


class JsonlTable(_Table):
    """One JSON object per line; blank lines are not rows."""

    name, suffix = "jsonl", ".jsonl"
    suffixes = (".jsonl", ".ndjson")

    def sniff(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in self.suffixes

    def records(self, path: Path) -> Iterable[tuple[int, dict[str, Any] | str]]:
        for row, line in _jsonl_lines(path):
            if row is None:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                yield row, f"invalid JSON ({e})"
                continue
            if not isinstance(record, dict):
                yield row, "not a JSON object"
                continue
            yield row, {str(k).lower(): v for k, v in record.items()}

    def write_fixed(self, manifest: Manifest, edits: Sequence[Edit], out_dir: Path) -> Path:
        """Untouched lines (blank and unparsable ones included) are copied byte for byte; edited lines re-encoded."""
        plan = EditPlan.of(edits)
        out: list[str] = []
        for row, line in _jsonl_lines(manifest.path, newline=""):
            if row is not None and row in plan.drop:
                continue
            if row is not None and plan.touches(row):
                line = _edited_jsonl_line(manifest.path, row, line, plan)
            out.append(line)
        target = self.target(out_dir)
        with atomic_target(target) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="") as handle:
                handle.writelines(out)
        return target


class ParquetTable(_Table):
    name, suffix = "parquet", ".parquet"
    suffixes = (".parquet", ".pq")

    def sniff(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in self.suffixes

    def records(self, path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
        return enumerate(_lowercase_columns(pd.read_parquet(path), path).to_dict("records"))

    def write_fixed(self, manifest: Manifest, edits: Sequence[Edit], out_dir: Path) -> Path:
        """Trims are written as numbers (the column's own type where it is a float column)."""
        plan = EditPlan.of(edits)
        frame = pd.read_parquet(manifest.path)
        out = _edited_records(frame.to_dict("records"), plan, as_text=False)
        target = self.target(out_dir)
        with atomic_target(target) as tmp:
            pd.DataFrame(out, columns=_columns(frame, out)).to_parquet(tmp)
        return target


CSV, JSONL, PARQUET = CsvTable(), JsonlTable(), ParquetTable()


def generic_clip(row: int, record: dict[str, Any], base: Path, options: ReadOptions) -> ClipSpec:
    video = text(record.get("video")).strip()
    if not video:
        raise ValueError("the video cell is empty")
    split = text(record.get("split")).strip() or None
    extra = {k: v for k, v in record.items() if k not in GENERIC_COLUMNS}
    return ClipSpec(
        row=row,
        video=resolve_video(video, base, options.video_root),
        start=parse_time(record.get("start"), "start"),
        end=parse_time(record.get("end"), "end", inf_is_open=True),
        label=text(record.get("label")),
        split=split,
        extra=extra,
    )


def _lowercase_columns(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = REQUIRED_COLUMNS - set(frame.columns)
    if missing:
        raise ManifestError(
            f"{path} has no {' or '.join(sorted(missing))} column; expected {','.join(GENERIC_COLUMNS)}"
        )
    return frame


def _jsonl_lines(path: Path, newline: str | None = None) -> Iterator[tuple[int | None, str]]:
    """(row, line) for every line; a blank line is not a row and comes with None. `newline` as for open()."""
    with path.open(encoding="utf-8", newline=newline) as handle:
        row = 0
        for line in handle:
            if line.strip():
                yield row, line
                row += 1
            else:
                yield None, line


def _apply(record: dict[str, Any], row: int, plan: EditPlan, *, as_text: bool) -> dict[str, Any]:
    """The record with this row's relabel and trim applied to its own (any-case) label/start/end keys."""
    record = dict(record)
    columns = {str(c).strip().lower(): c for c in record}
    if row in plan.relabel:
        record[columns.get("label", "label")] = plan.relabel[row]
    if row in plan.trim:
        for name, seconds in zip(("start", "end"), plan.trim[row]):
            record[columns.get(name, name)] = format_seconds(seconds) if as_text else seconds
    if row in plan.resplit:
        record[columns.get("split", "split")] = plan.resplit[row]
    return record


def _edited_records(records: list[dict[str, Any]], plan: EditPlan, *, as_text: bool) -> list[dict[str, Any]]:
    return [_apply(r, row, plan, as_text=as_text) for row, r in enumerate(records) if row not in plan.drop]


def _columns(frame: pd.DataFrame, records: list[dict[str, Any]]) -> list[Any]:
    """The input's columns, then any a trim had to add (a table without start/end columns)."""
    columns = list(frame.columns)
    return columns + [k for k in dict.fromkeys(k for r in records for k in r) if k not in columns]


def _edited_jsonl_line(path: Path, row: int, line: str, plan: EditPlan) -> str:
    body = line.rstrip("\r\n")
    try:
        record = json.loads(body)
    except json.JSONDecodeError as e:
        raise ManifestError(f"row {row} of {path.name} is not valid JSON, so it cannot be edited ({e})") from e
    if not isinstance(record, dict):
        raise ManifestError(f"row {row} of {path.name} is not a JSON object, so it cannot be edited")
    return json.dumps(_apply(record, row, plan, as_text=False), default=str) + line[len(body) :]
