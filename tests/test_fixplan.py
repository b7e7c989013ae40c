"""The fix set applied whole: groups that do not chain or span labels, overlaps from the manifest's times,
a re-split where the fixes would empty a class's evaluation split, and each invariant of the plan."""

from __future__ import annotations

import numpy as np

from auditor.checks import build_checks, run_checks
from auditor.checks.mislabels import Mislabels
from auditor.context import AuditContext
from auditor.fixplan import REPAIR_KIND, plan_fixes
from auditor.invariants import (
    State,
    above_minimum,
    each_class_evaluable,
    each_class_trainable,
    sources_kept_whole,
    violations,
)
from auditor.reconcile import reconcile
from taxonomy_core import schema as S
from taxonomy_core.edits import Edit
from tests.test_checks import make_context, rows_of


def _with(ctx, vectors=None, **changes) -> AuditContext:
    clips = ctx.clips.copy()
    for column, values in changes.items():
        for position, value in values.items():
            clips.at[position, column] = value
    return AuditContext(clips, ctx.vectors.copy() if vectors is None else vectors, config=ctx.config)


def test_a_chain_of_similar_clips_is_not_one_group_and_no_group_spans_labels():
    ctx = make_context(noise=0.6)
    v = ctx.vectors.copy()
    direction = np.random.default_rng(1).normal(size=v.shape[1])
    direction /= np.linalg.norm(direction)
    base = v[0] / np.linalg.norm(v[0])
    for k, pos in enumerate([0, 1, 2, 3, 4]):  # a chain: each step near-identical to the next, not to the far end
        v[pos] = base + 0.2 * k * direction
    v[25] = v[2] + 1e-3  # another class's clip near-identical to the middle of the chain
    ctx = AuditContext(ctx.clips, v, config=ctx.config)
    [result] = run_checks(ctx, build_checks(["duplicates"]))
    groups = [f for f in result.findings if f.kind == "near_duplicate"]
    unit, at = ctx.vectors, {int(r): i for i, r in enumerate(ctx.rows)}
    for f in groups:
        [kept] = [at[e.row] for e in f.evidence if e.role == "kept_copy"]
        dropped = [at[r] for r in f.rows]
        assert len({ctx.labels[p] for p in [kept, *dropped]}) == 1
        assert all(unit[kept] @ unit[d] >= 0.95 for d in dropped)  # each dropped clip is itself a copy of the kept
        assert f.suggestion["weakest_link"] == min(round(float(unit[kept] @ unit[d]), 4) for d in dropped)
    assert not any(set(rows_of(ctx, 0, 4)) <= set(f.rows) | {e.row for e in f.evidence} for f in groups)
    [conflict] = [f for f in result.findings if f.kind == "label_conflict"]  # one finding for the group
    assert set(rows_of(ctx, 2, 25)) <= set(conflict.suggestion["rows"]) and not conflict.rows
    assert not [e for e in result.edits if e.action == "drop"]


def test_overlapping_windows_of_one_video_are_one_finding_from_the_times():
    ctx = make_context(noise=0.6)
    spans = {0: (0.0, 3.0), 1: (2.0, 5.0), 2: (4.0, 7.0), 3: (10.0, 12.0)}
    ctx = _with(
        ctx,
        **{S.VIDEO: {p: "/data/long.mp4" for p in spans}, S.START: {p: s for p, (s, _) in spans.items()}},
        **{S.END: {p: e for p, (_, e) in spans.items()}},
    )
    [result] = run_checks(ctx, build_checks(["duplicates"]))
    [overlap] = [f for f in result.findings if f.kind == "overlapping_segments"]
    assert overlap.videos == ("/data/long.mp4",) and set(overlap.rows) == set(rows_of(ctx, 1, 2))
    assert [o["seconds"] for o in overlap.suggestion["overlaps"]] == [1.0, 1.0]
    assert not [f for f in result.findings if f.kind == "near_duplicate"]


def test_moves_that_empty_a_class_in_test_become_a_group_aware_resplit():
    ctx = make_context(per_class=20, noise=0.6)
    # hurdles: 20 clips from 5 source videos (4 segments each); its only test source is also in train
    videos = {p: f"/data/hurdles_{p // 4}.mp4" for p in range(20)}
    splits = {p: "train" for p in range(20)} | {16: "test"}
    splits |= {p: ("test" if p % 5 == 0 else "train") for p in range(20, 60)}
    ctx = _with(ctx, **{S.VIDEO: videos, S.SPLIT: splits})
    [result] = run_checks(ctx, build_checks(["duplicates"]))
    assert {e.action for e in result.edits} == {"split"}  # the leak is fixed by a move, not a drop
    plan = plan_fixes(ctx, result.edits, min_count=10)
    table = {t["label"]: t for t in plan.table}
    assert table["hurdles"]["before"]["test"] == 1 and table["hurdles"]["after"]["test"] >= 4  # a whole video
    assert plan.repaired == ["hurdles"] and table["hurdles"]["status"] == "re-split"
    moved = {e.row for e in plan.edits if e.kind == REPAIR_KIND}
    split_after = {int(r): s for r, s in zip(ctx.rows, ctx.clips[S.SPLIT])}
    split_after |= {e.row: e.value for e in plan.edits if e.action == "split"}
    for video in set(videos.values()):  # every source video stays whole
        rows = [int(ctx.rows[p]) for p, v in videos.items() if v == video]
        assert len({split_after[r] for r in rows}) == 1
    assert moved and not plan.notes
    [finding] = plan.findings  # the re-split is reviewed like any fix: a finding accuses exactly the moved rows
    assert finding.kind == REPAIR_KIND and set(finding.rows) == moved and finding.suggestion["split"] == "test"


