"""Manifest formats: each turns one annotation format into ClipSpec rows, keeping every row's index,
and writes the proposed fixed manifest back in that format.

A row that cannot be parsed becomes an `invalid_annotation` finding; nothing is dropped silently.
One module per format (table: csv/jsonl/parquet, automl, kinetics, folder), registered in FORMATS.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from taxonomy_core.edits import Edit
from taxonomy_core.formats.automl import AUTOML, AUTOML_SPLITS
from taxonomy_core.formats.base import (
    KINETICS_PATTERN,
    Manifest,
    ManifestError,
    ManifestFormat,
    ReadOptions,
    parse_time,
    resolve_video,
)
from taxonomy_core.formats.csvtext import first_csv_row, not_text_reason
from taxonomy_core.formats.folder import FOLDER
from taxonomy_core.formats.kinetics import KINETICS
from taxonomy_core.formats.table import CSV, GENERIC_COLUMNS, JSONL, PARQUET, explain_header

# The registry, in sniff order: a folder; then files known by their suffix; then text tables known by their
# header; AutoML (headerless, any non-empty table) last, as the catch-all.
FORMATS: dict[str, ManifestFormat] = {f.name: f for f in (FOLDER, JSONL, PARQUET, CSV, KINETICS, AUTOML)}

# name -> read(path, options), as before the formats became modules.
READERS: dict[str, Callable[[Path, ReadOptions], Manifest]] = {name: f.read for name, f in FORMATS.items()}


def get_format(name: str) -> ManifestFormat:
    """The registered format called `name`, or a ManifestError naming the choices."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ManifestError(f"unknown manifest format {name!r}; choose one of {', '.join(FORMATS)} or auto") from None


def read_manifest(path: str | Path, fmt: str = "auto", options: ReadOptions = ReadOptions()) -> Manifest:
    """Read any supported manifest; `fmt` is one of FORMATS or "auto" (sniffed from the file).

    A file that cannot be read as a whole (not UTF-8, binary, a corrupt Parquet file, the wrong separator or
    columns, no rows) is one ManifestError naming the file and what to do; a bad row is a finding.
    """
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"manifest not found: {path}")
    if not (path.is_file() or path.is_dir()):  # a FIFO would block the first read forever
        raise ManifestError(
            f"{path} is not a regular file or a folder (a pipe, device or socket): give a manifest file"
        )
    with _whole_file_errors(path, "a manifest"):
        fmt = detect_format(path) if fmt == "auto" else fmt
    with _whole_file_errors(path, fmt):
        manifest = get_format(fmt).read(path, options)
    if manifest.row_count == 0:
        raise ManifestError(f"{path} has no rows: nothing to index")
    return manifest


def detect_format(path: Path) -> str:
    """The first registered format whose sniff accepts `path`; else a ManifestError saying why none does."""
    path = Path(path)
    for fmt in FORMATS.values():
        if fmt.sniff(path):
            return fmt.name
    reason = not_text_reason(path)
    if reason:
        raise ManifestError(reason)
    header = first_csv_row(path)
    if header == []:
        raise ManifestError(f"{path} is empty")
    if header:
        raise ManifestError(explain_header(path, header), explain_header(path, header, show=False))
    raise ManifestError(f"cannot tell the format of {path}; name it with --format: one of {', '.join(FORMATS)}")


@contextmanager
def _whole_file_errors(path: Path, fmt: str) -> Iterator[None]:
    """Decoding and parsing errors that end a whole read become one ManifestError naming the file and the fix."""
    try:
        yield
    except ManifestError:
        raise
    except PermissionError as e:
        raise ManifestError(f"{path} cannot be read ({e.strerror}): check its permissions") from e
    except (UnicodeError, csv.Error) as e:
        reason = (path.is_file() and not_text_reason(path)) or f"{path} cannot be read as CSV text ({e})"
        raise ManifestError(reason) from e
    except (pa.ArrowException, OSError) as e:
        raise ManifestError(
            f"{path} cannot be read as {fmt} ({e}); it may be truncated or "
            "corrupt: write it again, or name its real format with --format"
        ) from e


def write_fixed_manifest(manifest: Manifest, edits: Sequence[Edit], out_dir: str | Path) -> Path:
    """Write `fixed_manifest.*` (the edits applied to a copy, in the input's format) into out_dir.

    The input is never touched; the output replaces any earlier one atomically.
    """
    fmt = FORMATS.get(manifest.format)
    if fmt is None:
        raise ManifestError(
            f"no fixed-manifest writer for manifest format {manifest.format!r}; known formats: {', '.join(FORMATS)}"
        )
    return fmt.write_fixed(manifest, edits, Path(out_dir))


__all__ = [
    "AUTOML_SPLITS",
    "FORMATS",
    "GENERIC_COLUMNS",
    "KINETICS_PATTERN",
    "READERS",
    "Manifest",
    "ManifestError",
    "ManifestFormat",
    "ReadOptions",
    "detect_format",
    "get_format",
    "parse_time",
    "read_manifest",
    "resolve_video",
    "write_fixed_manifest",
]
