"""The indexing stages as plain functions over batches: decode a video group, embed clips into rows, write.

Every executor chains these same functions (reader -> mapper -> writer, after clip-retrieval): the
local one in processes and the main thread, the Ray one on tasks and actor pools. They know nothing of
manifests, resume or reports; `indexer.pipeline` decides what to index and reads what comes back.
"""

from __future__ import annotations

import itertools
import logging
import math
import pickle
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer.embedders import Embedder, Vectors
from indexer.fingerprint import decode as decode_fingerprint
from indexer.video import SampledClip, SamplingConfig, SegmentFailure, sample_video
from taxonomy_core import schema as S
from taxonomy_core.schema import ClipSpec

if TYPE_CHECKING:  # the decoding processes import this module: no Milvus client, no pandas there
    from taxonomy_core.store.base import DatasetLayout, Store

log = logging.getLogger(__name__)


@dataclass
class Rows:
    """One batch of clips ready for `Store.write_clips`; vectors stay numpy until the write."""

    clips: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    crops: list[dict[str, Any]]
    images: int  # images the model ran on (a region pass counts as its frame)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Written:
    """What an executor reports after each write: the clips now stored, and where the time went."""

    clips: int
    images: int
    seconds: dict[str, float]


Outcome = Written | SegmentFailure


def decode_group(video: str, specs: list[ClipSpec], sampling: SamplingConfig) -> Iterator[SampledClip | SegmentFailure]:
    """Every segment of one source video, decoded in one pass; a crash fails that video's segments only."""
    pending = {s.row: s for s in specs}
    try:
        for result in sample_video(video, specs, sampling):
            pending.pop(result.spec.row, None)
            yield result
    except Exception as e:  # a bug or an exotic file must not take the whole job down
        reason = f"{video}: decoding raised {type(e).__name__}: {e}"
        yield from (SegmentFailure(spec, "unreadable_video", reason) for spec in pending.values())


@dataclass(frozen=True)
class Offload:
    """The model run by a decoding process for the clips it decodes while `backlog` or more clips wait unembedded for
    the model process: a decoder ahead of the model embeds whole clips (frames and region pass) and sends their
    outputs, one behind leaves them all to the model process. Outputs are the same bits in either process
    (`for_decoders`)."""

    model: bytes  # `Embedder.for_decoders()`
    sampling: SamplingConfig
    backlog: int = 16
    modules: tuple[str, ...] = ()  # what unpickling the model imports, imported once by the decoders' fork server


