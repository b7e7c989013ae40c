"""Every manifest format reads into ClipSpec rows with their row index; bad rows are findings."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from taxonomy_core.edits import Edit
from taxonomy_core.formats import (
    FORMATS,
    KINETICS_PATTERN,
    Manifest,
    ManifestError,
    ManifestFormat,
    ReadOptions,
    detect_format,
    read_manifest,
    write_fixed_manifest,
)
from taxonomy_core.formats import table as table_format
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
    with pytest.raises(ManifestError, match="blob.bin is a binary file, not a manifest"):
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


# --- every registered format: read, edit, write_fixed, read back ----------------------------------------------

# Five rows each; the edits relabel row 1, trim row 2 (where the format can), drop row 3; rows 0 and 4 untouched.
EDITS = [
    Edit(1, "relabel", "wolf", "likely_mislabel"),
    Edit(2, "trim", (0.5, 1.25), "temporal_looseness"),
    Edit(3, "drop", "leaks into test", "split_leak"),
    Edit(1, "split", "test", "split_leak"),  # moved to where the rest of its source video is
]
UNTOUCHED = {0: 0, 4: 3}  # input row -> row in the fixed manifest


def _text_rows(lines: list[str], newline: str) -> str:
    return "".join(line + newline for line in lines)


def _csv(folder: Path, newline: str) -> Path:
    path = folder / "m.csv"
    lines = [
        "video,start,end,label,split,note",
        "a.mp4,0,2,cat,train,",
        "b.mp4,1,3,dog,train,plain",
        "c.mp4,0.25,4,cat,test,x",
        "d.mp4,2,5,dog,test,y",
        'e.mp4,1.50,,dog,train,"big, ""fluffy"""',
    ]
    path.write_bytes(_text_rows(lines, newline).encode())
    return path


def _jsonl(folder: Path, newline: str) -> Path:
    path = folder / "m.jsonl"
    records = [
        {"video": "a.mp4", "start": 0, "end": 2, "label": "cat", "split": "train"},
        {"Video": "b.mp4", "Start": 1, "End": 3, "Label": "dog", "split": "train"},
        {"video": "c.mp4", "start": 0.25, "end": 4, "label": "cat", "split": "test"},
        {"video": "d.mp4", "start": 2, "end": 5, "label": "dog", "split": "test"},
        {"video": "e.mp4", "start": 1.5, "end": None, "label": "dög", "split": "train", "note": [1, 2]},
    ]
    lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records]
    path.write_bytes(_text_rows(lines[:2] + [""] + lines[2:], newline).encode())  # a blank line is not a row
    return path


def _parquet(folder: Path, newline: str) -> Path:
    path = folder / "m.parquet"
    pd.DataFrame(
        {
            "video": ["a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4"],
            "start": [0.0, 1.0, 0.25, 2.0, 1.5],
            "end": [2.0, 3.0, 4.0, 5.0, None],
            "label": ["cat", "dog", "cat", "dog", "dog"],
            "split": ["train", "train", "test", "test", "train"],
            "fold": [1, 2, 3, 4, 5],
        }
    ).to_parquet(path)
    return path


def _automl(folder: Path, newline: str) -> Path:
    path = folder / "automl.csv"
    lines = [
        "TRAINING,gs://bucket/a.mp4,cat,0,2",
        "gs://bucket/b.mp4,dog,1,3",  # no ML_USE: the label is the second cell, not the third
        "TEST,gs://bucket/c.mp4,cat,0.25,4",
        "TEST,gs://bucket/d.mp4,dog,2,5",
        'UNASSIGNED,"gs://bucket/e, f.mp4",dog,1.50,inf',
    ]
    path.write_bytes(_text_rows(lines, newline).encode())
    return path


