"""Reconcile what the checks say about one clip or one pair of classes, so each problem is one finding.

- A clip cut too loose looks like another class (or like nothing) for that reason: its looseness finding carries
  the problem, and a relabel only stands where the tight part too is nearest the suggested class.
- Two classes mixed in each other's neighbourhoods (synonyms, or an unclear boundary) are one
  `confusable_classes` finding: the relabels between them are folded into it as evidence, not made.
- A copy under two labels is one `label_conflict`, unless a `likely_mislabel` already accuses one side.
"""

from __future__ import annotations

from dataclasses import replace

from auditor.checks.base import CheckResult
from taxonomy_core.edits import Edit
from taxonomy_core.findings import Evidence, Finding

LOOSE_KINDS = ("temporal_looseness", "spatial_looseness")


def reconcile(results: list[CheckResult]) -> tuple[list[Finding], list[Edit]]:
    findings = [f for r in results for f in r.findings]
    edits = [e for r in results for e in r.edits]
    findings, held = _hold_loose_relabels(findings)
    findings, folded = _fold_confusable_relabels(findings)
    findings = _drop_explained_conflicts(findings)
    gone = held | folded
    kept = [e for e in edits if not (e.action == "relabel" and e.row in gone and e.kind == "likely_mislabel")]
    return findings, kept


def _hold_loose_relabels(findings: list[Finding]) -> tuple[list[Finding], set[int]]:
    """A loose clip's mislabel is not a second finding: the looseness finding carries it, as a sentence; unless the
    tight part (the core of the segment, the best crop) too is nearest the suggested class."""
    findings = _drop_spatial_explained_by_time(findings)
    loose: dict[int, list[Finding]] = {}
    for f in findings:
        for row in f.rows if f.kind in LOOSE_KINDS else ():
            loose.setdefault(row, []).append(f)
    held = {
        f.rows[0]: f
        for f in findings
        if f.kind == "likely_mislabel"
        and len(f.rows) == 1
        and f.rows[0] in loose
        and not any((g.suggestion or {}).get("tight_part_class") == f.labels[-1] for g in loose[f.rows[0]])
    }
    out = []
    for f in findings:
        if f.kind == "likely_mislabel" and f.rows and f.rows[0] in held:
            continue
        if f.kind == "outlier" and f.rows and f.rows[0] in loose:  # far from its class because of the loose cut
            continue
        if f.kind in LOOSE_KINDS and any(r in held for r in f.rows):
            others = sorted({held[r].labels[-1] for r in f.rows if r in held})
            f = replace(
                f,
                message=f.message + f"; the whole clip sits among {', '.join(map(repr, others))} clips, "
                "which the loose cut explains: fix the cut, then re-audit before relabelling",
            )
        out.append(f)
    return out, set(held)


def _drop_spatial_explained_by_time(findings: list[Finding]) -> list[Finding]:
    """A clip that looks like another class because its segment runs on into another scene is one temporal finding;
    a spatial looseness inferred only from a crop leaning to the clip's own class adds nothing to it."""
    cut = {row for f in findings if f.kind == "temporal_looseness" for row in f.rows}
    return [
        f
        for f in findings
        if not (f.kind == "spatial_looseness" and (f.suggestion or {}).get("by") == "crop_leans" and set(f.rows) & cut)
    ]


def _fold_confusable_relabels(findings: list[Finding]) -> tuple[list[Finding], set[int]]:
    """Mislabels from one class of a confusable pair into the other become evidence of the pair's finding."""
    pairs = {frozenset(f.labels): f for f in findings if f.kind == "confusable_classes"}
    folded: dict[frozenset, list[Finding]] = {}
    out = []
    for f in findings:
        key = frozenset(f.labels)
        if f.kind == "likely_mislabel" and len(f.labels) == 2 and key in pairs:
            folded.setdefault(key, []).append(f)
        else:
            out.append(f)
    rows = set()
    for key, members in folded.items():
        pair = pairs[key]
        named = [Evidence(m.rows[0], f"looks_like_{m.labels[1]}", None) for m in members]
        rows |= {m.rows[0] for m in members}
        index = out.index(pair)
        out[index] = replace(
            pair,
            evidence=pair.evidence + tuple(named),
            message=pair.message + f"; {len(named)} clip(s) sit among the other class (in evidence), "
            "so they are not accused one by one",
        )
    return out, rows


def _drop_explained_conflicts(findings: list[Finding]) -> list[Finding]:
    """A label conflict that a mislabel accuses a side of, or between two confusable classes, is not one more
    finding: the mislabel or the pair's finding says it (the pair's takes the conflict's rows as evidence)."""
    accused = {row for f in findings if f.kind == "likely_mislabel" for row in f.rows}
    pairs = [f for f in findings if f.kind == "confusable_classes"]
    out = [f for f in findings if not (f.kind == "label_conflict" and {e.row for e in f.evidence} & accused)]
    for f in [f for f in out if f.kind == "label_conflict"]:
        pair = next((p for p in pairs if set(f.labels) <= set(p.labels)), None)
        if pair is not None:
            out.remove(f)
            index = out.index(pair)
            out[index] = pair = replace(pair, evidence=pair.evidence + f.evidence)
            pairs = [pair if set(p.labels) == set(pair.labels) else p for p in pairs]
    return out
