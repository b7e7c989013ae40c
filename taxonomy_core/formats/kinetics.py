"""Kinetics: `label,youtube_id,time_start,time_end,split`; the files are found through `video_root` + `pattern`.

A pattern that names `time_start` points at trimmed clips (the file *is* the segment); one that doesn't points
at full source videos, cut at time_start..time_end.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from taxonomy_core.edits import Edit
from taxonomy_core.formats.base import FIXED_STEM, EditPlan, Manifest, ReadOptions, Rows, parse_time
from taxonomy_core.formats.csvtext import first_csv_row
from taxonomy_core.formats.table import table_records, write_edited_csv
from taxonomy_core.schema import ClipSpec

log = logging.getLogger(__name__)

KINETICS_COLUMNS = frozenset({"youtube_id", "label"})


class KineticsFormat:
    name = "kinetics"
    supports_trim = False  # a row names a file (pattern + times); moving its times would break the name

    def sniff(self, path: Path) -> bool:
        header = first_csv_row(path)
        return bool(header) and KINETICS_COLUMNS <= {cell.strip().lower() for cell in header}

    def read(self, path: Path, options: ReadOptions) -> Manifest:
        root = options.video_root or path.parent
        trimmed = "{time_start" in options.pattern
        rows = Rows(path, self.name)
        for row, record in table_records(path, KINETICS_COLUMNS):
            if isinstance(record, str):
                rows.reject(row, record)
                continue
            rows.add(row, lambda row=row, record=record: _kinetics_clip(row, record, root, options.pattern, trimmed))
        return rows.manifest()

    def write_fixed(self, manifest: Manifest, edits: Sequence[Edit], out_dir: Path) -> Path:
        """Labels, splits and drops only: trims are left out (see supports_trim) and logged."""
        plan = EditPlan.of(edits)
        if plan.trim:
            log.info("%s: %d trims not applied to a Kinetics manifest (rows name files)", manifest.path, len(plan.trim))
        target = Path(out_dir) / f"{FIXED_STEM}.csv"
        write_edited_csv(manifest.path, plan, target, trims=False)
        return target

    def __repr__(self) -> str:
        return f"<manifest format {self.name}>"


KINETICS = KineticsFormat()


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
