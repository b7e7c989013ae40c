"""Checks on synthetic clip vectors with planted answers, and the contract every registered check keeps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from auditor.checks import REGISTRY, CheckResult, build_checks, register, run_checks
from auditor.config import AuditConfig, load_config
from auditor.context import AuditContext
from auditor.knn import knn
from taxonomy_core import schema as S

KINDS = {
    "invalid_annotation",
    "unreadable_video",
    "too_few_examples",
    "class_imbalance",
    "likely_mislabel",
    "outlier",
    "near_duplicate",
    "split_leak",
    "temporal_looseness",
    "spatial_looseness",
    "low_diversity",
    "split_candidate",
    "confusable_classes",
    "search_inconsistency",
    "shortcut_risk",
}


def make_context(
    per_class=20, classes=("hurdles", "high_jump", "pole_vault"), dim=32, noise=0.35, seed=0, **columns
) -> AuditContext:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(classes), dim))
    labels = np.repeat(classes, per_class)
    vectors = centres[np.repeat(np.arange(len(classes)), per_class)] + noise * rng.normal(size=(len(labels), dim))
    n = len(labels)
    clips = pd.DataFrame(
        {
            S.CLIP_ID: [f"c{i}" for i in range(n)],
            S.ROW: np.arange(n),
            S.VIDEO: [f"/data/v{i}.mp4" for i in range(n)],
            S.START: 0.0,
            S.END: 2.0,
            S.LABEL: labels,
            S.SPLIT: "train",
            S.DURATION: 10.0,
            S.FPS: 25.0,
            S.WIDTH: 640,
            S.HEIGHT: 360,
            S.CODEC: "h264",
            S.BRIGHTNESS: rng.uniform(80, 120, n),
            S.EXTRA: [{}] * n,
        }
    )
    for name, values in columns.items():
        clips[name] = values
    return AuditContext(clips, vectors, config=AuditConfig(seed=0))


def kinds(result: CheckResult) -> list[str]:
    return [f.kind for f in result.findings]


def test_blocked_knn_matches_brute_force():
    x = np.random.default_rng(1).normal(size=(300, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    idx, sim = knn(x, 5, block=64)
    full = x @ x.T
    np.fill_diagonal(full, -np.inf)
    assert (idx == np.argsort(-full, axis=1)[:, :5]).all()
    assert np.allclose(sim, np.sort(full, axis=1)[:, ::-1][:, :5], atol=1e-6)


def test_contract_every_registered_check_runs_on_a_small_context():
    ctx = make_context()
    results = run_checks(ctx, build_checks())
    assert [r.name for r in results] == list(REGISTRY)
    for result in results:
        assert result.error is None, result.error
        for f in result.findings:
            assert f.kind in KINDS and f.severity in ("error", "warning", "info") and f.message
            assert all(0 <= r < len(ctx.clips) for r in f.rows)
        assert set(result.classes) <= set(ctx.classes)
        assert all(0 <= i < len(ctx.clips) for i in result.clips)


def test_a_failing_check_is_isolated_and_reported():
    class Broken:
        name = "broken"

        def run(self, ctx):
            raise RuntimeError("boom")

    results = run_checks(make_context(), [Broken()] + build_checks(["tightness"]))
    assert "boom" in results[0].error and results[1].error is None and results[1].classes


def test_registry_refuses_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        register("tightness", "x:Y")
    with pytest.raises(ValueError, match="available: tightness"):
        build_checks(["nope"])


def test_clean_clusters_grade_well():
    [result] = run_checks(make_context(), build_checks(["tightness"]))
    for metrics in result.classes.values():
        assert metrics["grade"] == "A" and metrics["probe_f1"] > 0.95 and metrics["knn_agreement"] > 0.9
        assert metrics["tier"] == "tail" and metrics["count"] == 20


def test_planted_mislabel_is_found_with_the_right_label():
    ctx = make_context()
    labels = ctx.clips[S.LABEL].to_numpy(dtype=object)
    labels[5] = "pole_vault"  # truly a hurdles clip
    ctx = AuditContext(ctx.clips.assign(**{S.LABEL: labels}), ctx.vectors, config=ctx.config)
    [result] = run_checks(ctx, build_checks(["mislabels"]))
    [finding] = [f for f in result.findings if f.kind == "likely_mislabel"]
    assert finding.rows == (5,) and finding.suggestion == {"label": "hurdles"}


def test_outlier_far_from_everything():
    ctx = make_context()
    vectors = ctx.vectors.copy()
    vectors[7] = np.random.default_rng(9).normal(size=vectors.shape[1])
    [result] = run_checks(AuditContext(ctx.clips, vectors, config=ctx.config), build_checks(["mislabels"]))
    assert [(f.kind, f.rows) for f in result.findings] == [("outlier", (7,))]


def test_duplicates_within_and_across_splits_and_videos_in_two_splits():
    ctx = make_context()
    vectors, clips = ctx.vectors.copy(), ctx.clips.copy()
    vectors[1] = vectors[0] + 1e-3  # same split copy
    vectors[3] = vectors[2] + 1e-3
    clips.loc[3, S.SPLIT] = "test"  # ... and a copy in test
    clips.loc[10, S.VIDEO] = clips.loc[11, S.VIDEO]
    clips.loc[11, S.SPLIT] = "val"
    [result] = run_checks(AuditContext(clips, vectors, config=ctx.config), build_checks(["duplicates"]))
    by_kind = {(f.kind, f.rows) for f in result.findings}
    assert (
        ("near_duplicate", (0, 1)) in by_kind
        and ("split_leak", (2, 3)) in by_kind
        and ("split_leak", (10, 11)) in by_kind
    )
    leak = next(f for f in result.findings if f.rows == (2, 3))
    assert leak.severity == "error" and leak.suggestion == {"drop": 3, "keep": 2}


def test_confusable_classes_and_split_candidates():
    rng = np.random.default_rng(3)
    ctx = make_context(classes=("sprint", "run", "swim"))
    vectors = ctx.vectors.copy()
    vectors[20:40] = vectors[0:20] + 0.05 * rng.normal(size=(20, vectors.shape[1]))  # run looks like sprint
    vectors[50:60] += 6 * rng.normal(size=vectors.shape[1])  # half of swim elsewhere
    [result] = run_checks(AuditContext(ctx.clips, vectors, config=ctx.config), build_checks(["structure"]))
    confusable = [f for f in result.findings if f.kind == "confusable_classes"]
    assert [f.suggestion for f in confusable] == [{"merge": ["run", "sprint"]}]
    [split] = [f for f in result.findings if f.kind == "split_candidate"]
    assert split.labels == ("swim",) and sorted(map(len, split.suggestion["groups"])) == [10, 10]
    assert all("umap" in c and "cluster" in c for c in result.clips.values())


def test_shortcut_risk_from_metadata():
    ctx = make_context(noise=3.0, **{S.FPS: np.repeat([25.0, 30.0, 60.0], 20)})
    [result] = run_checks(ctx, build_checks(["shortcut"]))
    [finding] = result.findings
    assert finding.kind == "shortcut_risk" and "fps" in finding.suggestion["features"]
    [clean] = run_checks(make_context(noise=3.0), build_checks(["shortcut"]))
    assert not clean.findings


def test_low_diversity_one_source_video():
    videos = ["/data/a.mp4"] * 20 + [f"/data/v{i}.mp4" for i in range(40)]
    [result] = run_checks(make_context(**{S.VIDEO: videos}), build_checks(["diversity"]))
    assert [(f.kind, f.labels) for f in result.findings] == [("low_diversity", ("hurdles",))]
    assert result.classes["hurdles"]["source_videos"] == 1


def test_search_consistency_without_a_store_or_text():
    [result] = run_checks(make_context(), build_checks(["search"]))
    assert all(m["example_precision"] > 0.9 and m["search_consistency"] is None for m in result.classes.values())
    assert not result.findings


def test_config_file_overrides_and_rejects_unknown_keys(tmp_path):
    path = tmp_path / "audit.toml"
    path.write_text(
        '[thresholds]\nduplicate_similarity = 0.9\n\n[prompts]\nhurdles = ["athlete jumping over hurdles"]\n'
    )
    config = load_config(path)
    assert config.duplicate_similarity == 0.9 and config.prompts == {"hurdles": ["athlete jumping over hurdles"]}
    path.write_text("[thresholds]\nduplicate_similarty = 0.9\n")
    with pytest.raises(ValueError, match="unknown setting"):
        load_config(path)
