"""Reconcile what the checks say about one clip, before the report and the fixed manifest are written."""

from __future__ import annotations

from dataclasses import replace

from auditor.checks.base import CheckResult
from taxonomy_core.edits import Edit
from taxonomy_core.findings import Finding

LOOSE_KINDS = ("temporal_looseness", "spatial_looseness")


def reconcile(results: list[CheckResult]) -> tuple[list[Finding], list[Edit]]:
    """A clip cut too loose looks like another class for that reason: its relabel waits for the trim or crop."""
    findings = [f for r in results for f in r.findings]
    edits = [e for r in results for e in r.edits]
    loose = {row for f in findings if f.kind in LOOSE_KINDS for row in f.rows}
    held = set()
    out = []
    for f in findings:
        if f.kind == "likely_mislabel" and len(f.rows) == 1 and f.rows[0] in loose:
            held.add(f.rows[0])
            f = replace(
                f,
                severity="info",
                suggestion=None,
                message=f.message + "; it is also cut loosely, which may explain this: fix the bounds or crop first",
            )
        out.append(f)
    kept = [e for e in edits if not (e.action == "relabel" and e.row in held and e.kind == "likely_mislabel")]
    return out, kept


def note_consequences(ctx, findings: list[Finding], edits: list[Edit], min_count: int = 10) -> list[Finding]:
    """Say so where applying every proposed fix would empty a split of a class or leave it under the minimum."""
    before = _split_counts(ctx, {})
    after = _split_counts(ctx, {e.row: e for e in edits})
    notes: dict[str, list[str]] = {}
    for label in sorted({lab for lab, _ in before}):
        total = sum(n for (lab, _), n in after.items() if lab == label)
        for (lab, split), n in before.items():
            if lab == label and n and not after.get((lab, split)):
                notes.setdefault(label, []).append(f"leaves {label!r} with no {split or 'unsplit'} clips")
        if total < min_count <= sum(n for (lab, _), n in before.items() if lab == label):
            notes.setdefault(label, []).append(f"leaves {label!r} with {total} clips, under the minimum of {min_count}")
    if not notes:
        return findings
    edited = {e.row for e in edits}
    out = []
    for f in findings:
        hits = [n for label in f.labels for n in notes.get(label, []) if set(f.rows) & edited]
        if hits:
            note = "; applying every proposed fix " + " and ".join(dict.fromkeys(hits))
            f = replace(f, action=(f.action or "") + note, message=f.message + note)
        out.append(f)
    return out


def _split_counts(ctx, edits: dict[int, Edit]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for row, label, split in zip(ctx.rows, ctx.labels, ctx.clips["split"].fillna("")):
        edit = edits.get(int(row))
        if edit is not None and edit.action == "drop":
            continue
        if edit is not None and edit.action == "relabel":
            label = edit.value
        if edit is not None and edit.action == "split":
            split = edit.value
        counts[(label, split)] = counts.get((label, split), 0) + 1
    return counts
