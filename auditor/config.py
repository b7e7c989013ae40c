"""Audit settings: what the context shares (k, seed, text prompts) and each check's own params, from TOML.

```toml
[audit]                      # the shared context
knn_k = 10
[prompts]                    # per-class text prompts
hurdles = ["athlete jumping over hurdles"]
[checks.duplicates]          # a check's Params, by check name
similarity = 0.97
```

Every value is checked by type and range (`validate`), wherever the config comes from (a file, Python): one
error lists each bad key with its value and what is allowed, before anything runs.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

CONTEXT_TABLE, PROMPTS_TABLE, CHECKS_TABLE = "audit", "prompts", "checks"
INF = math.inf
# Allowed ranges (inclusive) by parameter name. Without an entry: a whole number >= 1, or a number from 0 to 1
# (shares, similarities, thresholds on them); a new parameter outside that declares its range here
# (tests/test_reliability.py checks every registered check's defaults against these rules).
RANGES: dict[str, tuple[float, float]] = {
    "knn_k": (1, 1000), "seed": (0, 2**32 - 1),
    "folds": (2, 50), "probe_folds": (2, 50), "hdbscan_min_cluster": (2, INF), "umap_max_fit": (2, INF),
    "tail_max": (0, INF), "min_target_count": (0, INF), "min_clips": (0, INF),
    "outlier_z": (0, INF), "spread_k": (0, INF), "min_loose_s": (0, INF), "night_brightness": (0, 255),
    "brightness_edges": (0, 255), "max_label_distance": (0, 2), "split_silhouette": (-1, 1),
    "shot_cut_similarity": (-1, 1), "max_auc": (0.5, 1), "min_z": (0, INF),
    "margin_spread": (0, INF), "crop_margin_spread": (0, INF), "overlap_seconds": (0, INF),
}  # fmt: skip


@dataclass(frozen=True)
class AuditConfig:
    """The shared context's settings plus per-check overrides (check name -> {param: value})."""

    knn_k: int = 10
    seed: int = 0
    prompt_templates: tuple[str, ...] = ("a video of {label}", "{label}")
    prompts: dict[str, list[str]] = field(default_factory=dict)  # per-class overrides of the templates
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = validate(self)
        if problems:
            raise ValueError("invalid audit config: " + "; ".join(problems))

    def params_for(self, check_cls) -> Any:
        """The check's Params with this config's overrides applied (validated by `load_config`)."""
        return check_cls.Params(**self.checks.get(check_cls.name, {}))

    def context_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "checks"}


def load_config(path: str | Path | None) -> AuditConfig:
    """Defaults < TOML file; unknown tables, checks or params are errors that list what is valid."""
    if path is None:
        return AuditConfig()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{path}: cannot read the audit config ({e})") from e
    unknown = sorted(set(data) - {CONTEXT_TABLE, PROMPTS_TABLE, CHECKS_TABLE})
    if unknown:
        raise ValueError(
            f"{path}: unknown table(s) {', '.join(unknown)}; valid: [{CONTEXT_TABLE}], [{PROMPTS_TABLE}], "
            f"[{CHECKS_TABLE}.<name>] (a check's thresholds live in its own table, e.g. [checks.duplicates])"
        )
    values = dict(data.get(CONTEXT_TABLE, {}))
    known = {f.name for f in fields(AuditConfig)} - {"checks", "prompts"}
    bad = sorted(set(values) - known)
    if bad:
        raise ValueError(
            f"{path}: unknown [{CONTEXT_TABLE}] setting(s) {', '.join(bad)}; valid: {', '.join(sorted(known))}"
        )
    if "prompt_templates" in values:
        values["prompt_templates"] = tuple(values["prompt_templates"])
    prompts = {label: [p] if isinstance(p, str) else list(p) for label, p in data.get(PROMPTS_TABLE, {}).items()}
    checks = data.get(CHECKS_TABLE, {})
    _validate_checks(path, checks)
    try:
        return replace(AuditConfig(), **values, prompts=prompts, checks=checks)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def validate(config: AuditConfig) -> list[str]:
    """Every bad value, as `[table] key = value: what is allowed`; [] when the config holds together."""
    problems = [
        p
        for f in fields(AuditConfig)
        if f.name not in ("checks", "prompts")
        for p in _check_value(CONTEXT_TABLE, f.name, getattr(config, f.name), f.default)
    ]
    if not isinstance(config.prompts, dict) or not all(
        isinstance(v, list) and v and all(isinstance(x, str) and x.strip() for x in v) for v in config.prompts.values()
    ):
        problems.append(f"[{PROMPTS_TABLE}]: each class needs a non-empty text or list of non-empty texts")
    problems += [
        f"[{CONTEXT_TABLE}] prompt_templates = {t!r}: a template must contain {{label}}"
        for t in config.prompt_templates
        if isinstance(t, str) and "{label}" not in t
    ]
    if not isinstance(config.checks, dict):
        return [*problems, f"[{CHECKS_TABLE}] must be tables of check params"]
    return problems + [p for name, values in config.checks.items() for p in _check_params(name, values)]