def _kinetics(folder: Path, newline: str) -> Path:
    path = folder / "k.csv"
    lines = [
        "label,youtube_id,time_start,time_end,split",
        "cat,aaa,0,10,train",
        "dog,bbb,10,20,train",
        "cat,ccc,5,15,test",
        "dog,ddd,0,10,test",
        "dog,eee,30,40,train",
    ]
    path.write_bytes(_text_rows(lines, newline).encode())
    return path


def _folder(folder: Path, newline: str) -> Path:
    root = folder / "classes"
    for label, names in (("cat", ("a.mp4", "b.mp4")), ("dog", ("c.mp4", "d.mp4", "e.mp4"))):
        (root / label).mkdir(parents=True)
        for name in names:
            (root / label / name).write_bytes(b"")
    return root


SAMPLES = {"csv": _csv, "jsonl": _jsonl, "parquet": _parquet, "automl": _automl, "kinetics": _kinetics}
SAMPLES["folder"] = _folder
TEXT_FORMATS = ("csv", "jsonl", "automl", "kinetics")
CASES = [(name, newline) for name in SAMPLES for newline in (("\n", "\r\n") if name in TEXT_FORMATS else ("\n",))]


def test_every_registered_format_has_a_round_trip_sample():
    assert set(SAMPLES) == set(FORMATS)


def _records(path: Path, fmt: str) -> list:
    """The cells of each row as stored, before any interpretation (a header row is not a row)."""
    if fmt == "parquet":
        return pd.read_parquet(path).to_dict("records")
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows if fmt == "automl" else rows[1:]


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines(keepends=True) if line.strip()]


@pytest.mark.parametrize(
    ("fmt", "newline"), CASES, ids=[f"{f}-{'crlf' if n == chr(13) + chr(10) else 'lf'}" for f, n in CASES]
)
def test_round_trip_applies_the_edits_and_keeps_untouched_rows(tmp_path, fmt, newline):
    options = ReadOptions(video_root=tmp_path / "videos") if fmt == "kinetics" else ReadOptions()
    path = SAMPLES[fmt](tmp_path, newline)
    original_bytes = path.read_bytes() if path.is_file() else None
    manifest = read_manifest(path, options=options)
    assert manifest.format == fmt and manifest.row_count == 5 and not manifest.findings
    out = tmp_path / "out"
    out.mkdir()

    fixed_path = write_fixed_manifest(manifest, EDITS, out)

    assert list(out.iterdir()) == [fixed_path]  # nothing left beside it (written through a temporary file)
    if original_bytes is not None:
        assert path.read_bytes() == original_bytes  # the input is never touched
    written_as = "csv" if fmt == "folder" else fmt  # a folder's declared output is a generic CSV
    fixed = read_manifest(fixed_path, written_as, options)
    assert fixed.format == written_as and fixed.row_count == 4 and not fixed.findings
    before = {c.row: c for c in manifest.clips}
    after = {c.row: c for c in fixed.clips}
    same_file = (lambda a, b: a == b) if fmt in ("kinetics", "folder") or "gs://" in before[0].video else _same_name
    for old, new in [(0, 0), (1, 1), (2, 2), (4, 3)]:
        assert same_file(after[new].video, before[old].video)
        assert after[new].split == ("test" if old == 1 else before[old].split)
    assert after[1].label == "wolf" and (after[1].start, after[1].end) == (before[1].start, before[1].end)
    if FORMATS[fmt].supports_trim:
        assert (after[2].start, after[2].end) == (0.5, 1.25)
    else:
        assert (after[2].start, after[2].end) == (before[2].start, before[2].end)
    assert after[2].label == before[2].label
    assert all(not c.video.endswith(("d.mp4", "ddd_000000_000010.mp4")) for c in fixed.clips)  # row 3 dropped

    # untouched rows: the very same cells
    cells_after = _records(fixed_path, written_as)
    if fmt == "folder":
        cells_before = [[c.video, "", "", c.label, c.split or ""] for c in manifest.clips]
    else:
        cells_before = _records(path, fmt)
    for old, new in UNTOUCHED.items():
        assert json.dumps(cells_after[new], default=str) == json.dumps(cells_before[old], default=str)  # NaN == NaN
    if fmt in TEXT_FORMATS:  # ... byte for byte, with the input's line endings
        header = 1 if fmt in ("csv", "kinetics") else 0
        lines_before, lines_after = _lines(path), _lines(fixed_path)
        for old, new in UNTOUCHED.items():
            assert lines_after[header + new] == lines_before[header + old]
        content = fixed_path.read_bytes()
        if newline == "\r\n":
            assert content.count(b"\r\n") == content.count(b"\n") > 0
        else:
            assert b"\r" not in content


