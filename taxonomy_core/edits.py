"""Proposed edits: one change to one manifest row, traceable to the finding kind that proposed it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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


def write_edits(edits: list[Edit], path: Path) -> Path:
    path.write_text(json.dumps([asdict(e) | {"key": e.key} for e in edits], indent=1, default=str))
    return path


def read_edits(path: Path) -> list[Edit]:
    if not path.exists():
        return []
    records = json.loads(path.read_text())
    return [
        Edit(r["row"], r["action"], tuple(r["value"]) if r["action"] == "trim" else r["value"], r["kind"])
        for r in records
    ]