class DecoderSide:
    """A decoding process's side of `Offload`. The model is unpickled in a thread when the backlog is first reached,
    and clips are embedded here once it has loaded (decoding starts at once, and goes on while torch loads). The
    backlog counts model work, not messages: of the messages still queued (the newest ones: the queue is first in,
    first out), the clips sent unembedded; clips embedded here cost the model process almost nothing. (With several
    decoders on one queue the others' messages count as this one's: an estimate.) Where the model fails here, the
    model process embeds every clip (and meets the error itself)."""

    def __init__(self, offload: Offload | None):
        self.offload, self.model = offload, None
        self.sent: deque[bool] = deque(maxlen=1024)  # per message sent, oldest first: does it hold model work
        self.loader: threading.Thread | None = None
        self.failure: Exception | None = None
        self.decode_s: float | None = None  # seconds a clip, decoding and embedding here (running means)
        self.embed_s: float | None = None
        self.start("")

    def start(self, video: str, remaining: int = 0) -> None:
        """Outputs made for this video's clips, by image key and by middle frame (overlapping clips share frames); and
        the clips left to decode in the job from here (this video's included), at most."""
        self.frames, self.regions = FrameCache(), FrameCache(limit=64)
        self.remaining = remaining

    def post(self, results, message: Any) -> None:
        """Put a message on the results queue, noting whether it leaves the model process a clip to embed."""
        results.put(message)
        self.sent.append(isinstance(message, SampledClip) and message.outputs is None)

    def backlog(self, waiting: int) -> int:
        """Clips among the `waiting` queued messages that the model process must still embed."""
        return sum(itertools.islice(reversed(self.sent), min(waiting, len(self.sent))))

    def __call__(self, result: SampledClip | SegmentFailure, waiting: int) -> SampledClip | SegmentFailure:
        """`result`, embedded here when `waiting` queued messages hold `Offload.backlog` or more clips to embed."""
        self.remaining = max(0, self.remaining - 1)
        if self.offload is None or not isinstance(result, SampledClip) or self.backlog(waiting) < self._threshold():
            return result
        if self.loader is None and self.offload.backlog > 0:  # loads beside the decoding, the model process busy
            self.loader = threading.Thread(target=self._load, name="offload-model", daemon=True)
            self.loader.start()
        if self.loader is not None and self.loader.is_alive():
            return result
        try:
            started = time.perf_counter()
            embedded = self._embedded(result)
            self.embed_s = _mean(self.embed_s, time.perf_counter() - started)
            return embedded
        except Exception as e:
            log.warning(
                "a decoding process could not run the model (%s: %s); the model process embeds every clip",
                type(e).__name__,
                e,
            )
            self.offload = None
            return result

    def _threshold(self) -> int:
        """`Offload.backlog`, and less near the job's end, so that both processes finish together: embedding this clip
        here delays this process by one clip's model time, and the model process's queue lasts `backlog` of them;
        this process still has `remaining` clips to decode (at the decode / model time ratio measured here)."""
        if self.embed_s is None or self.decode_s is None:
            return self.offload.backlog
        return min(self.offload.backlog, 2 + math.ceil(self.remaining * self.decode_s / self.embed_s))

    def decoded(self, seconds: float) -> None:
        """The seconds one clip took to decode here."""
        self.decode_s = _mean(self.decode_s, seconds)

    def _load(self) -> None:
        try:
            self.model = pickle.loads(self.offload.model)
        except Exception as e:  # raised again where the model is first run
            self.failure = e

    def _embedded(self, clip: SampledClip) -> SampledClip:
        if self.model is None and self.failure is None:  # backlog 0: every clip is embedded here, the first too
            self._load()
        if self.failure is not None:
            raise self.failure
        used = _Companions.of(clip, self.offload.sampling.timeline_reuse).used.tolist()
        rows = {clip.image_keys[r]: r for r in used}

        def frames(keys: list[tuple]) -> list[list[np.ndarray]]:
            arrays = self.model.frames(clip.images[[rows[k] for k in keys]])
            return [[a[j] for a in arrays] for j in range(len(keys))]

        outputs = dict(zip(used, self.frames.get(list(rows), frames)[0]))
        if clip.middle is None:
            return replace(clip, outputs=outputs)
        [regions], _ = self.regions.get([clip.middle_key], lambda _: [self.model.regions(clip.middle, clip.crop_boxes)])
        return replace(clip, outputs=outputs, middle=None, regions=regions)


def _mean(mean: float | None, value: float, weight: float = 0.2) -> float:
    return value if mean is None else (1 - weight) * mean + weight * value


def embed_rows(
    embedder: Embedder, layout: DatasetLayout, clips: list[SampledClip], sampling: SamplingConfig, cache: FrameCache
) -> Rows:
    """Clip, timeline and crop rows for a batch of decoded clips; each distinct frame goes through the model once
    per job (the job's `cache`), however many overlapping clips of its video use it."""
    started = time.perf_counter()
    plans = [_Companions.of(c, sampling.timeline_reuse) for c in clips]
    same = [_same_frames(c, p.used, sampling.same_frame_bits) for c, p in zip(clips, plans)]
    first: dict[tuple, tuple[int, int]] = {}  # a frame's key -> (clip, row of its `images`) that holds its pixels
    for i, (clip, plan) in enumerate(zip(clips, plans)):
        for row in plan.used.tolist():
            if row not in same[i]:
                first.setdefault(_key(clip, row), (i, row))
    position = {key: n for n, key in enumerate(first)}

    def at(i: int, rows: np.ndarray) -> np.ndarray:
        return np.array([position[_key(clips[i], same[i].get(r, r))] for r in rows.tolist()], dtype=np.int64)

    clip_rows = [at(i, c.frame_idx) for i, c in enumerate(clips)]
    pixels = [clips[i].images[row] for i, row in first.values()]
    known = {_key(c, row): out for c in clips if c.outputs for row, out in c.outputs.items()}
    (per_image, per_clip), embedded = _embed_frames(embedder, cache, list(first), pixels, clip_rows, known)
    regions, passes = _embed_regions(embedder, cache, clips)
    rows = Rows([], [], [], embedded + passes)
    for i, (clip, plan) in enumerate(zip(clips, plans)):
        rows.timeline += _parts(clip, per_image, at(i, plan.timeline), S.TIME, clip.timeline_times)
        if regions is not None:
            boxes = len(clip.crop_boxes)
            rows.crops += _parts(clip, regions, np.arange(i * boxes, (i + 1) * boxes), S.BOX, clip.crop_boxes)
        else:
            rows.crops += _parts(clip, per_image, at(i, clip.crop_idx), S.BOX, clip.crop_boxes)
        rows.clips.append(_clip_row(clip, layout, per_clip, i))
    rows.seconds["embed"] = time.perf_counter() - started
    return rows


