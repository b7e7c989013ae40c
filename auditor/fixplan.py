"""The fix plan: the checks' proposed edits resolved into one set that holds the dataset-wide invariants.

Checks propose edits one problem at a time; applied together, drops and moves can empty a class's evaluation
split. The plan resolves the edits (one per row and action, a drop wins), then, for each class left without
evaluation clips, proposes a group-aware re-split instead: whole source groups (a video, a source column's
value, a group of confirmed copies) move to the evaluation split the class lost, stratified by label, towards
the dataset's own evaluation share. What cannot be repaired (a class from one source) is said once, in the
class x split table, not on every finding.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from auditor.invariants import State, is_eval, violations
from auditor.sources import source_groups
from taxonomy_core import schema as S
from taxonomy_core.edits import Edit, resolve
from taxonomy_core.findings import Finding

REPAIR_KIND = "split_repair"


@dataclass
class FixPlan:
    edits: list[Edit]
    table: list[dict[str, Any]]  # per class: label, before {split: n}, after {split: n}, status
    notes: list[str] = field(default_factory=list)  # what the plan could not repair, said once
    repaired: list[str] = field(default_factory=list)  # classes given evaluation clips by a re-split
    findings: list[Finding] = field(default_factory=list)  # one `split_repair` per re-split class: its moves

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "notes": self.notes, "repaired": self.repaired}


def plan_fixes(ctx, edits: list[Edit], min_count: int = 10) -> FixPlan:
    """Resolve `edits` and repair the splits they would empty; rows indexing skipped are dropped edits already."""
    edits = resolve(edits)
    pairs = [(i, j, 0.0) for i, j in ctx.copy_reasons]
    groups = source_groups(ctx.clips, pairs)
    split = ctx.clips[S.SPLIT].fillna("").to_numpy(dtype=object)
    before = State(tuple(zip(ctx.labels, split, groups.tolist())))
    state = _apply(ctx, edits, groups)
    repaired, notes, findings = [], [], []
    eval_share = _eval_shares(split)
    for label in before.labels():
        lost = [s for s in eval_share if before.counts()[(label, s)] and not _count(state, label, s)]
        for target in lost:
            moved = _repair(ctx, state, groups, label, target, eval_share[target])
            if moved:
                edits = _with_moves(edits, moved, ctx)
                state = _apply(ctx, edits, groups)
                repaired.append(label)
                findings.append(_repair_finding(ctx, label, target, moved, edits))
            else:
                notes.append(_cannot(ctx, state, groups, label, target))
    after = State(tuple((lab, spl, g) for lab, spl, g, gone in state if not gone))
    notes += [v for v in violations(before, after, min_count) if not any(v.startswith(f"{lab!r}") for lab in repaired)]
    table = _table(before, after, repaired, notes)
    return FixPlan(edits, table, list(dict.fromkeys(notes)), repaired, findings)


def _apply(ctx, edits: list[Edit], groups: np.ndarray) -> list[tuple[str, str, int, bool]]:
    """(label, split, group, dropped) per clip position after the edits."""
    by_row: dict[int, dict[str, Edit]] = {}
    for e in edits:
        by_row.setdefault(e.row, {})[e.action] = e
    out = []
    for pos, (row, label, split) in enumerate(zip(ctx.rows, ctx.labels, ctx.clips[S.SPLIT].fillna(""))):
        mine = by_row.get(int(row), {})
        label = mine["relabel"].value if "relabel" in mine else label
        split = mine["split"].value if "split" in mine else split
        out.append((label, split, int(groups[pos]), "drop" in mine))
    return out


def _count(state, label: str, split: str) -> int:
    return sum(1 for lab, spl, _, gone in state if lab == label and spl == split and not gone)


def _eval_shares(split: np.ndarray) -> dict[str, float]:
    """Each evaluation split's share of the input (the ratio a re-split keeps)."""
    counts = Counter(split.tolist())
    return {s: n / len(split) for s, n in counts.items() if is_eval(s)}


