"""Every manifest format reads into ClipSpec rows with their row index; bad rows are findings."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from taxonomy_core.formats import FORMATS, ManifestError, ManifestFormat, ReadOptions, detect_format, read_manifest
from taxonomy_core.schema import clip_id_for
from tests.conftest import write_csv


def test_generic_csv_paths_times_and_metadata(tmp_path):
    (tmp_path / "videos").mkdir()
    absolute = tmp_path / "abs.mp4"
    rows = [
        {"video": "videos/a.mp4", "start": "1.5", "end": "4", "label": "hurdles", "split": "train", "camera": "gopro"},
        {"video": str(absolute), "start": "", "end": "", "label": "vault", "split": "", "camera": "x"},
        {"video": f"file://{absolute}", "start": "0", "end": "inf", "label": "vault", "split": "test", "camera": "y"},
        {"video": "videos/b.mp4", "start": "abc", "end": "2", "label": "vault", "split": "test", "camera": "z"},
    ]
    manifest = read_manifest(write_csv(tmp_path / "m.csv", rows))
    assert manifest.format == "csv" and manifest.row_count == 4
    a, b, c = manifest.clips
    assert a.video == str((tmp_path / "videos/a.mp4").resolve()) and (a.start, a.end) == (1.5, 4.0)
    assert a.extra == {"camera": "gopro"} and a.split == "train"
    assert b.video == str(absolute) and (b.start, b.end, b.split) == (None, None, None)
    assert c.video == str(absolute) and c.end is None
    [bad] = manifest.findings
    assert bad.rows == (3,) and "start 'abc' is not a number" in bad.message and "m.csv" in bad.message


def test_jsonl_with_a_broken_line(tmp_path):
    path = tmp_path / "m.jsonl"
    lines = [
        json.dumps({"video": "a.mp4", "start": 0, "end": 2, "label": "x"}),
        "{not json",
        json.dumps({"video": "b.mp4", "label": "y", "split": "val"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    manifest = read_manifest(path)
    assert [c.row for c in manifest.clips] == [0, 2]
    assert manifest.findings[0].rows == (1,) and "invalid JSON" in manifest.findings[0].message


def test_parquet(tmp_path):
    path = tmp_path / "m.parquet"
    pd.DataFrame(
        {"video": ["a.mp4", "b.mp4"], "start": [0.0, 1.0], "end": [2.0, None], "label": ["x", "y"], "fold": [1, 2]}
    ).to_parquet(path)
    manifest = read_manifest(path)
    assert manifest.format == "parquet"
    assert [(c.start, c.end, c.extra["fold"]) for c in manifest.clips] == [(0.0, 2.0, 1), (1.0, None, 2)]


def test_missing_columns_is_one_clear_error(tmp_path):
    with pytest.raises(ManifestError, match="no video column"):
        read_manifest(write_csv(tmp_path / "m.csv", [{"path": "a.mp4", "label": "x"}]), "csv")


def test_automl_csv(tmp_path):
    path = tmp_path / "automl.csv"
    path.write_text(
        "TRAINING,gs://bucket/videos/a.mp4,hurdles,0,5.5\n"
        "TEST,gs://bucket/videos/b.mp4,vault,2,inf\n"
        "gs://bucket/videos/c.mp4,vault,,\n"
        "UNASSIGNED,videos/d.mp4,vault\n"
        "TRAINING,a.mp4,x,1,2,3,4\n"
    )
    manifest = read_manifest(path, options=ReadOptions(video_root=tmp_path / "local"))
    assert manifest.format == "automl"
    a, b, c, d = manifest.clips
    assert (
        a.video == str((tmp_path / "local/videos/a.mp4").resolve())
        and a.split == "train"
        and (a.start, a.end) == (0, 5.5)
    )
    assert b.split == "test" and b.end is None and b.extra["ml_use"] == "TEST"
    assert c.split is None and (c.start, c.end) == (None, None)
    assert d.video == str((tmp_path / "local/videos/d.mp4").resolve()) and (d.start, d.end) == (None, None)
    assert manifest.findings[0].rows == (4,) and "found 6 fields" in manifest.findings[0].message


def test_kinetics_trimmed_and_full_videos(tmp_path):
    rows = [{"label": "abseiling", "youtube_id": "0347ZoDXyP0", "time_start": "14", "time_end": "24", "split": "train"}]
    path = write_csv(tmp_path / "k.csv", rows)
    trimmed = read_manifest(path, options=ReadOptions(video_root=tmp_path))
    [clip] = trimmed.clips
    assert trimmed.format == "kinetics"
    assert clip.video == str(tmp_path / "0347ZoDXyP0_000014_000024.mp4") and (clip.start, clip.end) == (None, None)
    full = read_manifest(path, options=ReadOptions(video_root=tmp_path, pattern="{split}/{youtube_id}.mkv"))
    assert full.clips[0].video == str(tmp_path / "train/0347ZoDXyP0.mkv") and (
        full.clips[0].start,
        full.clips[0].end,
    ) == (14, 24)
    broken = read_manifest(path, options=ReadOptions(video_root=tmp_path, pattern="{nope}.mp4"))
    assert broken.findings[0].rows == (0,) and "pattern" in broken.findings[0].message


def test_folder_per_class_with_and_without_splits(tmp_path):
    for label in ("jump", "run"):
        (tmp_path / "flat" / label).mkdir(parents=True)
        for name in ("b.mp4", "a.avi", "notes.txt"):
            (tmp_path / "flat" / label / name).write_bytes(b"")
    manifest = read_manifest(tmp_path / "flat")
    assert manifest.format == "folder"
    assert [(c.row, c.label, Path(c.video).name) for c in manifest.clips] == [
        (0, "jump", "a.avi"),
        (1, "jump", "b.mp4"),
        (2, "run", "a.avi"),
        (3, "run", "b.mp4"),
    ]
    for split in ("train", "test"):
        (tmp_path / "split" / split / "jump").mkdir(parents=True)
        (tmp_path / "split" / split / "jump" / "x.mp4").write_bytes(b"")
    assert [c.split for c in read_manifest(tmp_path / "split").clips] == ["test", "train"]


def test_format_detection(tmp_path):
    assert detect_format(write_csv(tmp_path / "g.csv", [{"video": "a", "label": "b"}])) == "csv"
    assert detect_format(write_csv(tmp_path / "k.csv", [{"label": "a", "youtube_id": "b"}])) == "kinetics"
    (tmp_path / "a.csv").write_text("gs://b/a.mp4,x,0,1\n")
    assert detect_format(tmp_path / "a.csv") == "automl"
    with pytest.raises(ManifestError, match="unknown manifest format"):
        read_manifest(tmp_path / "a.csv", "yaml")


def test_registry_is_explicit_and_sniffed_in_order(tmp_path):
    assert list(FORMATS) == ["folder", "jsonl", "parquet", "csv", "kinetics", "automl"]
    assert all(isinstance(f, ManifestFormat) and f.name == name for name, f in FORMATS.items())
    (tmp_path / "blob.bin").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ManifestError, match="cannot tell the format of .*blob.bin"):
        read_manifest(tmp_path / "blob.bin")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ManifestError, match="is empty"):
        read_manifest(tmp_path / "empty.csv")


def test_clip_id_depends_on_the_segment_not_the_label(tmp_path):
    rows = [{"video": "a.mp4", "start": "1", "end": "2", "label": "x"}]
    first = read_manifest(write_csv(tmp_path / "1.csv", rows)).clips[0]
    relabelled = read_manifest(write_csv(tmp_path / "2.csv", [dict(rows[0], label="y")])).clips[0]
    moved = read_manifest(write_csv(tmp_path / "3.csv", [dict(rows[0], end="3")])).clips[0]
    assert first.clip_id == relabelled.clip_id != moved.clip_id
    assert first.clip_id == clip_id_for(first.video, 1.0, 2.0)
