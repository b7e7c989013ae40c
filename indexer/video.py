"""Decoding and frame sampling: each source video is opened and decoded once for all its segments."""

from __future__ import annotations

import base64
import io
import logging
import math
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

import av
import numpy as np
from PIL import Image

from indexer.embedders import Vectors
from indexer.fingerprint import encode as encode_fingerprint
from indexer.fingerprint import frame_hash
from taxonomy_core.schema import ClipSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingConfig:
    """What is taken from each segment; written into the store so the audit knows how it was made."""

    frames_per_clip: int = 8
    timeline_fps: float = 2.0
    max_timeline_steps: int = 64
    crop_grid: int = 3
    image_size: int = 224
    thumbnail_size: int = 160
    end_tolerance_s: float = 0.5
    seek_gap_s: float = 8.0
    # Set by an embedder that pools crop vectors from one pass over the whole middle frame: the frame
    # is kept at this short side instead of being cut into crop images.
    region_size: int | None = None
    # A timeline step takes the vector of the clip frame inside its span, where there is one (no extra image).
    timeline_reuse: bool = True
    # Clip frames and timeline steps are sampled at the nearest multiple of this (seconds) inside the segment, so
    # that overlapping segments of a video ask for the same frames, decoded and embedded once (`snap`). 0.125 s
    # keeps 8 frames of a segment of 1 s or more apart; 0: each segment's exact times.
    frame_grid_s: float = 0.125
    # The same for the middle frame (thumbnail, brightness, and the crops or region pass: the costliest image, 2.4 to
    # 4.9 images of compute for effnet-lite0). 1 s: the nearest whole second inside the segment; the demo keeps its
    # decisions (tests/test_embedders.py).
    middle_grid_s: float = 1.0
    # A clip's frames whose perceptual hashes differ by at most this many bits (of 64) are the same picture: the
    # model sees the first, and the others take its vector (a still shot embeds 1 image instead of 8). -1: off, the
    # default: at 2 and at 4 bits the demo gained an outlier finding (docs/benchmarks.md, issue 20).
    same_frame_bits: int = -1
    # How the job treats a file, not what is stored (left out of `record`): the time one file may take to open and
    # decode (a stalled network mount, a pathological file) before its rows fail and the job goes on, how far past
    # a damaged region decoding seeks again (it gives up after `damage_retries` damaged regions in one file), and
    # how many threads decode it.
    file_timeout_s: float = 600.0
    damage_skip_s: float = 1.0
    damage_retries: int = 16
    # Threads FFmpeg decodes one video with: 0, its own choice (frame threads over every core: fastest where cores
    # are spare); 1, one (the decode pool's choice where every core already runs a decoder or the model: frame
    # threads then wait on each other, ~1.7x the wall time on a busy machine). The pixels are the same either way.
    decode_threads: int = 0

    def record(self) -> dict:
        """What the store records about how clips were made (the job-only settings left out)."""
        return {k: v for k, v in asdict(self).items() if k not in JOB_ONLY}

    @classmethod
    def recorded(cls, sampling: dict) -> SamplingConfig:
        """The config a store layout recorded; layouts from before the grid sampled each segment's exact times, and
        embedded every frame."""
        return cls(**{"frame_grid_s": 0.0, "middle_grid_s": 0.0, "same_frame_bits": -1, **sampling})


JOB_ONLY = ("file_timeout_s", "damage_skip_s", "damage_retries", "decode_threads")


class TimeLimit(Exception):
    """The file's time to open and decode ran out (SamplingConfig.file_timeout_s)."""


@dataclass(frozen=True)
class VideoInfo:
    duration: float | None
    fps: float
    width: int
    height: int
    codec: str