def _same_name(a: str, b: str) -> bool:
    return Path(a).name == Path(b).name


def test_untouched_jsonl_lines_keep_their_bytes_and_a_broken_line_can_be_dropped(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"video": "a.mp4", "label": "x"}\r\n{not json\r\n{"video": "b.mp4", "label": "y"}\r\n')
    manifest = read_manifest(path)
    [bad] = manifest.findings
    fixed = write_fixed_manifest(manifest, [Edit(1, "drop", bad.message, bad.kind)], tmp_path / "out")
    assert fixed.read_bytes() == b'{"video": "a.mp4", "label": "x"}\r\n{"video": "b.mp4", "label": "y"}\r\n'


def test_a_failed_write_leaves_the_previous_fixed_manifest(tmp_path, monkeypatch):
    manifest = read_manifest(_csv(tmp_path, "\n"))
    out = tmp_path / "out"
    first = write_fixed_manifest(manifest, [], out)
    previous = first.read_bytes()

    def broken(path, *args, **kwargs):
        Path(path).write_text("half a fi")
        raise OSError("disk full")

    monkeypatch.setattr(table_format, "open", broken, raising=False)  # the writer's own open()
    with pytest.raises(OSError, match="disk full"):
        write_fixed_manifest(manifest, EDITS, out)
    assert list(out.iterdir()) == [first] and first.read_bytes() == previous


def test_unknown_format_names_the_choices(tmp_path):
    path = _csv(tmp_path, "\n")
    with pytest.raises(ManifestError, match="unknown manifest format 'yaml'; choose one of .*csv.*kinetics"):
        read_manifest(path, "yaml")
    with pytest.raises(ManifestError, match="no fixed-manifest writer for manifest format 'yaml'") as error:
        write_fixed_manifest(Manifest(path, "yaml", []), EDITS, tmp_path / "out")
    assert all(name in str(error.value) for name in FORMATS)
    assert not (tmp_path / "out").exists()


def test_a_trim_adds_the_time_columns_a_table_lacks(tmp_path):
    path = write_csv(tmp_path / "m.csv", [{"video": "a.mp4", "label": "x"}, {"video": "b.mp4", "label": "y"}])
    fixed = write_fixed_manifest(
        read_manifest(path), [Edit(1, "trim", (1.0, 2.5), "temporal_looseness")], tmp_path / "o"
    )
    assert fixed.read_text().splitlines() == ["video,label,start,end", "a.mp4,x,,", "b.mp4,y,1,2.5"]


def test_read_options_round_trip_as_plain_data(tmp_path):
    for options in (ReadOptions(), ReadOptions(tmp_path / "videos", "{split}/{youtube_id}.mkv")):
        data = options.to_dict()
        assert json.loads(json.dumps(data)) == data
        assert ReadOptions.from_dict(data) == options
    assert ReadOptions().to_dict() == {"video_root": None, "pattern": KINETICS_PATTERN}
    assert ReadOptions(tmp_path).to_dict()["video_root"] == str(tmp_path)
    assert ReadOptions.from_dict({}) == ReadOptions()  # a report written before the options were saved
    with pytest.raises(ManifestError, match="unknown read options colour"):
        ReadOptions.from_dict({"colour": "red"})


def test_relative_video_root_is_saved_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    saved = ReadOptions(Path("videos")).to_dict()
    monkeypatch.chdir(tmp_path.parent)
    assert ReadOptions.from_dict(saved).video_root == tmp_path / "videos"


def test_kinetics_read_options_survive_a_trip_through_the_report(tmp_path):
    path = _kinetics(tmp_path, "\n")
    options = ReadOptions(video_root=tmp_path / "clips", pattern="{split}/{label}/{youtube_id}.mkv")
    first = read_manifest(path, "kinetics", options)
    again = read_manifest(path, "kinetics", ReadOptions.from_dict(json.loads(json.dumps(options.to_dict()))))
    assert [c.video for c in again.clips] == [c.video for c in first.clips]
    assert first.clips[0].video == str(tmp_path / "clips/train/cat/aaa.mkv")
    assert [c.video for c in read_manifest(path, "kinetics").clips] != [c.video for c in first.clips]


def test_the_app_reads_the_manifest_with_the_options_saved_in_the_report(tmp_path, monkeypatch):
    import auditor.workspace as workspace

    path = _kinetics(tmp_path, "\n")
    options = ReadOptions(tmp_path / "clips", "{youtube_id}.mkv")
    report = {"manifest": str(path), "manifest_format": "kinetics", "read_options": options.to_dict()}
    seen, real = [], workspace.read_manifest
    monkeypatch.setattr(workspace, "read_manifest", lambda *args: seen.append(args[2]) or real(*args))
    name, content = workspace.fixed_manifest_bytes(
        json.loads(json.dumps(report)), [Edit(0, "relabel", "lynx", "likely_mislabel")], {"relabel:0": "accepted"}
    )
    assert seen == [options] and name == "fixed_manifest.csv"
    assert content.splitlines()[1] == b"lynx,aaa,0,10,train"


# --- bad input: one rule for every format, one clear message per unreadable file -----------------------------

TIMES = [  # (start, end) as written -> (start, end) read, or the error's words
    (("", ""), (None, None)),
    (("0", "inf"), (0.0, None)),
    (("1", "Infinity"), (1.0, None)),
    (("1", "nan"), "NaN"),
    (("nan", "2"), "NaN"),
    (("1", "-inf"), "not a finite number"),
    (("1", "1e400"), "not a finite number"),
    (("inf", "2"), "not a finite number"),
    (("1", "1e9"), "more than a week"),
]


def _time_manifests(folder: Path, start: str, end: str) -> dict[str, Path]:
    """The same row in CSV, JSONL (JSON numbers and constants) and Parquet (float64, null for an empty cell;
    a Parquet float cannot hold 1e400, so that row has no Parquet twin)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = {"csv": write_csv(folder / "t.csv", [{"video": "a.mp4", "start": start, "end": end, "label": "x"}])}
    as_json = {"": "null", "nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
    paths["jsonl"] = folder / "t.jsonl"
    paths["jsonl"].write_text(
        f'{{"video": "a.mp4", "start": {as_json.get(start, start)}, "end": {as_json.get(end, end)}, "label": "x"}}\n'
    )
    if "1e400" not in (start, end):
        seconds = [pa.array([float(t) if t else None], pa.float64(), from_pandas=False) for t in (start, end)]
        paths["parquet"] = folder / "t.parquet"
        pq.write_table(
            pa.table({"video": ["a.mp4"], "start": seconds[0], "end": seconds[1], "label": ["x"]}), paths["parquet"]
        )
    return paths


@pytest.mark.parametrize(("written", "expected"), TIMES, ids=[f"{s or 'empty'}-{e or 'empty'}" for (s, e), _ in TIMES])
def test_one_time_rule_for_every_format(tmp_path, written, expected):
    for fmt, path in _time_manifests(tmp_path, *written).items():
        manifest = read_manifest(path)
        if isinstance(expected, tuple):
            assert [(c.start, c.end) for c in manifest.clips] == [expected], fmt
        else:
            [finding] = manifest.findings
            assert not manifest.clips and finding.rows == (0,) and expected in finding.message, (fmt, finding.message)


def test_paths_and_bounds_are_normalised_before_the_clip_id(tmp_path):
    (tmp_path / "videos").mkdir()
    plain = tmp_path / "videos" / "a.mp4"
    rows = [
        {"video": str(plain), "start": "", "end": "2", "label": "x"},
        {"video": f"{tmp_path}/videos/../videos/./a.mp4", "start": "0", "end": "2.0", "label": "x"},
        {"video": "videos//a.mp4", "start": "-0", "end": "2.0001", "label": "x"},
        {"video": f"file://{tmp_path}/other/../videos/a.mp4", "start": "0.000", "end": "2", "label": "x"},
    ]
    (tmp_path / "link.mp4").symlink_to(plain)
    rows.append({"video": "link.mp4", "start": "0", "end": "2", "label": "x"})
    clips = read_manifest(write_csv(tmp_path / "m.csv", rows)).clips
    assert {c.video for c in clips} == {str(plain)}
    assert len({c.clip_id for c in clips}) == 1
    assert clips[0].clip_id == clip_id_for(str(plain), 0.0, 2.0) != clip_id_for(str(plain), 0.0, None)


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("semi.csv", "video;start;end;label\na.mp4;0;1;x\n", "separates its cells with semicolons"),
        ("tab.csv", "video\tlabel\na.mp4\tx\n", "separates its cells with tabs"),
        ("cols.csv", "path,start,end,label\na.mp4,0,1,x\n", "has no video column"),
        ("nolabel.csv", "video,class\na.mp4,x\n", "has no label column"),
        (
            "latin1.csv",
            "video,label\na.mp4,x\nb.mp4,caf\xe9\n".encode("latin-1"),
            "not UTF-8 text (byte 0xe9 on line 3",
        ),
        ("utf16.csv", "video,label\na.mp4,x\n".encode("utf-16"), "is UTF-16 text"),
        ("blob.csv", bytes(range(256)) * 4, "is a binary file"),
        ("broken.parquet", b"PAR1 this is not really parquet", "cannot be read as parquet"),
        ("m.jsonl", '{"video": "a.mp4", "label": "caf\xe9"}\n'.encode("latin-1"), "not UTF-8 text"),
        ("header.csv", "video,start,end,label\n", "has no rows"),
    ],
)
def test_an_unreadable_manifest_is_one_message_naming_the_file_and_the_fix(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(ManifestError) as error:
        read_manifest(path)
    assert words in str(error.value) and str(path) in str(error.value)


def test_a_truncated_parquet_file_is_one_message(tmp_path):
    path = _parquet(tmp_path, "\n")
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ManifestError, match="m.parquet cannot be read as parquet .*write it again"):
        read_manifest(path)


def test_a_csv_row_with_extra_cells_is_a_row_error_not_the_end(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("video,label\na.mp4,x\nb.mp4,big, fluffy\nc.mp4,y,,\n")
    manifest = read_manifest(path)
    assert [c.row for c in manifest.clips] == [0, 2]  # trailing empty cells are harmless
    [bad] = manifest.findings
    assert bad.rows == (1,) and "3 cells but the header names 2 columns" in bad.message


def test_formula_cells_are_neutralised_in_every_csv_written(tmp_path):
    """CSV injection: nothing the project writes can run as a spreadsheet formula; the readers undo the prefix."""
    evil = ['=HYPERLINK("http://x")', "+cmd|' /C calc'!A0", "@SUM(1)", "-2+3"]
    csv_path = write_csv(
        tmp_path / "m.csv",
        [{"video": "a.mp4", "start": "-1.5", "end": "2", "label": e, "note": e} for e in evil],
    )
    automl = tmp_path / "automl.csv"
    automl.write_text("".join(f'TRAINING,gs://b/a.mp4,"{e.replace(chr(34), chr(34) * 2)}",0,1\n' for e in evil))
    kinetics = write_csv(tmp_path / "k.csv", [{"label": e, "youtube_id": "abc", "split": "train"} for e in evil])
    folder = tmp_path / "classes"
    (folder / "=cmd").mkdir(parents=True)
    (folder / "=cmd" / "a.mp4").write_bytes(b"")
    relabel = [Edit(1, "relabel", "=EVIL()", "likely_mislabel")]
    for path, fmt in ((csv_path, "csv"), (automl, "automl"), (kinetics, "kinetics"), (folder, "folder")):
        manifest = read_manifest(path, fmt)
        fixed = write_fixed_manifest(manifest, relabel if fmt != "folder" else [], tmp_path / fmt)
        with fixed.open(newline="", encoding="utf-8") as handle:
            cells = [cell for row in csv.reader(handle) for cell in row]
        assert not [c for c in cells if c[:1] in ("=", "+", "@") or (c[:1] == "-" and c != "-1.5")], (fmt, cells)
        assert "-1.5" in cells or fmt != "csv"  # numbers are not formulas
        again = read_manifest(fixed, "csv" if fmt == "folder" else fmt)
        labels = [c.label for c in again.clips]
        assert labels == ([evil[0], "=EVIL()", *evil[2:]] if fmt != "folder" else ["=cmd"]), (fmt, labels)


def test_automl_is_sniffed_only_from_a_row_that_names_a_video(tmp_path):
    (tmp_path / "local.csv").write_text("clips/a.MP4,x\nclips/b.mp4,y,0,1\n")
    assert detect_format(tmp_path / "local.csv") == "automl"
    (tmp_path / "words.csv").write_text("name,label\na.mp4,x\n")
    with pytest.raises(ManifestError, match="words.csv has no video column"):
        detect_format(tmp_path / "words.csv")


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_a_folder_reports_every_file_it_skips(tmp_path):
    root = tmp_path / "root"
    for name in ("train/jump/a.mp4", "train/run/b.mp4", "test/jump/c.mp4"):
        _touch(root / name)
    _touch(root / "train/jump/extra/deeper.mp4")  # nested
    _touch(root / "train/loose.mp4")  # no class folder
    _touch(root / "notes/jump/d.mp4")  # not a split folder
    _touch(root / "train/run/readme.txt")
    _touch(root / "__MACOSX/train/jump/._a.mp4")
    _touch(root / "train/jump/.DS_Store")
    (root / "test/empty").mkdir()
    outside = _touch(tmp_path / "elsewhere/secret.mp4")
    (root / "train/run/link.mp4").symlink_to(outside)

    manifest = read_manifest(root)

    assert [(c.split, c.label, Path(c.video).name) for c in manifest.clips] == [
        ("test", "jump", "c.mp4"),
        ("train", "jump", "a.mp4"),
        ("train", "run", "b.mp4"),
    ]
    errors = {f.rows[0]: f.message for f in manifest.findings if f.rows}
    assert manifest.row_count == 3 + len(errors) == 7
    reasons = " | ".join(errors.values())
    for words in ("deeper.mp4 is nested in extra/", "loose.mp4 has no class folder", "d.mp4 is in notes/",
                  f"link.mp4 is a symlink to {outside.resolve()}, outside"):  # fmt: skip
        assert words in reasons
    notes = {f.severity: f for f in manifest.findings if not f.rows and not f.labels}
    assert "readme.txt" in notes["warning"].message and "not videos" in notes["warning"].message
    assert "__MACOSX" in notes["info"].message and ".DS_Store" in notes["info"].message
    [empty] = [f for f in manifest.findings if f.labels]
    assert empty.labels == ("empty",) and "test/empty/ has no usable video" in empty.message


def test_a_folder_without_videos_is_one_message(tmp_path):
    _touch(tmp_path / "root/jump/readme.txt")
    with pytest.raises(ManifestError, match="holds no video files"):
        read_manifest(tmp_path / "root")
