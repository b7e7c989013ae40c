"""Google AutoML / Vertex AI video classification: `[ML_USE,]VIDEO_URI,LABEL[,START,END]`, no header.

`inf` as END means the end of the video. ML_USE is optional per row, so where the other cells sit depends
on it: `split_ml_use` decides that once, for the reader and the writer alike.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

from taxonomy_core.atomic import atomic_target
from taxonomy_core.edits import Edit
from taxonomy_core.formats.base import (
    FIXED_STEM,
    EditPlan,
    Manifest,
    ReadOptions,
    Rows,
    TextStyle,
    first_csv_row,
    format_seconds,
    parse_time,
    resolve_video,
)
from taxonomy_core.schema import ClipSpec

AUTOML_SPLITS = {"TRAINING": "train", "TEST": "test", "VALIDATION": "validation", "UNASSIGNED": None}
ML_USE = {"train": "TRAINING", "training": "TRAINING", "test": "TEST", "testing": "TEST", "validation": "VALIDATION",
          "val": "VALIDATION", "valid": "VALIDATION", "dev": "VALIDATION"}  # fmt: skip


def split_ml_use(cells: list[str]) -> tuple[str | None, list[str]]:
    """(ML_USE as written, stripped; or None when the row has none) and the cells after it, untouched."""
    if cells and cells[0].strip().upper() in AUTOML_SPLITS:
        return cells[0].strip(), cells[1:]
    return None, cells


class AutoMLFormat:
    name = "automl"
    supports_trim = True

    def sniff(self, path: Path) -> bool:
        """Any non-empty text table: the catch-all, so the registry asks it last."""
        return bool(first_csv_row(path))

    def read(self, path: Path, options: ReadOptions) -> Manifest:
        rows = Rows(path, self.name)
        with path.open(newline="", encoding="utf-8-sig") as handle:
            for row, cells in enumerate(csv.reader(handle)):
                rows.add(row, lambda row=row, cells=cells: _automl_clip(row, cells, path.parent, options))
        return rows.manifest()

    def write_fixed(self, manifest: Manifest, edits: Sequence[Edit], out_dir: Path) -> Path:
        """Untouched rows are copied byte for byte; an edited row is re-encoded with its own line ending."""
        plan = EditPlan.of(edits)
        out: list[str] = []
        with open(manifest.path, newline="", encoding="utf-8-sig") as handle:
            for row, (cells, raw) in enumerate(_records_with_text(handle)):
                if row in plan.drop:
                    continue
                if not plan.touches(row):
                    out.append(raw)
                    continue
                _, rest = split_ml_use(cells)
                lead = cells[: len(cells) - len(rest)]
                if row in plan.resplit:
                    lead = [ML_USE.get(plan.resplit[row].lower(), "UNASSIGNED")]
                if row in plan.relabel:
                    rest[1] = plan.relabel[row]
                if row in plan.trim:
                    start, end = plan.trim[row]
                    rest = rest[:2] + [format_seconds(start), format_seconds(end)]
                out.append(_encode(lead + rest, raw[len(raw.rstrip("\r\n")) :]))
        target = Path(out_dir) / f"{FIXED_STEM}.csv"
        with atomic_target(target) as tmp:
            with open(tmp, "w", newline="", encoding=TextStyle.of(manifest.path).encoding) as handle:
                handle.writelines(out)
        return target

    def __repr__(self) -> str:
        return f"<manifest format {self.name}>"


AUTOML = AutoMLFormat()


def _automl_clip(row: int, cells: list[str], base: Path, options: ReadOptions) -> ClipSpec:
    ml_use, cells = split_ml_use([c.strip() for c in cells])
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


def _records_with_text(handle: TextIO) -> Iterator[tuple[list[str], str]]:
    """Each CSV record with the exact text it was parsed from (a quoted cell may span lines)."""
    consumed: list[str] = []

    def lines() -> Iterable[str]:
        for line in handle:
            consumed.append(line)
            yield line

    for cells in csv.reader(lines()):
        yield cells, "".join(consumed)
        consumed.clear()


def _encode(cells: list[str], ending: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=ending).writerow(cells)
    return buffer.getvalue()