def write_rows(store: Store, layout: DatasetLayout, rows: Rows) -> Written:
    """Companions first, then the clip rows (idempotent upserts keyed by clip id)."""
    started = time.perf_counter()
    store.write_clips(layout, _lists(rows.clips), _lists(rows.timeline), _lists(rows.crops))
    seconds = {**rows.seconds, "write": time.perf_counter() - started}
    return Written(len(rows.clips), rows.images, seconds)


class FrameCache:
    """What the frames embedded so far in a job gave, least recently used out first past `limit` entries.

    Keys name a frame by its video and its number in that video's one decoding pass, so an entry is never
    reused for other pixels; a job's overlapping segments need only their neighbours' frames.
    """

    def __init__(self, limit: int = 1024):
        self.limit = limit
        self.entries: OrderedDict[tuple, Any] = OrderedDict()

    def get(self, keys: list[tuple], make: Callable[[list[tuple]], list]) -> tuple[list, int]:
        """Each key's entry, the missing ones from one call of `make`; and how many were made."""
        missing = [k for k in keys if k not in self.entries]
        made = dict(zip(missing, make(missing))) if missing else {}
        found = [made[k] if k in made else self.entries[k] for k in keys]
        for key, entry in zip(keys, found):
            self.entries[key] = entry
            self.entries.move_to_end(key)
        while len(self.entries) > self.limit:
            self.entries.popitem(last=False)
        return found, len(missing)


def _same_frames(clip: SampledClip, used: np.ndarray, bits: int) -> dict[int, int]:
    """Rows of the clip's frames that show the same picture as an earlier frame of the clip (perceptual hashes
    within `bits`), each mapped to that frame's row: they are not embedded again."""
    hashes = decode_fingerprint(clip.fingerprint)
    frames = [row for row in used.tolist() if clip.image_keys[row][1] == -1]
    if bits < 0 or len(hashes) != sum(1 for _, box in clip.image_keys if box == -1):  # a long clip's is sampled
        return {}
    kept: list[int] = []
    same = {}
    for row in sorted(frames, key=lambda r: clip.image_keys[r][0]):  # in time order: the first of a run is kept
        match = next((k for k in kept if (int(hashes[k]) ^ int(hashes[row])).bit_count() <= bits), None)
        if match is None:
            kept.append(row)
        else:
            same[row] = match
    return same


def _key(clip: SampledClip, row: int) -> tuple:
    return ("image", clip.spec.video, *clip.image_keys[row])


def _embed_frames(
    embedder: Embedder,
    cache: FrameCache,
    keys: list[tuple],
    pixels: list[np.ndarray],
    clip_rows: list[np.ndarray],
    known: dict[tuple, list[np.ndarray]],
) -> tuple[tuple[Vectors, Vectors], int]:
    """Per-image vectors of the batch's distinct frames, per-clip ones pooled from them; and the images embedded.
    `known`: outputs a decoding process made (`Offload`)."""
    if not embedder.pools_frames:  # a video-native clip vector: the batch's frames, each once
        return embedder.embed_batch(np.stack(pixels), clip_rows), len(pixels)
    index = dict(zip(keys, range(len(keys))))

    def make(missing: list[tuple]) -> list[list[np.ndarray]]:
        todo = [k for k in missing if k not in known]
        outputs = embedder.frame_outputs(np.stack([pixels[index[k]] for k in todo])) if todo else []
        made = {k: [a[j] for a in outputs] for j, k in enumerate(todo)}
        return [made[k] if k in made else known[k] for k in missing]

    entries, made = cache.get(keys, make)
    outputs = [np.stack(parts) for parts in zip(*entries)]
    return embedder.from_outputs(outputs, clip_rows), made


