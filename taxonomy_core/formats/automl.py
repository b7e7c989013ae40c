"""Google AutoML / Vertex AI video classification: `[ML_USE,]VIDEO_URI,LABEL[,START,END]`, no header.

`inf` as END means the end of the video. ML_USE is optional per row, so where the other cells sit depends
on it: `split_ml_use` decides that once, for the reader and the writer alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from taxonomy_core.atomic import atomic_target
from taxonomy_core.edits import Edit
from taxonomy_core.formats.base import (
    FIXED_STEM,
    EditPlan,
    Manifest,
    ReadOptions,
    Rows,
    format_seconds,
    parse_time,
    resolve_video,
)
from taxonomy_core.formats.csvtext import TextStyle, csv_records, encode_row, first_csv_row, safe_line, unescape
from taxonomy_core.schema import VIDEO_EXTENSIONS, ClipSpec

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
        """A headerless table whose first row is an AutoML row naming a video (a URI, or a video file name).

        Asked last; a table with the wrong columns or separator is not taken for AutoML, whose every row
        would then fail: read_manifest explains what is wrong with it instead.
        """
        cells = first_csv_row(path)
        if not cells:
            return False
        _, rest = split_ml_use([c.strip() for c in cells])
        return len(rest) in (2, 4) and _names_a_video(rest[0])

    def read(self, path: Path, options: ReadOptions) -> Manifest:
        rows = Rows(path, self.name)
        for row, (cells, _) in enumerate(csv_records(path)):
            rows.add(row, lambda row=row, cells=cells: _automl_clip(row, cells, path.parent, options))
        return rows.manifest()

    def write_fixed(self, manifest: Manifest, edits: Sequence[Edit], out_dir: Path) -> Path:
        """Untouched rows are copied byte for byte; an edited row is re-encoded with its own line ending."""
        plan = EditPlan.of(edits)
        out: list[str] = []
        for row, (cells, raw) in enumerate(csv_records(manifest.path)):
            if row in plan.drop:
                continue
            if not plan.touches(row):
                out.append(safe_line(cells, raw))
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
            out.append(encode_row(lead + rest, raw[len(raw.rstrip("\r\n")) :] or "\n"))
        target = Path(out_dir) / f"{FIXED_STEM}.csv"
        with atomic_target(target) as tmp:
            with open(tmp, "w", newline="", encoding=TextStyle.of(manifest.path).encoding) as handle:
                handle.writelines(out)
        return target

    def __repr__(self) -> str:
        return f"<manifest format {self.name}>"


AUTOML = AutoMLFormat()


def _names_a_video(uri: str) -> bool:
    """A URI with a scheme (gs://, s3://, file://, http://) or a path ending in a video extension."""
    return len(urlparse(uri).scheme) > 1 or uri.lower().endswith(VIDEO_EXTENSIONS)


def _automl_clip(row: int, cells: list[str], base: Path, options: ReadOptions) -> ClipSpec:
    ml_use, cells = split_ml_use([unescape(c).strip() for c in cells])
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