@dataclass
class SampledClip:
    """A segment's pixels, ready for the model: `images` holds each decoded frame once, then the crops."""

    spec: ClipSpec
    start: float
    end: float
    info: VideoInfo
    images: np.ndarray  # [U, S, S, 3] uint8
    image_keys: list[tuple[int, int]]  # per row of `images`: (frame number in the decode pass, crop box or -1)
    frame_idx: np.ndarray  # [N] rows of `images` for the clip embedding
    frame_times: np.ndarray  # [N] seconds the clip frames were sampled at, in the source video
    timeline_idx: np.ndarray  # [T] rows of `images`, one per timeline step
    timeline_times: np.ndarray  # [T] seconds in the source video
    crop_idx: np.ndarray  # [C] rows of `images`
    crop_boxes: np.ndarray  # [C, 4] relative x0, y0, x1, y1
    thumbnail: str  # base64 JPEG
    brightness: float  # mean luma of the middle frame, 0-255 (a shortcut-risk feature)
    fingerprint: str = ""  # perceptual hashes of the whole decoded frames, in time order (indexer.fingerprint)
    middle: np.ndarray | None = None  # [H, W, 3] the whole middle frame when crops are pooled regions
    middle_key: int = -1  # the middle frame's number in the decode pass
    # Computed in the decoding process while the model process was behind (indexer.executors.stages.Offload): the
    # model's per-image arrays by row of `images`, and the crop vectors of the region pass (`middle` then None).
    outputs: dict[int, list[np.ndarray]] | None = None
    regions: Vectors | None = None

    @property
    def pooled(self) -> bool:
        """Its crop vectors come from a region pass over the middle frame (else from crop images)."""
        return self.middle is not None or self.regions is not None


@dataclass(frozen=True)
class SegmentFailure:
    spec: ClipSpec
    kind: str  # "unreadable_video" | "invalid_annotation"
    reason: str


@dataclass
class _Plan:
    """The timestamps one segment needs, and the frames gathered for them so far."""

    spec: ClipSpec
    info: VideoInfo
    start: float
    end: float
    clip_times: np.ndarray
    timeline_times: np.ndarray  # each step's centre, as stored
    step_times: np.ndarray  # the times its frames are sampled at
    middle_time: float
    frames: dict[float, tuple[int, np.ndarray]] = field(default_factory=dict)
    middle: np.ndarray | None = None
    middle_key: int = -1
    hashes: dict[int, int] = field(default_factory=dict)  # frame number -> perceptual hash

    def __post_init__(self) -> None:
        self._times = sorted({*self.clip_times.tolist(), *self.step_times.tolist(), self.middle_time})

    def times(self) -> list[float]:
        return self._times

    def assign(self, t: float, frame: _Decoded, cfg: SamplingConfig) -> bool:
        """Record the frame for target `t`; True once every target has its frame."""
        self.frames[t] = (frame.number, frame.small(cfg))
        self.hashes[frame.number] = frame.phash(cfg)
        if t == self.middle_time:
            self.middle, self.middle_key = frame.large(cfg), frame.number
        return len(self.frames) == len(self._times)


def probe(container: av.container.InputContainer) -> VideoInfo:
    stream = container.streams.video[0]
    duration = None
    if container.duration:
        duration = container.duration / av.time_base
    elif stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    rate = stream.average_rate or stream.guessed_rate or 0
    return VideoInfo(duration, float(rate), stream.width, stream.height, stream.codec_context.name)


def even_times(start: float, end: float, count: int) -> np.ndarray:
    """Centres of `count` equal parts of [start, end]."""
    return start + (np.arange(count) + 0.5) * (end - start) / count


def timeline_count(start: float, end: float, cfg: SamplingConfig) -> int:
    return int(min(cfg.max_timeline_steps, max(1, math.ceil((end - start) * cfg.timeline_fps - 1e-6))))


def snap(times: np.ndarray, start: float, end: float, grid: float) -> np.ndarray:
    """`times` moved to the nearest multiples of `grid` in [start, end), so that overlapping segments share frames;
    the exact times where the grid is too coarse for them (two on one point, or no point in the segment)."""
    if grid <= 0:
        return times
    k = np.floor(times / grid + 0.5)
    k += (k * grid < start).astype(float) - (k * grid >= end).astype(float)
    snapped = k * grid
    if len(np.unique(snapped)) < len(times) or ((snapped < start) | (snapped >= end)).any():
        return times
    return snapped


def crop_boxes(grid: int) -> np.ndarray:
    """A grid x grid tiling plus one centred half-size box, all relative to the frame."""
    cells = [(c / grid, r / grid, (c + 1) / grid, (r + 1) / grid) for r in range(grid) for c in range(grid)]
    return np.array(cells + [(0.25, 0.25, 0.75, 0.75)], dtype=np.float32)