def _embed_regions(embedder: Embedder, cache: FrameCache, clips: list[SampledClip]) -> tuple[Vectors | None, int]:
    """Each clip's crop vectors pooled from one pass over its middle frame, once per distinct frame in the job."""
    if not all(c.pooled for c in clips):
        return None, 0
    boxes = clips[0].crop_boxes
    middles = {("region", c.spec.video, c.middle_key): c for c in clips}

    def make(missing: list[tuple]) -> list[Vectors]:
        todo = [k for k in missing if middles[k].regions is None]  # the others' passes ran in a decoding process
        v = embedder.embed_regions([middles[k].middle for k in todo], boxes) if todo else None
        made = {k: _rows(v, slice(j * len(boxes), (j + 1) * len(boxes))) for j, k in enumerate(todo)}
        return [made[k] if k in made else middles[k].regions for k in missing]

    entries, made = cache.get(list(middles), make)
    per_frame = dict(zip(middles, entries))
    per_clip = [per_frame["region", c.spec.video, c.middle_key] for c in clips]
    semantic = None if per_clip[0].semantic is None else np.concatenate([v.semantic for v in per_clip])
    return Vectors(np.concatenate([v.visual for v in per_clip]), semantic), made


def _rows(vectors: Vectors, rows: slice) -> Vectors:
    return Vectors(vectors.visual[rows], None if vectors.semantic is None else vectors.semantic[rows])


@dataclass(frozen=True)
class _Companions:
    """Which decoded images a clip's vectors need: a timeline step reuses the clip frame inside its span.

    A step with no clip frame inside (a segment longer than frames_per_clip steps) keeps its own frame.
    Images nobody uses (the middle frame, when it is no step) are not embedded.
    """

    timeline: np.ndarray  # [T] rows of the clip's `images` that give each step its vector
    used: np.ndarray  # sorted rows of `images` that go through the model

    @classmethod
    def of(cls, clip: SampledClip, reuse: bool) -> _Companions:
        timeline = _steps_on_clip_frames(clip) if reuse else clip.timeline_idx
        used = np.unique(np.concatenate([clip.frame_idx, timeline, clip.crop_idx]).astype(np.int64))
        return cls(timeline, used)

    def local(self, rows: np.ndarray) -> np.ndarray:
        """Rows of the clip's `images` -> positions among the embedded ones."""
        return np.searchsorted(self.used, rows)


def _steps_on_clip_frames(clip: SampledClip) -> np.ndarray:
    """For each timeline step, the clip frame nearest its time within its span, else the step's own frame."""
    steps = len(clip.timeline_times)
    clip_times = clip.frame_times
    bounds = clip.start + np.arange(steps + 1) * (clip.end - clip.start) / steps
    timeline = clip.timeline_idx.copy()
    for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        inside = np.flatnonzero((clip_times >= lo) & (clip_times < hi))
        if len(inside):
            timeline[k] = clip.frame_idx[inside[np.argmin(np.abs(clip_times[inside] - clip.timeline_times[k]))]]
    return timeline


def _vectors(vectors: Vectors, i: int) -> dict[str, np.ndarray]:
    out = {S.VECTOR: vectors.visual[i]}
    if vectors.semantic is not None:
        out[S.TEXT_VECTOR] = vectors.semantic[i]
    return out


def _parts(clip: SampledClip, vectors: Vectors, rows: np.ndarray, where: str, values: np.ndarray) -> list[dict]:
    clip_id = clip.spec.clip_id
    return [
        {S.PART_ID: f"{clip_id}:{k:03d}", S.CLIP_ID: clip_id, S.INDEX: k, where: value, **_vectors(vectors, int(r))}
        for k, (r, value) in enumerate(zip(rows, values.tolist()))
    ]


def _clip_row(clip: SampledClip, layout: DatasetLayout, per_clip: Vectors, i: int) -> dict[str, Any]:
    spec, info = clip.spec, clip.info
    return {
        S.CLIP_ID: spec.clip_id,
        **spec.scalars(),
        S.VIDEO: spec.video,
        S.START: clip.start,
        S.END: clip.end,
        S.MODEL_ID: layout.model_id,
        S.DURATION: info.duration if info.duration is not None else -1.0,
        S.FPS: info.fps,
        S.WIDTH: info.width,
        S.HEIGHT: info.height,
        S.CODEC: info.codec,
        S.BRIGHTNESS: clip.brightness,
        S.THUMBNAIL: clip.thumbnail,
        S.FINGERPRINT: clip.fingerprint,
        **_vectors(per_clip, i),
    }


def _lists(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Vectors as plain lists, the form every Milvus client accepts."""
    return [{k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in row.items()} for row in rows]
