"""Proposed edits: one change to one manifest row, traceable to the finding kind that proposed it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from taxonomy_core.atomic import write_atomic

EDITS_FILE = "edits.json"


@dataclass(frozen=True)
class Edit:
    """One proposed change to one row, traceable to the finding that proposed it."""

    row: int
    action: str  # "relabel" | "trim" | "drop"
    value: Any  # new label, (start, end), or the reason
    kind: str

    @property
    def key(self) -> str:
        return f"{self.action}:{self.row}"


def edits_records(edits: list[Edit]) -> list[dict[str, Any]]:
    """Plain-JSON records of edits (report.json holds them too)."""
    return json.loads(json.dumps([asdict(e) | {"key": e.key} for e in edits], default=str))


def edits_from_records(records: list[dict[str, Any]]) -> list[Edit]:
    return [
        Edit(r["row"], r["action"], tuple(r["value"]) if r["action"] == "trim" else r["value"], r["kind"])
        for r in records
    ]


def write_edits(edits: list[Edit], path: Path, run_id: str = "") -> Path:
    """`{"run_id": ..., "edits": [...]}`: the run id ties the edits to the report.json they came with."""
    return write_atomic(path, json.dumps({"run_id": run_id, "edits": edits_records(edits)}, indent=1))


def read_edits(path: Path) -> list[Edit]:
    return read_edits_of_run(path)[1]


def read_edits_of_run(path: Path) -> tuple[str, list[Edit]]:
    """(run id, edits); ("", []) when there is no file. A list (schema 1) has no run id."""
    if not Path(path).exists():
        return "", []
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    run_id, records = (data.get("run_id", ""), data.get("edits", [])) if isinstance(data, dict) else ("", data)
    return run_id, edits_from_records(records)


def resolve(edits: list[Edit]) -> list[Edit]:
    """One edit per (action, row), the first proposed winning; a drop wins over every other edit of its row."""
    by_key: dict[str, Edit] = {}
    for edit in edits:
        by_key.setdefault(edit.key, edit)
    dropped = {e.row for e in by_key.values() if e.action == "drop"}
    kept = (e for e in by_key.values() if e.action == "drop" or e.row not in dropped)
    return sorted(kept, key=lambda e: (e.row, e.action))
