"""Google AutoML / Vertex AI video classification: `[ML_USE,]VIDEO_URI,LABEL[,START,END]`, no header.

`inf` as END means the end of the video. ML_USE is optional per row, so where the other cells sit depends
on it: `split_ml_use` decides that.
"""

from __future__ import annotations

import csv
from pathlib import Path

from taxonomy_core.formats.base import Manifest, ReadOptions, Rows, first_csv_row, parse_time, resolve_video
from taxonomy_core.schema import ClipSpec

AUTOML_SPLITS = {"TRAINING": "train", "TEST": "test", "VALIDATION": "validation", "UNASSIGNED": None}


def split_ml_use(cells: list[str]) -> tuple[str | None, list[str]]:
    """(ML_USE as written, stripped; or None when the row has none) and the cells after it, untouched."""
    if cells and cells[0].strip().upper() in AUTOML_SPLITS:
        return cells[0].strip(), cells[1:]
    return None, cells


class AutoMLFormat:
    name = "automl"

    def sniff(self, path: Path) -> bool:
        """Any non-empty text table: the catch-all, so the registry asks it last."""
        return bool(first_csv_row(path))

    def read(self, path: Path, options: ReadOptions) -> Manifest:
        rows = Rows(path, self.name)
        with path.open(newline="", encoding="utf-8-sig") as handle:
            for row, cells in enumerate(csv.reader(handle)):
                rows.add(row, lambda row=row, cells=cells: _automl_clip(row, cells, path.parent, options))
        return rows.manifest()

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
