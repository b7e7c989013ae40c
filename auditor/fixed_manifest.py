"""The proposed fixes: findings turned into edits of manifest rows.

Edits themselves live in taxonomy_core.edits; each manifest format writes them back in
taxonomy_core.formats (`write_fixed_manifest`).
"""

from __future__ import annotations

from taxonomy_core.edits import Edit
from taxonomy_core.findings import Finding


def proposed_edits(findings: list[Finding], excluded: dict[int, str]) -> list[Edit]:
    """Every fix the audit can apply mechanically; drops win over other edits of the same row."""
    edits: dict[str, Edit] = {}
    for row, reason in excluded.items():
        edits[f"drop:{row}"] = Edit(row, "drop", reason, "invalid_annotation")
    for f in findings:
        s = f.suggestion or {}
        if f.kind == "likely_mislabel" and "label" in s:
            row = s.get("row", f.rows[0])
            edits.setdefault(f"relabel:{row}", Edit(row, "relabel", s["label"], f.kind))
        elif f.kind == "temporal_looseness":
            edits.setdefault(f"trim:{f.rows[0]}", Edit(f.rows[0], "trim", (s["start"], s["end"]), f.kind))
        elif f.kind == "split_leak" and "drop" in s:
            edits.setdefault(f"drop:{s['drop']}", Edit(s["drop"], "drop", f.message, f.kind))
    dropped = {e.row for e in edits.values() if e.action == "drop"}
    return sorted(
        (e for e in edits.values() if e.action == "drop" or e.row not in dropped), key=lambda e: (e.row, e.action)
    )