def sample_video(path: str, specs: list[ClipSpec], cfg: SamplingConfig) -> Iterator[SampledClip | SegmentFailure]:
    """Yield one result per spec, each as soon as its last frame is decoded; never raises for bad input."""
    problem = _file_problem(path)
    if problem:
        yield from (SegmentFailure(s, "unreadable_video", problem) for s in specs)
        return
    deadline = time.monotonic() + cfg.file_timeout_s
    try:
        container = av.open(path, timeout=cfg.file_timeout_s)  # ffmpeg's own interrupt, for a stalled read
    except (av.FFmpegError, OSError, ValueError) as e:
        yield from (SegmentFailure(s, "unreadable_video", f"cannot open {path}: {e}") for s in specs)
        return
    with container:
        problem = _stream_problem(container, path)
        if problem:
            yield from (SegmentFailure(s, "unreadable_video", problem) for s in specs)
            return
        info = probe(container)
        plans: list[_Plan] = []
        for spec in specs:
            outcome = _plan(spec, info, cfg, path)
            if isinstance(outcome, SegmentFailure):
                yield outcome
            else:
                plans.append(outcome)
        if plans:
            yield from _decode(container, path, plans, cfg, deadline)


def _file_problem(path: str) -> str | None:
    """A local file that is missing or empty, said plainly rather than as ffmpeg's "invalid data"."""
    if "://" in path:
        return None
    try:
        info = os.stat(path)  # never opens it: opening a FIFO blocks until someone writes to it
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as e:
        return f"{path} cannot be read ({e.strerror})"
    if stat.S_ISDIR(info.st_mode):
        return f"{path} is a folder, not a video file"
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file (a pipe, device or socket), so it is not read: give a video file"
    if info.st_size == 0:
        return f"{path} is empty (0 bytes): copy the video again"
    return None


def _stream_problem(container: av.container.InputContainer, path: str) -> str | None:
    """No picture to sample: an audio-only file, or a still image (ffmpeg opens those as one-frame videos)."""
    if not container.streams.video:
        return f"{path} has no video stream (audio only?)"
    demuxer = container.format.name
    if demuxer == "image2" or demuxer.endswith("_pipe"):
        codec = container.streams.video[0].codec_context.name
        return f"{path} is a still image ({codec}), not a video: give a video file, or leave the image out"
    return None


def _plan(spec: ClipSpec, info: VideoInfo, cfg: SamplingConfig, path: str) -> _Plan | SegmentFailure:
    start = spec.start or 0.0
    end = spec.end
    if info.duration is not None:
        if start >= info.duration:
            return SegmentFailure(
                spec, "invalid_annotation", f"start {start:.2f}s is at or past the end of {path} ({info.duration:.2f}s)"
            )
        if end is not None and end > info.duration + cfg.end_tolerance_s:
            return SegmentFailure(
                spec, "invalid_annotation", f"end {end:.2f}s is beyond the duration of {path} ({info.duration:.2f}s)"
            )
        end = info.duration if end is None else min(end, info.duration)
    elif end is None:
        return SegmentFailure(spec, "unreadable_video", f"{path} reports no duration; give the segment an explicit end")
    steps = even_times(start, end, timeline_count(start, end, cfg))
    clip_times = snap(even_times(start, end, cfg.frames_per_clip), start, end, cfg.frame_grid_s)
    middle = snap(np.array([(start + end) / 2]), start, end, cfg.middle_grid_s)[0]
    return _Plan(spec, info, start, end, clip_times, steps, snap(steps, start, end, cfg.frame_grid_s), float(middle))


