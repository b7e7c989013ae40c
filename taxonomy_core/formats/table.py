"""The generic table `video,start,end,label[,split]` (other columns kept as metadata), in three encodings.

CSV, JSON Lines and Parquet are one format as far as meaning goes: the same columns, the same row -> ClipSpec
rule and the same edits (relabel the label cell, trim the start/end cells, drop the row). Only the bytes
differ, so the three registered formats live here together and differ only in how they load and save
records; splitting them would copy the column contract three times.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from taxonomy_core.atomic import atomic_target
from taxonomy_core.edits import Edit
from taxonomy_core.formats.base import (
    FIXED_STEM,
    EditPlan,
    Manifest,
    ManifestError,
    ReadOptions,
    Rows,
    format_seconds,
    parse_time,
    resolve_video,
    text,
)
from taxonomy_core.formats.csvtext import (
    TextStyle,
    csv_records,
    encode_row,
    first_csv_row,
    safe_line,
    unescape,
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

    def records(self, path: Path) -> Iterable[tuple[int, dict[str, Any] | str]]:
        return table_records(path, REQUIRED_COLUMNS)

    def write_fixed(self, manifest: Manifest, edits: Sequence[Edit], out_dir: Path) -> Path:
        """Untouched rows keep their bytes (unless a cell must be made formula-safe); edited rows are re-encoded."""
        target = self.target(out_dir)
        write_edited_csv(manifest.path, EditPlan.of(edits), target, trims=True)
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
                record = json.loads(line, parse_float=_json_number, parse_constant=str)
            except (json.JSONDecodeError, RecursionError) as e:
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
        """Through pyarrow, so a null (an empty cell) and a NaN (an error) stay apart."""
        table = pq.read_table(path)
        column_names(table.column_names, path, REQUIRED_COLUMNS)
        return enumerate({str(k).strip().lower(): v for k, v in r.items()} for r in table.to_pylist())

    def write_fixed(self, manifest: Manifest, edits: Sequence[Edit], out_dir: Path) -> Path:
        """Trims are written as numbers (the column's own type where it is a float column)."""
        plan = EditPlan.of(edits)
        frame = pd.read_parquet(manifest.path)
        out = _edited_records(frame.to_dict("records"), plan)
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


def table_records(path: Path, required: frozenset[str]) -> Iterator[tuple[int, dict[str, str] | str]]:
    """A CSV with a header as (row, {column: cell}) text records, or (row, reason) for a record with more
    cells than the header has columns: one bad record is a row error, not the end of the read."""
    records = csv_records(path)
    first = next(records, None)
    if first is None:
        return
    columns = column_names(first[0], path, required)
    for row, (cells, _) in enumerate(records):
        if any(c.strip() for c in cells[len(columns) :]):
            yield (
                row,
                (
                    f"{len(cells)} cells but the header names {len(columns)} columns "
                    "(a comma inside an unquoted cell?); quote the cell or remove the extra cells"
                ),
            )
            continue
        cells = [unescape(c) for c in cells[: len(columns)]]
        yield row, dict(zip(columns, cells + [""] * (len(columns) - len(cells))))


def column_names(header: Sequence[Any], path: Path, required: frozenset[str]) -> list[str]:
    """Header cells as readers match them (stripped, lower case); a ManifestError saying what to do when a
    required column is missing or named twice."""
    names = [unescape(str(c)).strip().lower() or f"column_{i + 1}" for i, c in enumerate(header)]
    twice = sorted({n for n in names if names.count(n) > 1} & set(GENERIC_COLUMNS))
    if twice:
        raise ManifestError(f"{path} names the column {', '.join(twice)} more than once; keep one")
    if not required <= set(names):
        cells = [str(c) for c in header]
        raise ManifestError(explain_header(path, cells, required), explain_header(path, cells, required, show=False))
    return names


def explain_header(
    path: Path, header: list[str], required: frozenset[str] = REQUIRED_COLUMNS, show: bool = True
) -> str:
    """Why a header does not make a table manifest, and what to do: the wrong separator, or missing columns;
    with `show`, the header itself (the operator's own terminal; the app leaves it out)."""
    for separator, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "vertical bars")):
        if len(header) == 1 and separator in header[0]:
            return (
                f"{path} separates its cells with {name}, not commas: save it as comma-separated CSV "
                "(Excel: 'CSV UTF-8 (Comma delimited)'), or as JSONL or Parquet"
            )
    missing = sorted(required - {c.strip().lower() for c in header})
    return (
        f"{path} has no {' or '.join(missing)} column"
        + (f" (its header is {','.join(header)[:200]!r})" if show else f" (its first line has {len(header)} cell(s))")
        + "; it needs "
        f"{' and '.join(sorted(required))} columns: rename yours, or name the format with --format "
        "(csv: video,label[,start,end,split]; kinetics: label,youtube_id,time_start,time_end[,split]; "
        "automl: no header, [ML_USE,]VIDEO_URI,LABEL[,START,END])"
    )


def _json_number(literal: str) -> float | str:
    """A JSON number as a float; one too big for a float (1e400) stays text, so it is an error, not infinity."""
    value = float(literal)
    return value if math.isfinite(value) else literal


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


def _apply(record: dict[str, Any], row: int, plan: EditPlan) -> dict[str, Any]:
    """The record with this row's relabel and trim applied to its own (any-case) label/start/end keys."""
    record = dict(record)
    columns = {str(c).strip().lower(): c for c in record}
    if row in plan.relabel:
        record[columns.get("label", "label")] = plan.relabel[row]
    if row in plan.trim:
        for name, seconds in zip(("start", "end"), plan.trim[row]):
            record[columns.get(name, name)] = seconds
    if row in plan.resplit:
        record[columns.get("split", "split")] = plan.resplit[row]
    return record


def _edited_records(records: list[dict[str, Any]], plan: EditPlan) -> list[dict[str, Any]]:
    return [_apply(r, row, plan) for row, r in enumerate(records) if row not in plan.drop]


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
    return json.dumps(_apply(record, row, plan), default=str) + line[len(body) :]


def write_edited_csv(path: Path, plan: EditPlan, target: Path, *, trims: bool) -> None:
    """`path` with the plan applied: untouched rows keep their bytes unless a cell must be made formula-safe;
    edited rows are re-encoded; a column an edit needs (start/end for a trim, split) is added at the end."""
    style = TextStyle.of(path)
    records = csv_records(path)
    header, header_raw = next(records, ([], ""))
    columns = [unescape(c).strip().lower() for c in header]
    needed = {"start": trims and plan.trim, "end": trims and plan.trim, "split": plan.resplit}
    added = [name for name, used in needed.items() if used and name not in columns]
    width = len(header) + len(added)
    where = {name: i for i, name in reversed(list(enumerate(columns + added)))}  # the first of a repeated name
    out = [encode_row(header + added, style.newline) if added else safe_line(header, header_raw)]
    for row, (cells, raw) in enumerate(records):
        if row in plan.drop:
            continue
        if not added and not plan.touches(row):
            out.append(safe_line(cells, raw))
            continue
        cells = cells + [""] * (width - len(cells))
        if row in plan.relabel:
            cells[where["label"]] = plan.relabel[row]
        if trims and row in plan.trim:
            cells[where["start"]], cells[where["end"]] = (format_seconds(t) for t in plan.trim[row])
        if row in plan.resplit:
            cells[where["split"]] = plan.resplit[row]
        out.append(encode_row(cells, raw[len(raw.rstrip("\r\n")) :] or style.newline))
    with atomic_target(target) as tmp:
        with open(tmp, "w", encoding=style.encoding, newline="") as handle:
            handle.writelines(out)
