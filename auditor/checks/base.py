"""The check contract (after cleanlab's issue managers): a name, what it requires, typed params, a typed result.

A check is one class in one module: `name`, `requires` (one generic skip when the context lacks it), a frozen
keyword-only `Params` dataclass of its hyperparameters (the TOML table `[checks.<name>]` maps onto it), and
`run(ctx) -> CheckResult` keyed by clip id. Register it in `auditor/checks/__init__.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from taxonomy_core.edits import Edit
from taxonomy_core.findings import Finding


class Requirement(str, Enum):
    """What a check needs from the audit context; a check whose needs are unmet is skipped with the reason."""

    COMPANIONS = "timeline and crop vectors in the store"
    TEXT_SPACE = "a model with a text tower"
    SPLITS = "at least two splits"
    TWO_CLASSES = "at least two classes"
    REFERENCE = "reference footage (auditor audit --reference)"


@dataclass(frozen=True, kw_only=True)
class NoParams:
    """For a check without hyperparameters."""


@dataclass
class CheckResult:
    """What a check adds: findings, the edits that fix them, per-class metrics, per-clip fields keyed by clip id,
    and `sections`: top-level report sections about the dataset as a whole (e.g. `evaluation`)."""

    name: str
    findings: list[Finding] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    clips: dict[str, dict[str, Any]] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    error: str | None = None
    seconds: float = 0.0


class Check:
    """Base class: subclasses set `name`, maybe `requires` and `Params`, and implement `run`."""

    name: ClassVar[str]
    requires: ClassVar[frozenset[Requirement]] = frozenset()
    Params: ClassVar[type] = NoParams

    def __init__(self, params: Any = None):
        self.params = params if params is not None else self.Params()

    def run(self, ctx) -> CheckResult:
        raise NotImplementedError

    def result(self) -> CheckResult:
        return CheckResult(self.name)


def unmet(ctx, requires: frozenset[Requirement]) -> str | None:
    """The first requirement the context does not meet, in words; None when all are met."""
    available = {
        Requirement.COMPANIONS: ctx.has_companions,
        Requirement.TEXT_SPACE: ctx.text_encoder is not None,
        Requirement.SPLITS: ctx.clips["split"].dropna().nunique() >= 2,
        Requirement.TWO_CLASSES: len(ctx.classes) >= 2,
        Requirement.REFERENCE: ctx.reference is not None,
    }
    missing = [r.value for r in sorted(requires, key=lambda r: r.name) if not available[r]]
    return f"needs {' and '.join(missing)}" if missing else None