def _decode(
    container, path: str, plans: list[_Plan], cfg: SamplingConfig, deadline: float = math.inf
) -> Iterator[SampledClip | SegmentFailure]:
    """Walk the stream once, in time order; re-seek only across gaps longer than `seek_gap_s`, and past a
    damaged region (the segments that need frames inside it fail, later ones are still decoded)."""
    stream = container.streams.video[0]
    if cfg.decode_threads != 1:
        stream.thread_type = "AUTO"
    stream.codec_context.thread_count = cfg.decode_threads
    info = plans[0].info
    offset = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
    half_period = 0.5 / info.fps if info.fps > 0 else 0.02
    targets = sorted((t, i) for i, p in enumerate(plans) for t in p.times())
    cursor, frame_no, last, error = 0, -1, None, None
    damaged: dict[int, str] = {}  # plan -> where the damage hid one of its frames
    skip_to, retries = -math.inf, 0
    while cursor < len(targets):
        while cursor < len(targets) and targets[cursor][0] < skip_to:  # hidden by the damage
            damaged.setdefault(targets[cursor][1], f"{skip_to - cfg.damage_skip_s:.2f}s")
            cursor += 1
        if cursor == len(targets):
            break
        try:
            seek_to = int((targets[cursor][0] + offset) / stream.time_base)
            container.seek(max(0, seek_to - 1), stream=stream, backward=True)
            last, assigned_since_seek = None, False
            for frame in container.decode(stream):
                if time.monotonic() > deadline:
                    raise TimeLimit(f"the time limit per file ({cfg.file_timeout_s:g} s) ran out")
                frame_no += 1
                t = frame.time - offset if frame.time is not None else (last.time if last else 0.0) + 2 * half_period
                current = _Decoded(frame, t, frame_no)
                # A target is shown by the latest frame at or before it: known once a later frame arrives.
                while cursor < len(targets) and targets[cursor][0] < t - 1e-6:
                    shown = last if last is not None else current
                    target, i = targets[cursor]
                    cursor += 1
                    assigned_since_seek = True
                    if last is None and retries and target < t - 2 * half_period - 1e-6:  # its frame is lost
                        damaged.setdefault(i, f"{target:.2f}s")
                    if i not in damaged and plans[i].assign(target, shown, cfg):
                        yield _assemble(plans[i], cfg)
                last = current
                if cursor < len(targets) and assigned_since_seek and targets[cursor][0] - t > cfg.seek_gap_s:
                    break
            else:
                break
        except (av.FFmpegError, OSError) as e:
            retries += 1
            where = last.time if last is not None else targets[cursor][0]
            log.warning("decoding %s failed at %.2fs (%s); seeking past it", path, where, e)
            if retries > cfg.damage_retries:
                error = e
                break
            skip_to = max(skip_to, where) + cfg.damage_skip_s
            last = None
        except (TimeLimit, MemoryError) as e:
            error = e
            log.warning("decoding %s stopped at %.2fs: %s", path, last.time if last else 0.0, e)
            break
    yield from _damaged(plans, damaged, path)
    missing = [(t, i) for t, i in targets[cursor:] if i not in damaged]
    yield from _tail(plans, missing, last, error, path, cfg)


def _damaged(plans: list[_Plan], damaged: dict[int, str], path: str) -> Iterator[SegmentFailure]:
    for i, where in sorted(damaged.items()):
        plan = plans[i]
        yield SegmentFailure(
            plan.spec,
            "unreadable_video",
            f"{path} is damaged near {where} (its frames there cannot be decoded; later ones were); the segment "
            f"needs {plan.start:.2f}-{plan.end:.2f}s: cut it to the intact part or copy the video again",
        )


@dataclass
class _Decoded:
    """A decoded frame, converted to arrays only if some target needs it (the large copy: the middle only)."""

    frame: av.VideoFrame
    time: float
    number: int
    _small: np.ndarray | None = None
    _large: np.ndarray | None = None
    _hash: int | None = None

    def small(self, cfg: SamplingConfig) -> np.ndarray:
        """The model-sized centre square, upright."""
        if self._small is None:
            upright = np.rot90(_resize_short(self.frame, cfg.image_size), _quarter_turns(self.frame))
            self._small = np.ascontiguousarray(_centre_square(upright))
        return self._small

    def large(self, cfg: SamplingConfig) -> np.ndarray:
        """The whole frame, upright, large enough for the crops (or the region pass) and the thumbnail."""
        if self._large is None:
            side = cfg.region_size or cfg.image_size * cfg.crop_grid
            self._large = _upright(self.frame, side)
        return self._large

    def phash(self, cfg: SamplingConfig) -> int:
        """The whole frame's perceptual hash (indexer.fingerprint), from the copy the fingerprint bench measured."""
        if self._hash is None:
            self._hash = frame_hash(_upright(self.frame, cfg.image_size * cfg.crop_grid))
        return self._hash