def test_a_class_from_one_source_is_said_once_not_on_every_finding():
    ctx = make_context(per_class=20, noise=0.6)
    ctx = _with(ctx, **{S.VIDEO: {p: "/data/one_film.mp4" for p in range(20)}, S.SPLIT: {18: "test", 19: "test"}})
    [result] = run_checks(ctx, build_checks(["duplicates"]))
    plan = plan_fixes(ctx, result.edits)
    [note] = plan.notes
    assert "'hurdles'" in note and "one source" in note
    assert {t["label"]: t["status"] for t in plan.table}["hurdles"] == note
    assert not any("applying every proposed fix" in f.action for f in result.findings)


def test_invariants_each_catch_their_violation():
    clips = (("a", "train", 0), ("a", "test", 1), ("b", "train", 2), ("b", "test", 3))
    before = State(clips + (("a", "train", 4),) * 9)
    assert violations(before, before, minimum=2) == []
    no_train = State((("a", "test", 1), ("b", "train", 2), ("b", "test", 3)))
    assert each_class_trainable(before, no_train) == ["'a' has no training clip left"]
    no_test = State((("a", "train", 0), ("a", "train", 4), ("b", "train", 2), ("b", "test", 3)))
    [lost] = each_class_evaluable(before, no_test)
    assert lost == "'a' has two or more independent sources but no evaluation clip left"
    one_source = State((("a", "train", 0), ("b", "train", 2), ("b", "test", 3)))
    assert each_class_evaluable(before, one_source) == []
    cut = State((("a", "train", 0), ("a", "test", 0)))
    assert sources_kept_whole(before, cut) == ["source group 0 is in splits ['test', 'train']"]
    assert above_minimum(before, no_test, 10) == ["'a' falls to 2 clips, under the minimum of 10"]
    assert above_minimum(before, before, 10) == []


def test_relabels_between_confusable_classes_fold_into_one_finding():
    rng = np.random.default_rng(3)
    ctx = make_context(classes=("rabbit", "bunny", "swim"))
    v = ctx.vectors.copy()
    v[20:40] = v[0:20] + 0.05 * rng.normal(size=(20, v.shape[1]))  # synonyms: the same footage, two labels
    ctx = AuditContext(ctx.clips, v, config=ctx.config)
    results = run_checks(ctx, build_checks(["mislabels", "structure"]))
    findings, edits = reconcile(results)
    [pair] = [f for f in findings if f.kind == "confusable_classes"]
    assert set(pair.labels) == {"rabbit", "bunny"}
    assert not [f for f in findings if f.kind == "likely_mislabel" and set(f.labels) == {"rabbit", "bunny"}]
    assert not [e for e in edits if e.action == "relabel"]


def test_the_plan_resolves_one_edit_per_row_and_keeps_drops():
    ctx = make_context()
    row = int(ctx.rows[0])
    plan = plan_fixes(ctx, [Edit(row, "relabel", "high_jump", "likely_mislabel"), Edit(row, "drop", "x", "k")])
    assert [(e.row, e.action) for e in plan.edits] == [(row, "drop")]


def test_a_broad_honest_class_keeps_its_atypical_members_while_a_real_mislabel_is_found():
    rng = np.random.default_rng(5)
    dim, n = 32, 40
    centres = rng.normal(size=(3, dim))
    centres[0] = 0.55 * centres[0] + 0.45 * centres[1]  # near 'cartoon' ...
    spreads = (1.2, 0.35, 0.35)  # ... and broad: many kinds of footage; the others are tight
    labels = np.repeat(["indoor_lab", "cartoon", "street"], n)
    vectors = np.concatenate([centres[c] + s * rng.normal(size=(n, dim)) for c, s in enumerate(spreads)])
    vectors[5] = centres[1] + 0.35 * rng.normal(size=dim)  # planted: a cartoon clip labelled indoor_lab
    ctx = make_context(per_class=n, classes=("indoor_lab", "cartoon", "street"), dim=dim)
    ctx = AuditContext(ctx.clips.assign(**{S.LABEL: labels}), vectors, config=ctx.config)
    [result] = run_checks(ctx, build_checks(["mislabels"]))
    accused = {f.rows[0] for f in result.findings if f.kind == "likely_mislabel"}
    assert accused == set(rows_of(ctx, 5))
    naive = Mislabels(Mislabels.Params(margin_spread=0.0, probe_agrees=False)).run(ctx)  # votes and a fixed margin
    assert len({f.rows[0] for f in naive.findings if f.kind == "likely_mislabel"} - accused) >= 3
    calibration = result.sections["mislabel_calibration"]["classes"]["indoor_lab"]
    assert calibration["margin"] > calibration["spread"] * 0.99 and calibration["and_probe"] == 1