def _check_params(name: str, values: Any) -> list[str]:
    from auditor.checks import REGISTRY, check_class

    if name not in REGISTRY or not isinstance(values, dict):
        return []  # unknown names and tables are load_config's message
    defaults = {f.name: f.default for f in fields(check_class(name).Params) if f.default is not MISSING}
    where = f"{CHECKS_TABLE}.{name}"
    return [
        p for key, value in values.items() if key in defaults for p in _check_value(where, key, value, defaults[key])
    ]


def _check_value(table: str, key: str, value: Any, default: Any) -> list[str]:
    """Why `value` cannot stand where `default` stands: its type (from the default's) or its range."""
    shown = f"[{table}] {key} = {value!r}"
    if isinstance(default, bool):
        return [] if isinstance(value, bool) else [f"{shown}: allowed: true or false"]
    if isinstance(default, (int, float)):
        lo, hi = RANGES.get(key, (1, INF) if isinstance(default, int) else (0, 1))
        return _check_number(shown, value, isinstance(default, int), lo, hi)
    if isinstance(default, str):
        return [] if isinstance(value, str) else [f"{shown}: allowed: a text"]
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            return [f"{shown}: allowed: a list"]
        numeric = bool(default) and all(isinstance(d, (int, float)) for d in default)
        if numeric:
            lo, hi = RANGES.get(key, (0, 1))
            bad = [p for v in value for p in _check_number(shown, v, False, lo, hi)]
            if not bad and list(value) != sorted(value):
                bad = [f"{shown}: allowed: numbers in increasing order"]
            return bad[:1]
        return [] if all(isinstance(v, str) for v in value) else [f"{shown}: allowed: a list of texts"]
    return []


def _check_number(shown: str, value: Any, whole: bool, lo: float, hi: float) -> list[str]:
    span = f"from {lo:,}" + (f" to {hi:,}" if hi != INF else " up")
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
        return [f"{shown}: allowed: {kind} {span}"]
    if not (math.isfinite(value) and lo <= value <= hi):
        return [f"{shown}: out of range; allowed: {kind} {span}"]
    return []


def _validate_checks(path, checks: dict[str, Any]) -> None:
    from auditor.checks import REGISTRY, check_class

    for name, overrides in checks.items():
        if name not in REGISTRY:
            raise ValueError(f"{path}: unknown check [{CHECKS_TABLE}.{name}]; checks: {', '.join(REGISTRY)}")
        params = {f.name for f in fields(check_class(name).Params)}
        bad = sorted(set(overrides) - params)
        if bad:
            raise ValueError(
                f"{path}: [{CHECKS_TABLE}.{name}] has unknown param(s) {', '.join(bad)}; "
                f"valid: {', '.join(sorted(params)) or 'none'}"
            )
