"""The one record every problem is reported as, from manifest validation to the audit checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    """A problem with rows of the manifest (0-based data-row indices), or with the whole dataset."""

    kind: str
    severity: Severity
    message: str
    rows: tuple[int, ...] = ()
    labels: tuple[str, ...] = ()
    videos: tuple[str, ...] = ()
    score: float = 1.0
    suggestion: dict[str, Any] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        for key in ("rows", "labels", "videos"):
            record[key] = list(record[key])
        return record
