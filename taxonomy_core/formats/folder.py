"""A folder per class (UCF-101 / HMDB-51 style): `ROOT/<label>/*.mp4`, or `ROOT/<split>/<label>/*.mp4`.

Every file under the root is accounted for. Each video file is a row, in path order; one that is not where a
labelled video belongs (loose at the top, nested deeper than its class folder, outside the split folders, a
symlink leading out of the root) is a row error naming the file and the fix. Files that are not videos,
system files (`__MACOSX/`, `.DS_Store`, hidden files), symlinked folders and empty class folders are
reported as findings; none of them changes the layout.

There is no table to edit, so the fixed manifest of a folder is a generic CSV (`video,start,end,label,split`)
listing the kept clips: that is this format's declared output, which `read_manifest` reads back as csv.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from taxonomy_core.atomic import atomic_target
from taxonomy_core.edits import Edit
from taxonomy_core.findings import Finding
from taxonomy_core.formats.base import (
    FIXED_STEM,
    EditPlan,
    Manifest,
    ManifestError,
    ReadOptions,
    Rows,
    format_seconds,
)
from taxonomy_core.formats.csvtext import safe_cell
from taxonomy_core.formats.table import GENERIC_COLUMNS
from taxonomy_core.schema import KNOWN_SPLITS, VIDEO_EXTENSIONS, ClipSpec

SYSTEM_NAMES = frozenset(
    {"__MACOSX", "Thumbs.db", "desktop.ini", "@eaDir", "$RECYCLE.BIN", "System Volume Information", "lost+found"}
)
LISTED = 10  # paths named in a finding's message; `videos` holds them all


class FolderFormat:
    name = "folder"
    supports_trim = True  # the generic CSV it writes has start/end columns

    def sniff(self, path: Path) -> bool:
        return path.is_dir()

    def read(self, path: Path, options: ReadOptions) -> Manifest:
        walk = _Walk.of(path)
        by_split = any(
            (path / name).is_dir() and name.lower() in KNOWN_SPLITS and any(p.is_dir() for p in (path / name).iterdir())
            for name in walk.top_folders
        )
        rows = Rows(path, self.name)
        for row, file in enumerate(walk.videos):
            rows.count = row + 1
            placed = _place(path, file, by_split)
            if isinstance(placed, str):
                rows.reject(row, f"{file.relative_to(path)} {placed}")
            else:
                split, label = placed
                rows.clips.append(ClipSpec(row, str(file.resolve()), None, None, label, split))
        if not walk.videos:
            raise ManifestError(
                f"{path} holds no video files ({', '.join(VIDEO_EXTENSIONS)}); a folder manifest is "
                "ROOT/<label>/*.mp4 or ROOT/<split>/<label>/*.mp4"
            )
        rows.findings += walk.findings(path, by_split, rows.clips)
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
        rows = [{k: safe_cell(v) for k, v in row.items()} for row in rows]
        target = Path(out_dir) / f"{FIXED_STEM}.csv"
        with atomic_target(target) as tmp:
            pd.DataFrame(rows, columns=list(GENERIC_COLUMNS)).to_csv(tmp, index=False, lineterminator="\n")
        return target

    def __repr__(self) -> str:
        return f"<manifest format {self.name}>"


FOLDER = FolderFormat()


class _Walk:
    """Every entry under a root, sorted by path: video files, and what is skipped (and reported) and why."""

    def __init__(self) -> None:
        self.videos: list[Path] = []
        self.top_folders: list[str] = []
        self.skipped: dict[str, list[Path]] = defaultdict(list)  # why -> paths

    @classmethod
    def of(cls, root: Path) -> _Walk:
        walk = cls()
        for folder, dirs, files in os.walk(root, followlinks=False):
            here = Path(folder)
            dirs.sort()
            for name in list(dirs):
                if _system(name) or (here / name).is_symlink():
                    walk.skipped["system" if _system(name) else "linked folder"].append(here / name)
                    dirs.remove(name)
            if here == root:
                walk.top_folders = list(dirs)
            for name in sorted(files):
                file = here / name
                if _system(name):
                    walk.skipped["system"].append(file)
                elif file.suffix.lower() in VIDEO_EXTENSIONS:
                    walk.videos.append(file)
                else:
                    walk.skipped["not a video"].append(file)
        walk.videos.sort(key=lambda p: p.relative_to(root).parts)
        return walk

    def findings(self, root: Path, by_split: bool, clips: list[ClipSpec]) -> list[Finding]:
        """One finding per kind of skipped entry, and one per empty class folder."""
        why = {
            "not a video": ("warning", "are not videos (by their extension) and were skipped",
                            "rename any that is a video to its real extension, or move the rest out of the folder"),
            "system": ("info", "are system or hidden files and were skipped", "nothing to do, or delete them"),
            "linked folder": ("warning", "are symlinked folders, which are not followed",
                              "copy the folders into the root, or list their videos in a CSV manifest"),
        }  # fmt: skip
        out = []
        for key, paths in self.skipped.items():
            severity, what, action = why[key]
            named = ", ".join(str(p.relative_to(root)) for p in paths[:LISTED]) + (" …" if len(paths) > LISTED else "")
            out.append(
                Finding(
                    "invalid_annotation",
                    severity,
                    f"{len(paths)} {'entry' if len(paths) == 1 else 'entries'} under {root} {what}: {named}",
                    videos=tuple(str(p) for p in paths),
                    action=action,
                )
            )
        return out + _empty_classes(root, by_split, clips)


def _system(name: str) -> bool:
    return name.startswith(".") or name in SYSTEM_NAMES


def _place(root: Path, file: Path, by_split: bool) -> tuple[str | None, str] | str:
    """(split, label) from where a video lies, or why it cannot be used, with the fix."""
    parts = file.relative_to(root).parts
    depth = 3 if by_split else 2
    where = "ROOT/<split>/<label>/" if by_split else "ROOT/<label>/"
    if file.is_symlink():
        target = Path(os.path.realpath(file))
        if not target.is_relative_to(root.resolve()):
            return f"is a symlink to {target}, outside {root}: not followed; copy the file in or list it in a CSV"
    if len(parts) < depth:
        return f"has no class folder: move it into {where} (the folder name is its label)"
    if by_split and parts[0].lower() not in KNOWN_SPLITS:
        return f"is in {parts[0]}/, which is not a split folder ({', '.join(sorted(KNOWN_SPLITS))}): move it"
    if len(parts) > depth:
        inner = "/".join(parts[depth - 1 : -1])
        return f"is nested in {inner}/ inside its class folder: move it up into {'/'.join(parts[: depth - 1])}/"
    return (parts[0] if by_split else None), parts[depth - 2]


def _empty_classes(root: Path, by_split: bool, clips: list[ClipSpec]) -> list[Finding]:
    """Class folders with no usable video: the class would vanish from the dataset without a word."""
    used = {(c.split, c.label) for c in clips}
    tops = [(None, root)] if not by_split else [(d.name, d) for d in sorted(root.iterdir()) if d.is_dir()]
    empty = [
        (split, d)
        for split, top in tops
        if not _system(top.name) and not top.is_symlink() and (split is None or split.lower() in KNOWN_SPLITS)
        for d in sorted(top.iterdir())
        if d.is_dir() and not _system(d.name) and not d.is_symlink() and (split, d.name) not in used
    ]
    return [
        Finding(
            "invalid_annotation",
            "warning",
            f"class folder {d.relative_to(root)}/ has no usable video, so class {d.name!r} is left out",
            labels=(d.name,),
            action=f"add {d.name!r} videos to {d.relative_to(root)}/, or delete the empty folder",
        )
        for split, d in empty
    ]
