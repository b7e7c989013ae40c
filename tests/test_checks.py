"""Checks on synthetic clip vectors with planted answers, and the contract every registered check keeps.

Manifest rows differ from clip positions everywhere here (shuffled, with gaps where invalid rows were
dropped), so a check that reports a position as a row fails.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from auditor.checks import REGISTRY, Check, CheckResult, build_checks, register, run_checks
from auditor.config import AuditConfig, load_config
from auditor.context import AuditContext
from auditor.grades import grade_classes
from auditor.knn import knn
from taxonomy_core import schema as S
from taxonomy_core.findings import Finding

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
    "missing_hard_negatives",
    "split_mismatch",
    "weak_slice",
    "unrepresented_reference",
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
            S.ROW: shuffled_rows(n, seed),
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


def shuffled_rows(n: int, seed: int = 0) -> np.ndarray:
    """Manifest rows for n clips: shuffled, with every third row missing (invalid rows in the middle)."""
    kept = np.array([r for r in range(3 * n) if r % 3 != 1][:n])
    return np.random.default_rng(seed + 100).permutation(kept)


def rows_of(ctx: AuditContext, *positions: int) -> tuple[int, ...]:
    return tuple(int(ctx.rows[p]) for p in positions)


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


def test_the_context_keeps_unit_rows_without_a_copy_and_scales_the_rest():
    ctx = make_context()
    unit = ctx.vectors
    assert np.allclose(np.linalg.norm(unit, axis=1), 1, atol=1e-5)  # made from raw cluster draws
    again = AuditContext(ctx.clips, unit, config=AuditConfig(seed=0))
    assert again.vectors is unit  # a store's clip matrix is kept as it is (no second [N, dim] array)
    scaled = unit.copy()
    scaled[3] *= 2.0
    scaled[5] = 0.0  # a zero row stays zero
    fixed = AuditContext(ctx.clips, scaled, config=AuditConfig(seed=0)).vectors
    assert fixed is not scaled and np.allclose(fixed[3], unit[3]) and not fixed[5].any()


def test_contract_every_registered_check_runs_on_a_small_context():
    ctx = make_context()
    results = run_checks(ctx, build_checks())
    assert [r.name for r in results] == list(REGISTRY)
    for result in results:
        assert result.error is None, result.error
        for f in result.findings:
            assert f.kind in KINDS and f.severity in ("error", "warning", "info") and f.message
            assert set(f.rows) <= set(ctx.rows.tolist())
        assert set(result.classes) <= set(ctx.classes)
        assert set(result.clips) <= set(ctx.clip_ids)
        assert {e.row for e in result.edits} <= set(ctx.rows.tolist())


def test_every_check_declares_params_with_defaults_and_a_config_table_maps_onto_them(tmp_path):
    for check in build_checks():
        assert dataclasses.is_dataclass(check.params) and check.params == check.Params()
    path = tmp_path / "audit.toml"
    path.write_text("[checks.duplicates]\nsimilarity = 0.9\n[checks.temporal]\ncore_ratio = 0.5\n")
    by_name = {c.name: c for c in build_checks(config=load_config(path))}
    assert by_name["duplicates"].params.similarity == 0.9 and by_name["temporal"].params.core_ratio == 0.5
    assert by_name["spatial"].params.gain == 0.08


def test_unmet_requirements_skip_a_check_with_the_reason():
    ctx = make_context(classes=("only",))
    results = {r.name: r for r in run_checks(ctx, build_checks(["mislabels", "temporal", "shortcut"]))}
    assert results["mislabels"].skipped == "needs at least two classes"
    assert results["temporal"].skipped == "needs timeline and crop vectors in the store"
    assert results["shortcut"].skipped == "needs at least two classes"


def test_a_failing_check_is_isolated_and_reported():
    class Broken(Check):
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


def test_clean_clusters_grade_well_and_findings_cap_the_grade_by_the_stated_rule():
    [result] = run_checks(make_context(), build_checks(["tightness"]))
    classes = [{"label": label, **m} for label, m in result.classes.items()]
    grade_classes(classes, [])
    for record in classes:
        assert record["grade"] == "A" and record["probe_f1"] > 0.95 and record["knn_agreement"] > 0.9
        assert record["tier"] == "tail" and record["count"] == 20
    leak = Finding("split_leak", "error", "copies", rows=(3,), labels=("hurdles",), action="drop test row 3")
    diverse = Finding("low_diversity", "warning", "one video", labels=("high_jump",))
    by_label = {r["label"]: dict(r) for r in classes}
    by_label["pole_vault"]["text_precision"] = 0.1
    grade_classes(list(by_label.values()), [leak, diverse])
    assert by_label["hurdles"]["grade"] == "C" and any("split leak" in r for r in by_label["hurdles"]["reasons"])
    assert by_label["high_jump"]["grade"] == "B" and by_label["pole_vault"]["grade"] == "C"
    assert any("text search" in r for r in by_label["pole_vault"]["reasons"])


def test_planted_mislabel_is_found_with_the_right_label():
    ctx = make_context()
    labels = ctx.clips[S.LABEL].to_numpy(dtype=object)
    labels[5] = "pole_vault"  # truly a hurdles clip
    ctx = AuditContext(ctx.clips.assign(**{S.LABEL: labels}), ctx.vectors, config=ctx.config)
    [result] = run_checks(ctx, build_checks(["mislabels"]))
    [finding] = [f for f in result.findings if f.kind == "likely_mislabel"]
    assert finding.rows == rows_of(ctx, 5) and finding.suggestion == {"label": "hurdles"}
    assert [(e.row, e.action, e.value) for e in result.edits] == [(rows_of(ctx, 5)[0], "relabel", "hurdles")]


def test_outlier_far_from_everything():
    ctx = make_context()
    vectors = ctx.vectors.copy()
    vectors[7] = np.random.default_rng(9).normal(size=vectors.shape[1])
    [result] = run_checks(AuditContext(ctx.clips, vectors, config=ctx.config), build_checks(["mislabels"]))
    assert [(f.kind, f.rows) for f in result.findings] == [("outlier", rows_of(ctx, 7))]
    assert not result.edits


def test_duplicates_within_and_across_splits_and_videos_in_two_splits():
    ctx = make_context(noise=0.6)
    vectors, clips = ctx.vectors.copy(), ctx.clips.copy()
    vectors[1] = vectors[0] + 1e-3  # same split copy
    vectors[3] = vectors[2] + 1e-3
    clips.loc[3, S.SPLIT] = "test"  # ... and a copy in test
    clips.loc[[10, 11, 12], S.VIDEO] = clips.loc[11, S.VIDEO]  # one source video, cut into train and val
    clips.loc[11, S.SPLIT] = "val"
    clips.loc[[10, 11, 12], S.START] = [0.0, 2.0, 4.0]  # three moments of it, not overlapping
    clips.loc[[10, 11, 12], S.END] = [2.0, 4.0, 6.0]
    ctx = AuditContext(clips, vectors, config=ctx.config)
    [result] = run_checks(ctx, build_checks(["duplicates"]))
    (first, second), (train_row, test_row), val_row = sorted(rows_of(ctx, 0, 1)), rows_of(ctx, 2, 3), rows_of(ctx, 11)

    [repeat] = [f for f in result.findings if f.kind == "near_duplicate"]
    [kept] = [e.row for e in repeat.evidence if e.role == "kept_copy"]
    assert {kept, *repeat.rows} == {first, second} and len(repeat.rows) == 1
    second = repeat.rows[0]
    leaks = {f.rows: f for f in result.findings if f.kind == "split_leak"}
    assert set(leaks) == {(test_row,), val_row}
    copy = leaks[(test_row,)]
    assert [(e.row, e.role) for e in copy.evidence] == [(train_row, "train_original")]
    assert copy.severity == "error" and copy.suggestion["reason"] == "near_identical_embedding"  # no fingerprints here
    assert copy.action.startswith(f"drop test row {test_row}: ") and f"train row {train_row}" in copy.action
    moved = leaks[val_row]
    assert moved.suggestion["split"] == "train" and {e.row for e in moved.evidence} == set(rows_of(ctx, 10, 12))
    assert moved.suggestion["reason"] == "same_source_video"
    assert {(e.row, e.action) for e in result.edits} == {(test_row, "drop"), (val_row[0], "split")}
    innocent = set(ctx.rows.tolist()) - {second, test_row, *val_row}
    assert not innocent & {r for f in result.findings for r in f.rows}


def test_segments_of_one_video_across_splits_fold_into_the_video_finding():
    ctx = make_context(noise=0.6)
    vectors, clips = ctx.vectors.copy(), ctx.clips.copy()
    vectors[[5, 6, 7]] = vectors[4] + 1e-3 * np.arange(1, 4)[:, None]  # four near-identical segments of one video
    clips.loc[[4, 5, 6, 7], S.VIDEO] = "/data/static_shot.mp4"
    clips.loc[7, S.SPLIT] = "test"
    ctx = AuditContext(clips, vectors, config=ctx.config)
    [result] = run_checks(ctx, build_checks(["duplicates"]))
    [leak] = [f for f in result.findings if f.kind == "split_leak"]
    assert leak.rows == rows_of(ctx, 7) and leak.videos == ("/data/static_shot.mp4",)
    assert not [f for f in result.findings if f.kind == "near_duplicate"]  # moments of one video are not copies


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
    assert sorted(r for g in split.suggestion["groups"] for r in g) == sorted(rows_of(ctx, *range(40, 60)))
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
    [finding] = result.findings
    assert finding.rows == ()  # the fix adds footage: no row is accused; the one video's rows are evidence
    assert sorted(e.row for e in finding.evidence) == sorted(rows_of(make_context(), *range(20)))
    assert result.classes["hurdles"]["source_videos"] == 1


def test_search_consistency_without_a_store_or_text():
    [result] = run_checks(make_context(), build_checks(["search"]))
    assert all(m["example_precision"] > 0.9 and m["search_consistency"] is None for m in result.classes.values())
    assert not result.findings


def test_config_file_overrides_and_rejects_unknown_keys(tmp_path):
    path = tmp_path / "audit.toml"
    path.write_text(
        '[audit]\nknn_k = 7\n[checks.duplicates]\nsimilarity = 0.9\n\n[prompts]\nhurdles = ["athlete jumping"]\n'
    )
    config = load_config(path)
    assert config.knn_k == 7 and config.checks == {"duplicates": {"similarity": 0.9}}
    assert config.prompts == {"hurdles": ["athlete jumping"]}
    for text, message in [
        ("[checks.duplicates]\nsimilarty = 0.9\n", "unknown param.*similarity"),
        ("[checks.nope]\nx = 1\n", "unknown check"),
        ("[thresholds]\nduplicate_similarity = 0.9\n", r"unknown table.*\[checks.duplicates\]"),
        ("[audit]\nknn = 3\n", "unknown .audit. setting"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_config(path)


def test_heavily_re_encoded_copies_are_caught_by_their_frames_not_their_embeddings():
    from indexer.fingerprint import encode

    rng = np.random.default_rng(5)
    ctx = make_context()
    n = len(ctx.clips)
    fingerprints = [encode(rng.integers(1, 2**63, 13, dtype=np.uint64)) for _ in range(n)]
    fingerprints[45] = fingerprints[5]  # row 45 is a re-encoded copy of row 5: same frames ...
    vectors = ctx.vectors.copy()  # ... but its embedding moved to another class entirely
    vectors[0] = vectors[1] + 1e-3  # and rows 0/1 have near-identical embeddings but different frames
    clips = ctx.clips.assign(**{S.FINGERPRINT: fingerprints})
    clips.loc[[1, 45], S.SPLIT] = "test"
    ctx = AuditContext(clips, vectors, config=ctx.config)
    assert float(ctx.vectors[5] @ ctx.vectors[45]) < 0.5
    [result] = run_checks(ctx, build_checks(["duplicates"]))
    [leak] = [f for f in result.findings if f.kind == "split_leak"]
    assert leak.rows == rows_of(ctx, 45) and [e.row for e in leak.evidence] == list(rows_of(ctx, 5))
    assert "frames match 100%" in leak.message


def test_probe_above_its_sample_predicts_every_other_clip_held_out(monkeypatch):
    """Above PROBE_MAX_SAMPLES the probe cross-validates on a sample and its fold models (each held out from the
    rest) predict every other clip: a mislabel outside the sample is judged by the probe too, and the spatial
    check reads a real probability for it, not a default."""
    from auditor import probe as probe_module
    from auditor.checks.spatial import own_probability

    monkeypatch.setattr(probe_module, "PROBE_MAX_SAMPLES", 60)
    ctx = make_context(per_class=60)
    labels = ctx.clips[S.LABEL].to_numpy(dtype=object)
    probe = ctx.probe()
    outside = [i for i in range(len(labels)) if i not in set(probe.positions.tolist()) and labels[i] == "hurdles"]
    flipped = outside[0]
    labels[flipped] = "pole_vault"  # truly a hurdles clip, outside the probe's sample
    ctx = AuditContext(ctx.clips.assign(**{S.LABEL: labels}), ctx.vectors, config=ctx.config)
    probe = ctx.probe()
    assert flipped not in set(probe.positions.tolist())
    assert len(probe.positions) + len(probe.rest_positions) == len(labels)
    where, probabilities = probe.every_clip(len(labels))
    assert (where >= 0).all()
    predicted = np.array(probe.labels)[probabilities[where].argmax(axis=1)]
    assert (predicted == ctx.clips[S.LABEL].to_numpy()).mean() > 0.95  # the held-out rest is predicted well
    assert predicted[flipped] == "hurdles" and own_probability(ctx, flipped) < 0.2
    [result] = run_checks(ctx, build_checks(["mislabels"]))
    [finding] = [f for f in result.findings if f.kind == "likely_mislabel"]
    assert finding.rows == rows_of(ctx, flipped) and finding.suggestion == {"label": "hurdles"}
