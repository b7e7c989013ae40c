"""What every manifest format shares: the parsed Manifest, ReadOptions, the row collector and the format contract.

A format is one module with one object satisfying `ManifestFormat`: it can tell its files apart (`sniff`),
parse them into ClipSpec rows (`read`) and write the proposed fixed manifest in its own output (`write_fixed`).
"""

from __future__ import annotations

import math
import numbers
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
    """The manifest as a whole cannot be read (missing file, unknown format, no usable columns).

    `public` is the message without anything read from the file (its header), for whoever did not choose the
    file: the app shows only that, so a file that is not a manifest never has its content echoed.
    """

    def __init__(self, message: str, public: str | None = None):
        super().__init__(message)
        self.public = public or message


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
            Finding(
                "invalid_annotation",
                "error",
                f"row {row} of {self.path.name}: {reason}",
                rows=(row,),
                action=f"fix row {row} of {self.path.name} or remove it: it is not indexed",
            )
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
    """Absolute path (or URL ffmpeg can open) for a manifest's video cell.

    Paths are normalised (`..`, `.`, doubled slashes, symlinks resolved), so one file has one name, and one
    segment one clip id, however a manifest spells it.
    """
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
    return str((candidate if candidate.is_absolute() else root / candidate).resolve())


# A longer time is a unit slip (milliseconds, frame numbers) or junk: no single video file runs a week.
MAX_SECONDS = 7 * 24 * 3600.0
OPEN_END = frozenset({"inf", "+inf", "infinity", "+infinity"})


def parse_time(value: Any, name: str, *, inf_is_open: bool = False) -> float | None:
    """Seconds, or None for a missing value (an empty cell, JSON null, a Parquet null): the whole video.

    One rule for every format: `inf` (as text or as a float) is allowed only where `inf_is_open` (an end: the
    end of the video); NaN (the text `nan` or a NaN float), -inf, numbers too big for a float (1e400) and
    times beyond MAX_SECONDS are errors, never read as "whole video".
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, numbers.Real)):
        raise ValueError(f"{name} {value!r} is not a number of seconds")
    literal = str(value).strip()
    if inf_is_open and isinstance(value, str) and literal.lower() in OPEN_END:
        return None
    try:
        seconds = float(literal) if isinstance(value, str) else float(value)
    except OverflowError:  # an integer too big for a float
        seconds = math.inf
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a number of seconds") from None
    if math.isnan(seconds):
        raise ValueError(f"{name} is NaN, not a number of seconds; leave the cell empty to mean the whole video")
    if inf_is_open and seconds == math.inf and not isinstance(value, str):
        return None
    if not math.isfinite(seconds):
        allowed = "; write `inf` or leave it empty for the end of the video" if inf_is_open else ""
        raise ValueError(f"{name} {value!r} is not a finite number of seconds{allowed}")
    if abs(seconds) > MAX_SECONDS:
        raise ValueError(f"{name} {value!r} is more than a week in seconds; times are seconds, not ms or frames")
    return seconds


def format_seconds(seconds: float) -> str:
    """Seconds as a short text cell: 2.5 -> "2.5", 3.0 -> "3"."""
    return f"{seconds:.2f}".rstrip("0").rstrip(".")


def text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)
