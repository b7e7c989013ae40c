"""What every manifest format shares: the parsed Manifest, ReadOptions, the row collector and the format contract.

A format is one module with one object satisfying `ManifestFormat`: it can tell its files apart (`sniff`),
parse them into ClipSpec rows (`read`) and write the proposed fixed manifest in its own output (`write_fixed`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

from taxonomy_core.edits import Edit
from taxonomy_core.findings import Finding
from taxonomy_core.schema import ClipSpec

KINETICS_PATTERN = "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
FIXED_STEM = "fixed_manifest"


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
    """How paths in a manifest are resolved.

    `video_root` is made absolute when the options are built, so the options saved in a report resolve
    the same files for every later reader, whatever its working directory.
    """

    video_root: Path | None = None
    pattern: str = KINETICS_PATTERN

    def __post_init__(self) -> None:
        if self.video_root is not None:
            object.__setattr__(self, "video_root", Path(self.video_root).absolute())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: paths as strings, None kept."""
        return {
            "video_root": None if self.video_root is None else str(self.video_root),
            "pattern": self.pattern,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ReadOptions:
        """The inverse of to_dict; a missing key takes its default (reports written before options were saved)."""
        known = [f.name for f in fields(cls)]
        unknown = set(data or {}) - set(known)
        if unknown:
            raise ManifestError(f"unknown read options {', '.join(sorted(unknown))}; expected {', '.join(known)}")
        values = dict(data or {})
        if values.get("video_root") is not None:
            values["video_root"] = Path(values["video_root"])
        return cls(**values)


@runtime_checkable
class ManifestFormat(Protocol):
    """One manifest format: `name` is what `--format` and `Manifest.format` say."""

    name: str
    supports_trim: bool

    def sniff(self, path: Path) -> bool:
        """Whether `path` looks like this format (read_manifest asks the formats in registry order)."""
        ...

    def read(self, path: Path, options: ReadOptions) -> Manifest: ...

    def write_fixed(self, manifest: Manifest, edits: Sequence[Edit], out_dir: Path) -> Path:
        """Write `fixed_manifest.*` into out_dir with the edits applied; the input is never touched."""
        ...


class Rows:
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


@dataclass(frozen=True)
class EditPlan:
    """Edits grouped the way writers apply them: new label, new (start, end), or gone, per row."""

    relabel: dict[int, str]
    trim: dict[int, tuple[float, float]]
    drop: frozenset[int]
    resplit: dict[int, str]  # a new split name (split leaks move rows to their video's split)

    @classmethod
    def of(cls, edits: Sequence[Edit]) -> EditPlan:
        return cls(
            relabel={e.row: e.value for e in edits if e.action == "relabel"},
            trim={e.row: (e.value[0], e.value[1]) for e in edits if e.action == "trim"},
            drop=frozenset(e.row for e in edits if e.action == "drop"),
            resplit={e.row: e.value for e in edits if e.action == "split"},
        )

    def touches(self, row: int) -> bool:
        return row in self.relabel or row in self.trim or row in self.resplit


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


def format_seconds(seconds: float) -> str:
    """Seconds as a short text cell: 2.5 -> "2.5", 3.0 -> "3"."""
    return f"{seconds:.2f}".rstrip("0").rstrip(".")


def text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


# --- reading and writing text files the way the input has them ------------------------------------


def first_csv_row(path: Path) -> list[str] | None:
    """The first CSV record of a text file; None for a folder or a file that is not UTF-8 text."""
    if path.is_dir():
        return None
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return next(csv.reader(handle), [])
    except (UnicodeDecodeError, csv.Error):
        return None


@dataclass(frozen=True)
class TextStyle:
    """How a text manifest ends its lines and whether it starts with a UTF-8 byte order mark."""

    newline: str = "\n"
    bom: bool = False

    @property
    def encoding(self) -> str:
        return "utf-8-sig" if self.bom else "utf-8"

    @classmethod
    def of(cls, path: Path, sample: int = 1 << 16) -> TextStyle:
        with open(path, "rb") as handle:
            head = handle.read(sample)
        bom = head.startswith(b"\xef\xbb\xbf")
        cut = next((i for i, byte in enumerate(head) if byte in b"\r\n"), None)
        if cut is None:
            return cls("\n", bom)
        if head[cut : cut + 2] == b"\r\n":
            return cls("\r\n", bom)
        return cls("\r" if head[cut : cut + 1] == b"\r" else "\n", bom)
