"""The generic table `video,start,end,label[,split]` (other columns kept as metadata), in three encodings.

CSV, JSON Lines and Parquet are one format as far as meaning goes: the same columns, the same row -> ClipSpec
rule. Only the bytes differ, so the three registered formats live here together and differ only in how
they load records; splitting them would copy the column contract three times.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from taxonomy_core.formats.base import (
    Manifest,
    ManifestError,
    ReadOptions,
    Rows,
    first_csv_row,
    parse_time,
    resolve_video,
    text,
)
from taxonomy_core.schema import ClipSpec

GENERIC_COLUMNS = ("video", "start", "end", "label", "split")
REQUIRED_COLUMNS = frozenset({"video", "label"})


class _Table:
    """What the three encodings share: records in, ClipSpec rows out."""

    name: str

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

    def __repr__(self) -> str:
        return f"<manifest format {self.name}>"


class CsvTable(_Table):
    name = "csv"

    def sniff(self, path: Path) -> bool:
        header = first_csv_row(path)
        return bool(header) and REQUIRED_COLUMNS <= {cell.strip().lower() for cell in header}

    def records(self, path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        return enumerate(_lowercase_columns(frame, path).to_dict("records"))


class JsonlTable(_Table):
    """One JSON object per line; blank lines are not rows."""

    name = "jsonl"
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


class ParquetTable(_Table):
    name = "parquet"
    suffixes = (".parquet", ".pq")

    def sniff(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in self.suffixes

    def records(self, path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
        return enumerate(_lowercase_columns(pd.read_parquet(path), path).to_dict("records"))


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
