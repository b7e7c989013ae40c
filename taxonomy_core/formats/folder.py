"""A folder per class (UCF-101 / HMDB-51 style): `ROOT/<label>/*.mp4`, or `ROOT/<split>/<label>/*.mp4`."""

from __future__ import annotations

from pathlib import Path

from taxonomy_core.formats.base import Manifest, ReadOptions, Rows
from taxonomy_core.schema import KNOWN_SPLITS, VIDEO_EXTENSIONS, ClipSpec


class FolderFormat:
    name = "folder"

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

    def __repr__(self) -> str:
        return f"<manifest format {self.name}>"


FOLDER = FolderFormat()
