"""A folder per class (UCF-101 / HMDB-51 style): `ROOT/<label>/*.mp4`, or `ROOT/<split>/<label>/*.mp4`.

There is no table to edit, so the fixed manifest of a folder is a generic CSV (`video,start,end,label,split`)
listing the kept clips: that is this format's declared output, which `read_manifest` reads back as csv.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from taxonomy_core.atomic import atomic_target
from taxonomy_core.edits import Edit
from taxonomy_core.formats.base import (
    FIXED_STEM,
    EditPlan,
    Manifest,
    ReadOptions,
    Rows,
    format_seconds,
)
from taxonomy_core.formats.table import GENERIC_COLUMNS
from taxonomy_core.schema import KNOWN_SPLITS, VIDEO_EXTENSIONS, ClipSpec


class FolderFormat:
    name = "folder"
    supports_trim = True  # the generic CSV it writes has start/end columns

    def sniff(self, path: Path) -> bool:
        return path.is_dir()

    def read(self, path: Path, options: ReadOptions) -> Manifest:
        subdirs = sorted(p for p in path.iterdir() if p.is_dir())
        by_split = bool(subdirs) and all(p.name.lower() in KNOWN_SPLITS for p in subdirs)
        layout = [(d.name, d) for d in subdirs] if by_split else [(None, path)]
        rows = Rows(path, self.name)
        row = 0
        for split, root in layout:
            for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
                for video in sorted(label_dir.iterdir()):
                    if video.suffix.lower() in VIDEO_EXTENSIONS:
                        rows.clips.append(ClipSpec(row, str(video.resolve()), None, None, label_dir.name, split))
                        row += 1
        rows.count = row
        return rows.manifest()

    def write_fixed(self, manifest: Manifest, edits: Sequence[Edit], out_dir: Path) -> Path:
        """A generic CSV of the kept clips (absolute video paths), with relabels and trims applied."""
        plan = EditPlan.of(edits)
        rows = []
        for clip in manifest.clips:
            if clip.row in plan.drop:
                continue
            start, end = plan.trim.get(clip.row, (clip.start, clip.end))
            rows.append(
                {
                    "video": clip.video,
                    "start": "" if start is None else format_seconds(start),
                    "end": "" if end is None else format_seconds(end),
                    "label": plan.relabel.get(clip.row, clip.label),
                    "split": plan.resplit.get(clip.row, clip.split or ""),
                }
            )
        target = Path(out_dir) / f"{FIXED_STEM}.csv"
        with atomic_target(target) as tmp:
            pd.DataFrame(rows, columns=list(GENERIC_COLUMNS)).to_csv(tmp, index=False, lineterminator="\n")
        return target

    def __repr__(self) -> str:
        return f"<manifest format {self.name}>"


FOLDER = FolderFormat()
