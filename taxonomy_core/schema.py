"""Names and records shared by the indexer, the auditor and the app: the one place field names live."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

# Clip collection fields.
CLIP_ID = "clip_id"
ROW = "row"
VIDEO = "video"
START = "start"
END = "end"
LABEL = "label"
SPLIT = "split"
MODEL_ID = "model_id"
DURATION = "duration"
FPS = "fps"
WIDTH = "width"
HEIGHT = "height"
CODEC = "codec"
BRIGHTNESS = "brightness"
EXTRA = "extra"
THUMBNAIL = "thumbnail"
FINGERPRINT = "fingerprint"  # perceptual hashes of the clip's frames (copy detection), hex
VECTOR = "vector"
TEXT_VECTOR = "text_vector"
PACKED = "packed"  # int8 copies of the row's vectors as base64 text (taxonomy_core.store.codec): fast bulk reads

# Companion rows (timeline steps, spatial crops) as the indexer writes them, keyed by "<clip_id>:<index>".
# The store packs a clip's parts into rows keyed "<clip_id>:<chunk>" (INDEX: the chunk's first part, PARTS: how
# many parts the clip has), with a PLACEHOLDER vector because every Milvus collection needs one.
PART_ID = "part_id"
INDEX = "index"
TIME = "time"
BOX = "box"
PARTS = "parts"
PLACEHOLDER = "placeholder"

SCALAR_FIELDS = (ROW, VIDEO, START, END, LABEL, SPLIT, EXTRA)

# Split names a manifest may use; the evaluation side is what a leak fix drops.
KNOWN_SPLITS = frozenset(
    {"train", "training", "val", "valid", "validation", "dev", "test", "testing", "holdout", "unassigned"}
)
EVAL_SPLITS = frozenset({"test", "testing", "holdout", "val", "valid", "validation", "dev"})
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")

_SLUG = re.compile(r"[^0-9a-zA-Z]+")


def clip_id_for(video: str, start: float | None, end: float | None) -> str:
    """Stable id from what the segment *is* (source and bounds), never from its label or row.

    Bounds are normalised first, so one segment has one id however a manifest writes it: an empty start is 0,
    -0 is 0, and times agree to the millisecond. An empty end stays "to the end of the video" (its length is
    not known here). Paths are normalised by the manifest readers (`formats.base.resolve_video`).
    """
    bounds = f"{_seconds(0.0 if start is None else start)}|{'end' if end is None else _seconds(end)}"
    return hashlib.blake2b(f"{video}|{bounds}".encode(), digest_size=10).hexdigest()


def _seconds(value: float) -> str:
    return f"{round(value, 3) + 0.0:.3f}"  # + 0.0 turns -0.0 into 0.0


def collection_name(dataset: str, model_id: str, part: str = "clips") -> str:
    """Milvus names allow letters, digits and underscores only; one collection per (dataset, model)."""
    digest = hashlib.blake2b(model_id.encode(), digest_size=3).hexdigest()
    slug = _SLUG.sub("_", f"{dataset}__{model_id}").strip("_")[:180]
    return f"ta_{slug}_{digest}_{part}"


@dataclass(frozen=True)
class ClipSpec:
    """One labelled segment of one source video, as a manifest row states it."""

    row: int
    video: str
    start: float | None
    end: float | None
    label: str
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def clip_id(self) -> str:
        return clip_id_for(self.video, self.start, self.end)

    def scalars(self) -> dict[str, Any]:
        """The fields a relabel may change: updated in place without re-embedding."""
        extra = json.loads(json.dumps(self.extra, default=str))
        return {ROW: self.row, LABEL: self.label, SPLIT: self.split or "", EXTRA: extra}