def _repair(ctx, state, groups, label: str, target: str, share: float) -> dict[int, str]:
    """{position: target} moving whole groups of `label` into `target`, or {} when the class has one source.

    Groups made mostly of the class go first, smallest first, until the class's share in `target` reaches the
    dataset's; the class's largest group stays for training, and no move takes another class's last training
    group.
    """
    alive = [(p, g) for p, (_, _, g, gone) in enumerate(state) if not gone]
    mine = [(g, [p for p, gg in alive if gg == g]) for g in _groups_of(state, label)]
    if len(mine) < 2:
        return {}
    size = {g: sum(1 for p in members if state[p][0] == label) for g, members in mine}
    purity = {g: size[g] / len(members) for g, members in mine}
    largest = max(size, key=lambda g: (size[g], -g))
    wanted = max(1, int(round(share * sum(size.values()))))
    moved: dict[int, str] = {}
    for g, members in sorted(mine, key=lambda m: (-purity[m[0]], size[m[0]], m[0])):
        if g == largest or sum(1 for p in moved if state[p][0] == label) >= wanted:
            continue
        trial = {**moved, **{p: target for p in members if state[p][1] != target}}
        if _keeps_training(state, trial):
            moved = trial
    return moved


def _groups_of(state, label: str) -> list[int]:
    return sorted({g for lab, _, g, gone in state if lab == label and not gone})


def _keeps_training(state, moved: dict[int, str]) -> bool:
    """Every class that has training clips keeps one after `moved`."""
    before = {lab for lab, spl, _, gone in state if not gone and spl and not is_eval(spl)}
    after = {lab for p, (lab, spl, _, gone) in enumerate(state) if not gone and not is_eval(moved.get(p, spl))}
    return before <= after


def _with_moves(edits: list[Edit], moved: dict[int, str], ctx) -> list[Edit]:
    """Edits with a split edit per moved row (replacing an earlier one; none where the row goes back home)."""
    home = dict(zip(ctx.rows.tolist(), ctx.clips[S.SPLIT].fillna("")))
    rows = {int(ctx.rows[p]): split for p, split in moved.items()}
    kept = [e for e in edits if not (e.action == "split" and e.row in rows)]
    kept += [Edit(r, "split", s, REPAIR_KIND) for r, s in rows.items() if home[r] != s]
    return sorted(kept, key=lambda e: (e.row, e.action))


def _repair_finding(ctx, label: str, target: str, moved: dict[int, str], edits: list[Edit]) -> Finding:
    """The re-split as a finding (so it is reviewed, accepted or rejected like any other fix): the rows it moves."""
    moved_rows = {int(ctx.rows[p]) for p in moved}
    rows = sorted(e.row for e in edits if e.kind == REPAIR_KIND and e.row in moved_rows)
    videos = sorted({str(ctx.clips[S.VIDEO].iloc[p]) for p in moved})
    return Finding(
        REPAIR_KIND,
        "warning",
        f"the proposed fixes would leave {label!r} with no {target!r} clips; {len(videos)} whole source video(s) or "
        f"copy group(s) of it can move there instead ({', '.join(videos[:3])}{', ...' if len(videos) > 3 else ''})",
        rows=tuple(rows),
        labels=(label,),
        videos=tuple(videos),
        confidence=0.9,
        action=f"move row(s) {', '.join(map(str, rows))} to {target!r}, so that {label!r} keeps evaluation clips "
        "independent of its training clips",
        suggestion={"split": target, "rows": rows},
    )


def _cannot(ctx, state, groups, label: str, target: str) -> str:
    names = sorted({str(ctx.clips[S.VIDEO].iloc[p]) for p, (lab, _, _, gone) in enumerate(state) if lab == label})
    return (
        f"{label!r} cannot keep {target!r} clips independent of training: all its clips come from one source "
        f"(or copies of one: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}); add footage from "
        "another source video to evaluate it"
    )


def _table(before: State, after: State, repaired: list[str], notes: list[str]) -> list[dict[str, Any]]:
    splits = sorted({s for _, s in before.counts()} | {s for _, s in after.counts()})
    out = []
    for label in before.labels():
        said = [n for n in notes if n.startswith(f"{label!r}")]
        out.append(
            {
                "label": label,
                "before": {s: before.counts()[(label, s)] for s in splits},
                "after": {s: after.counts()[(label, s)] for s in splits},
                "status": "re-split" if label in repaired else ("; ".join(said) if said else "ok"),
            }
        )
    return out
