"""Audit settings: what the context shares (k, seed, text prompts) and each check's own params, from TOML.

```toml
[audit]                      # the shared context
knn_k = 10
[prompts]                    # per-class text prompts
hurdles = ["athlete jumping over hurdles"]
[checks.duplicates]          # a check's Params, by check name
similarity = 0.97
```
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

CONTEXT_TABLE, PROMPTS_TABLE, CHECKS_TABLE = "audit", "prompts", "checks"


@dataclass(frozen=True)
class AuditConfig:
    """The shared context's settings plus per-check overrides (check name -> {param: value})."""

    knn_k: int = 10
    seed: int = 0
    prompt_templates: tuple[str, ...] = ("a video of {label}", "{label}")
    prompts: dict[str, list[str]] = field(default_factory=dict)  # per-class overrides of the templates
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

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
    return replace(AuditConfig(), **values, prompts=prompts, checks=checks)


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
