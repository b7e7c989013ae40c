"""Checks: one per module, each a class with a `name` and `run(ctx) -> CheckResult`, registered here.

The runner isolates a failing check: its error goes into the report and the audit goes on.
"""

from __future__ import annotations

import importlib
import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from taxonomy_core.findings import Finding

log = logging.getLogger(__name__)


@dataclass
class CheckResult:
    """What a check adds: findings, per-class metrics, per-clip fields (keyed by clip position)."""

    name: str
    findings: list[Finding] = field(default_factory=list)
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    clips: dict[int, dict[str, Any]] = field(default_factory=dict)
    skipped: str | None = None
    error: str | None = None
    seconds: float = 0.0


class Check(Protocol):
    name: ClassVar[str]

    def run(self, ctx) -> CheckResult: ...


# name -> "module:Class"; imported when built, in this order (later checks may read earlier results).
REGISTRY: dict[str, str] = {}


def register(name: str, target: str) -> None:
    if name in REGISTRY:
        raise ValueError(f"a check named {name!r} is already registered ({REGISTRY[name]})")
    REGISTRY[name] = target


for _name, _target in [
    ("tightness", "auditor.checks.tightness:ClassTightness"),
    ("mislabels", "auditor.checks.mislabels:Mislabels"),
    ("duplicates", "auditor.checks.duplicates:Duplicates"),
    ("temporal", "auditor.checks.temporal:TemporalTightness"),
    ("spatial", "auditor.checks.spatial:SpatialTightness"),
    ("search", "auditor.checks.search_consistency:SearchConsistency"),
    ("diversity", "auditor.checks.diversity:Diversity"),
    ("structure", "auditor.checks.structure:Structure"),
    ("shortcut", "auditor.checks.shortcut:ShortcutRisk"),
]:
    register(_name, _target)


def build_checks(names: list[str] | None = None) -> list[Check]:
    names = list(REGISTRY) if names is None else names
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; available: {', '.join(REGISTRY)}")
    checks = []
    for name in names:
        module, _, cls = REGISTRY[name].partition(":")
        checks.append(getattr(importlib.import_module(module), cls)())
    return checks


def run_checks(ctx, checks: list[Check], progress=None) -> list[CheckResult]:
    results = []
    for check in checks:
        t0 = time.perf_counter()
        try:
            result = check.run(ctx)
        except Exception as e:  # one broken check must not cost the user the whole audit
            log.error("check %s failed: %s", check.name, e)
            result = CheckResult(check.name, error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}")
        result.seconds = time.perf_counter() - t0
        results.append(result)
        if progress:
            progress(check.name, result)
    return results
