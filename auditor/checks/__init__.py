"""The check registry and runner: one check per module, registered here in run order.

The runner skips every check when fewer than two clips were indexed, and a check whose requirements the
context does not meet (one generic reason each), and isolates
a failing check: its error goes into the report and the audit goes on.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import logging
import sys
import time
import traceback
from dataclasses import asdict
from typing import Any

from auditor.checks.base import Check, CheckResult, ClipFields, Requirement, unmet

log = logging.getLogger(__name__)

__all__ = [
    "REGISTRY", "Check", "CheckResult", "ClipFields", "Requirement", "build_checks", "check_class", "register",
    "run_checks",
]  # fmt: skip

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
    ("hard_negatives", "auditor.checks.hard_negatives:HardNegatives"),
    ("splits", "auditor.checks.split_populations:SplitPopulations"),
    ("evaluation", "auditor.checks.evaluation:EvaluationForecast"),
    ("weak_slices", "auditor.checks.weak_slices:WeakSlices"),
    ("representativeness", "auditor.checks.representativeness:Representativeness"),
]:
    register(_name, _target)


def check_class(name: str) -> type[Check]:
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def build_checks(names: list[str] | None = None, config=None) -> list[Check]:
    """The named checks (default: all), each with its params from `config` (an AuditConfig)."""
    names = list(REGISTRY) if names is None else names
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; available: {', '.join(REGISTRY)}")
    classes = [check_class(name) for name in names]
    return [cls(config.params_for(cls)) if config is not None else cls() for cls in classes]


def run_checks(ctx, checks: list[Check], progress=None) -> list[CheckResult]:
    results = []
    for check in checks:
        t0 = time.perf_counter()
        reason = _too_few(ctx) or unmet(ctx, check.requires)
        if reason:
            result = CheckResult(check.name, skipped=reason)
        else:
            result = _run_isolated(ctx, check)
            result.clips = ClipFields.pack(result.clips)  # columns: the dicts go before the next check runs
        if ctx.has_companions:
            ctx.store.release()  # what this check read from the store is not the next one's
        give_back_memory()
        result.seconds = time.perf_counter() - t0
        results.append(result)
        if progress:
            progress(check.name, result)
    return results


def give_back_memory() -> None:
    """Return the heap a check freed to the system (glibc keeps freed blocks for its own reuse, so a check's
    temporaries would otherwise stay resident beside the next check's): the audit's peak is the largest check's,
    not their sum. Python's collector first, for cycles that hold arrays."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):  # another C library (musl): nothing to ask
            pass


def _too_few(ctx) -> str | None:
    """No check has anything to say about fewer than two clips (every row invalid, or one clip): one reason."""
    n = len(ctx.clips)
    return None if n >= 2 else f"needs at least two indexed clips; the audit has {n} (see the rows not indexed)"


def _run_isolated(ctx, check: Check) -> CheckResult:
    try:
        return check.run(ctx)
    except Exception as e:  # one broken check must not cost the user the whole audit
        log.error("check %s failed: %s", check.name, e)
        return CheckResult(check.name, error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}")


def params_of(checks: list[Check]) -> dict[str, dict[str, Any]]:
    """Every check's params as used, for the report."""
    return {check.name: asdict(check.params) for check in checks}
