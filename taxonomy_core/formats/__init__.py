"""Manifest readers: each turns one annotation format into ClipSpec rows, keeping every row's index.

A row that cannot be parsed becomes an `invalid_annotation` finding; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd

from taxonomy_core.findings import Finding
from taxonomy_core.schema import KNOWN_SPLITS, VIDEO_EXTENSIONS, ClipSpec

GENERIC_COLUMNS = ("video", "start", "end", "label", "split")
AUTOML_SPLITS = {"TRAINING": "train", "TEST": "test", "VALIDATION": "validation", "UNASSIGNED": None}
KINETICS_PATTERN = "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"


class ManifestError(ValueError):
    """The manifest as a whole cannot be read (missing file, unknown format, no usable columns)."""


@dataclass
class Manifest:
    """Parsed rows plus the rows that could not be parsed, each with its reason."""

    path: Path
    format: str
    clips: list[ClipSpec]
    findings: list[Finding] = field(default_factory=list)
    row_count: int = 0


@dataclass(frozen=True)
class ReadOptions:
    """How paths in a manifest are resolved."""

    video_root: Path | None = None
    pattern: str = KINETICS_PATTERN


class _Rows:
    """Collects parsed rows and per-row errors while a reader walks a file."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt = path, fmt
        self.clips: list[ClipSpec] = []
        self.findings: list[Finding] = []
        self.count = 0

    def add(self, row: int, build: Callable[[], ClipSpec]) -> None:
        self.count = max(self.count, row + 1)
        try:
            self.clips.append(build())
        except (ValueError, KeyError, TypeError) as e:
            self.reject(row, str(e))

    def reject(self, row: int, reason: str) -> None:
        self.count = max(self.count, row + 1)
        self.findings.append(
            Finding("invalid_annotation", "error", f"row {row} of {self.path.name}: {reason}", rows=(row,))
        )

    def manifest(self) -> Manifest:
        return Manifest(self.path, self.fmt, self.clips, self.findings, self.count)


def read_manifest(path: str | Path, fmt: str = "auto", options: ReadOptions = ReadOptions()) -> Manifest:
    """Read any supported manifest; `fmt` is one of READERS or "auto" (sniffed from the file)."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"manifest not found: {path}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in READERS:
        raise ManifestError(f"unknown manifest format {fmt!r}; choose one of {', '.join(READERS)} or auto")
    return READERS[fmt](path, options)


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    with path.open(newline="", encoding="utf-8-sig") as handle:
        first = next(csv.reader(handle), [])
    header = {cell.strip().lower() for cell in first}
    if {"video", "label"} <= header:
        return "csv"
    if {"youtube_id", "label"} <= header:
        return "kinetics"
    if first:
        return "automl"
    raise ManifestError(f"{path} is empty")


def resolve_video(value: str, base: Path, video_root: Path | None = None) -> str:
    """Absolute path (or URL ffmpeg can open) for a manifest's video cell."""
    value = value.strip()
    parsed = urlparse(value)
    if parsed.scheme == "file":
        return str(Path(unquote(parsed.path)).resolve())
    if parsed.scheme in ("gs", "s3") and video_root is not None:
        return str((video_root / unquote(parsed.path).lstrip("/")).resolve())
    if parsed.scheme and len(parsed.scheme) > 1:
        return value
    candidate = Path(value).expanduser()
    root = video_root or base
    return str(candidate if candidate.is_absolute() else (root / candidate).resolve())


