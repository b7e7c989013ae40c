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
