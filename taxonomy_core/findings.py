"""The one record every problem is reported as, from manifest validation to the audit checks (report schema 2).

A finding accuses only the rows its fix touches (`rows`); related rows go in `evidence`, each with its role.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Evidence:
    """A row that supports a finding without being accused by it."""

    row: int
    role: str  # e.g. "near_identical_other_label", "train_original", "neighbour", "kept_copy", "stays"
    similarity: float | None = None


@dataclass(frozen=True)
class Finding:
    """A problem with rows of the manifest (0-based data-row indices), or with a class or the whole dataset.

    `confidence` in [0, 1] is comparable across kinds (findings sort by severity, then confidence);
    `action` is one plain sentence a person can act on; `suggestion` is the machine-readable fix.
    """

    kind: str
    severity: Severity
    message: str
    rows: tuple[int, ...] = ()
    labels: tuple[str, ...] = ()
    videos: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    confidence: float = 1.0
    action: str = ""
    suggestion: dict[str, Any] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        for key in ("rows", "labels", "videos"):
            record[key] = list(record[key])
        record["evidence"] = [asdict(e) for e in self.evidence]
        record["confidence"] = round(float(self.confidence), 3)
        return record

    @property
    def sort_key(self) -> tuple:
        return (SEVERITY_ORDER[self.severity], -self.confidence, self.kind)


def clamp(value: float) -> float:
    """A confidence: any score squeezed into [0, 1]."""
    return float(min(1.0, max(0.0, value)))