def parse_time(value: Any, name: str, *, inf_is_open: bool = False) -> float | None:
    """Seconds, or None for an empty cell (whole video) or, where allowed, `inf`."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return None
    try:
        seconds = float(str(value).strip())
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a number of seconds") from None
    if math.isinf(seconds) and inf_is_open:
        return None
    if not math.isfinite(seconds):
        raise ValueError(f"{name} {value!r} is not a finite number of seconds")
    return seconds


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


# --- generic tables: csv / jsonl / parquet -------------------------------------------------------


def read_table(path: Path, options: ReadOptions, fmt: str = "csv") -> Manifest:
    """`video,start,end,label[,split]` plus any other columns, kept as metadata."""
    if fmt == "jsonl":
        records = _jsonl_records(path)
    else:
        frame = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path, dtype=str, keep_default_na=False)
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        missing = {"video", "label"} - set(frame.columns)
        if missing:
            raise ManifestError(
                f"{path} has no {' or '.join(sorted(missing))} column; expected {','.join(GENERIC_COLUMNS)}"
            )
        records = enumerate(frame.to_dict("records"))
    rows = _Rows(path, fmt)
    for row, record in records:
        if isinstance(record, str):
            rows.reject(row, record)
        else:
            rows.add(row, lambda row=row, record=record: _generic_clip(row, record, path.parent, options))
    return rows.manifest()


def _jsonl_records(path: Path) -> Iterable[tuple[int, dict | str]]:
    with path.open(encoding="utf-8") as handle:
        row = 0
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                yield (
                    row,
                    (
                        {str(k).lower(): v for k, v in record.items()}
                        if isinstance(record, dict)
                        else "not a JSON object"
                    ),
                )
            except json.JSONDecodeError as e:
                yield row, f"invalid JSON ({e})"
            row += 1


def _generic_clip(row: int, record: dict[str, Any], base: Path, options: ReadOptions) -> ClipSpec:
    video = _text(record.get("video")).strip()
    if not video:
        raise ValueError("the video cell is empty")
    split = _text(record.get("split")).strip() or None
    extra = {k: v for k, v in record.items() if k not in GENERIC_COLUMNS}
    return ClipSpec(
        row=row,
        video=resolve_video(video, base, options.video_root),
        start=parse_time(record.get("start"), "start"),
        end=parse_time(record.get("end"), "end", inf_is_open=True),
        label=_text(record.get("label")),
        split=split,
        extra=extra,
    )


# --- Google AutoML / Vertex AI video classification ----------------------------------------------


def read_automl(path: Path, options: ReadOptions) -> Manifest:
    """`[ML_USE,]VIDEO_URI,LABEL,START,END`, no header; `inf` ends at the end of the video."""
    rows = _Rows(path, "automl")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for row, cells in enumerate(csv.reader(handle)):
            rows.add(row, lambda row=row, cells=cells: _automl_clip(row, cells, path.parent, options))
    return rows.manifest()


def _automl_clip(row: int, cells: list[str], base: Path, options: ReadOptions) -> ClipSpec:
    cells = [c.strip() for c in cells]
    ml_use = None
    if cells and cells[0].upper() in AUTOML_SPLITS:
        ml_use, cells = cells[0], cells[1:]
    if len(cells) not in (2, 4):
        raise ValueError(f"expected [ML_USE,]VIDEO_URI,LABEL,START,END but found {len(cells)} fields")
    uri, label = cells[0], cells[1]
    start, end = (cells[2], cells[3]) if len(cells) == 4 else ("", "")
    return ClipSpec(
        row=row,
        video=resolve_video(uri, base, options.video_root),
        start=parse_time(start, "start"),
        end=parse_time(end, "end", inf_is_open=True),
        label=label,
        split=AUTOML_SPLITS[ml_use.upper()] if ml_use else None,
        extra={"ml_use": ml_use, "video_uri": uri} if ml_use else {"video_uri": uri},
    )


# --- Kinetics -------------------------------------------------------------------------------------


def read_kinetics(path: Path, options: ReadOptions) -> Manifest:
    """`label,youtube_id,time_start,time_end,split`; files found through `video_root` + `pattern`.

    A pattern that names `time_start` points at trimmed clips (the file *is* the segment);
    one that doesn't points at full source videos, cut at time_start..time_end.
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.columns = [c.strip().lower() for c in frame.columns]
    root = options.video_root or path.parent
    trimmed = "{time_start" in options.pattern
    rows = _Rows(path, "kinetics")
    for row, record in enumerate(frame.to_dict("records")):
        rows.add(row, lambda row=row, record=record: _kinetics_clip(row, record, root, options.pattern, trimmed))
    return rows.manifest()


def _kinetics_clip(row: int, record: dict[str, str], root: Path, pattern: str, trimmed: bool) -> ClipSpec:
    start = parse_time(record.get("time_start"), "time_start")
    end = parse_time(record.get("time_end"), "time_end")
    fields = dict(record, time_start=int(start or 0), time_end=int(end or 0))
    try:
        name = pattern.format(**fields)
    except (KeyError, ValueError) as e:
        raise ValueError(f"pattern {pattern!r} cannot be filled from this row ({e})") from e
    extra = {k: v for k, v in record.items() if k not in ("label", "split", "time_start", "time_end")}
    return ClipSpec(
        row=row,
        video=str((root / name).resolve()),
        start=None if trimmed else start,
        end=None if trimmed else end,
        label=record.get("label", ""),
        split=record.get("split", "").strip() or None,
        extra=extra | ({"time_start": start, "time_end": end} if trimmed else {}),
    )


# --- folder per class (UCF-101 / HMDB-51 style) --------------------------------------------------


def read_folder(path: Path, options: ReadOptions) -> Manifest:
    """`ROOT/<label>/*.mp4`, or `ROOT/<split>/<label>/*.mp4` when the top folders are split names."""
    subdirs = sorted(p for p in path.iterdir() if p.is_dir())
    by_split = bool(subdirs) and all(p.name.lower() in KNOWN_SPLITS for p in subdirs)
    layout = [(d.name, d) for d in subdirs] if by_split else [(None, path)]
    rows = _Rows(path, "folder")
    row = 0
    for split, root in layout:
        for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for video in sorted(label_dir.iterdir()):
                if video.suffix.lower() in VIDEO_EXTENSIONS:
                    rows.clips.append(ClipSpec(row, str(video.resolve()), None, None, label_dir.name, split))
                    row += 1
    rows.count = row
    return rows.manifest()


READERS: dict[str, Callable[[Path, ReadOptions], Manifest]] = {
    "csv": read_table,
    "jsonl": lambda path, options: read_table(path, options, "jsonl"),
    "parquet": lambda path, options: read_table(path, options, "parquet"),
    "automl": read_automl,
    "kinetics": read_kinetics,
    "folder": read_folder,
}