def _tail(plans, missing, last: _Decoded | None, error, path, cfg) -> Iterator[SampledClip | SegmentFailure]:
    """Targets after the last frame: it stays on screen to the end, within the tolerance."""
    unfinished = {i for _, i in missing}
    if last is not None and error is None:
        fps = plans[0].info.fps
        period = 1.0 / fps if fps > 0 else 0.0  # the last frame stays on screen this long
        for t, i in missing:
            if t - last.time <= period + cfg.end_tolerance_s and plans[i].assign(t, last, cfg):
                unfinished.discard(i)
                yield _assemble(plans[i], cfg)
    reached = f"{last.time:.2f}s" if last is not None else "its first frame"
    why = f"decoding failed: {error}" if error else "the file is truncated or its duration is wrong"
    for i in sorted(unfinished):
        plan = plans[i]
        yield SegmentFailure(
            plan.spec,
            "unreadable_video",
            f"{path} could not be decoded past {reached} ({why}); the segment needs {plan.start:.2f}-{plan.end:.2f}s",
        )


def _upright(frame: av.VideoFrame, side: int) -> np.ndarray:
    """The whole frame at short side `side` (never upscaled), turned upright as its rotation metadata says."""
    resized = _resize_short(frame, min(side, frame.width, frame.height))
    return np.ascontiguousarray(np.rot90(resized, _quarter_turns(frame)))


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that show the frame upright (its display matrix; PyAV >= 14)."""
    return round((getattr(frame, "rotation", 0) or 0) / 90) % 4


def _resize_short(frame: av.VideoFrame, short: int) -> np.ndarray:
    scale = short / min(frame.width, frame.height)
    width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
    return frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()


def _centre_square(image: np.ndarray, size: int | None = None) -> np.ndarray:
    h, w = image.shape[:2]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    square = image[y : y + side, x : x + side]
    if size is not None and side != size:
        square = np.asarray(Image.fromarray(square).resize((size, size), Image.BILINEAR))
    return square


def _assemble(plan: _Plan, cfg: SamplingConfig) -> SampledClip:
    keys: dict[int, int] = {}
    images: list[np.ndarray] = []
    for t in plan.times():
        key, small = plan.frames[t]
        if key not in keys:
            keys[key] = len(images)
            images.append(small)

    def rows(times: np.ndarray) -> np.ndarray:
        return np.array([keys[plan.frames[t][0]] for t in times.tolist()], dtype=np.int32)

    boxes = crop_boxes(cfg.crop_grid)
    crop_start = len(images)
    image_keys = [(key, -1) for key in keys]
    if cfg.region_size is None:  # else the embedder pools each box from one pass over `middle`
        images.extend(_crop(plan.middle, box, cfg.image_size) for box in boxes)
        image_keys += [(plan.middle_key, k) for k in range(len(boxes))]
    return SampledClip(
        spec=plan.spec,
        start=plan.start,
        end=plan.end,
        info=_displayed(plan.info, plan.middle),
        images=np.stack(images),
        image_keys=image_keys,
        frame_idx=rows(plan.clip_times),
        frame_times=plan.clip_times,
        timeline_idx=rows(plan.step_times),
        timeline_times=plan.timeline_times.astype(np.float32),
        crop_idx=np.arange(crop_start, len(images), dtype=np.int32),
        crop_boxes=boxes,
        thumbnail=thumbnail_b64(plan.middle, cfg.thumbnail_size),
        brightness=float(plan.middle.mean()),
        fingerprint=encode_fingerprint([plan.hashes[key] for key in keys]),
        middle=plan.middle if cfg.region_size is not None else None,
        middle_key=plan.middle_key,
    )


def _displayed(info: VideoInfo, upright: np.ndarray) -> VideoInfo:
    """The video's size as shown: width and height swap when rotation metadata turned the frames a quarter."""
    h, w = upright.shape[:2]
    if (w > h and info.height > info.width) or (h > w and info.width > info.height):
        return replace(info, width=info.height, height=info.width)
    return info


def _crop(image: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """The box's pixels as a model-sized square; at least one pixel, however small the frame (a 1x1 video)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (box * np.array([w, h, w, h])).round().astype(int)
    x0, y0 = min(x0, w - 1), min(y0, h - 1)
    return _centre_square(image[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)], size)


def thumbnail_b64(image: np.ndarray, size: int) -> str:
    thumb = Image.fromarray(image)
    thumb.thumbnail((size, size))
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
