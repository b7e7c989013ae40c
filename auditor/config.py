"""Audit thresholds: defaults here, overridable from a TOML file, all written into the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib


@dataclass(frozen=True)
class AuditConfig:
    """Every threshold a check uses, so a report says exactly how it was judged."""

    knn_k: int = 10
    # tiers and grades
    head_min: int = 200
    tail_max: int = 50
    probe_folds: int = 5
    # mislabels and outliers
    mislabel_knn_fraction: float = 0.6
    mislabel_margin: float = 0.02
    outlier_z: float = 3.0
    # duplicates and leakage
    duplicate_similarity: float = 0.95
    # temporal
    temporal_drop: float = 0.15
    temporal_core_ratio: float = 0.7
    temporal_min_loose_s: float = 1.0
    shot_cut_similarity: float = 0.5
    # spatial
    spatial_gain: float = 0.08
    # search consistency
    search_k: int = 10
    prompt_templates: tuple[str, ...] = ("a video of {label}", "{label}")
    prompts: dict[str, list[str]] = field(default_factory=dict)  # per-class overrides
    search_min_precision: float = 0.5
    # diversity and structure
    single_video_share: float = 0.8
    low_diversity: float = 0.05
    split_silhouette: float = 0.25
    split_min_share: float = 0.25
    confusable_fraction: float = 0.3
    # shortcut risk
    shortcut_lift: float = 0.3
    # projection
    umap_max_fit: int = 200_000
    hdbscan_min_cluster: int = 5
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_config(path: str | Path | None) -> AuditConfig:
    """Defaults < TOML file (`[thresholds]` and `[prompts]` tables, or top-level keys)."""
    if path is None:
        return AuditConfig()
    data = tomllib.loads(Path(path).read_text())
    values = dict(data.get("thresholds", {}))
    values.update({k: v for k, v in data.items() if k not in ("thresholds", "prompts")})
    if "prompts" in data:
        values["prompts"] = {label: [p] if isinstance(p, str) else list(p) for label, p in data["prompts"].items()}
    known = {f.name for f in fields(AuditConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    if "prompt_templates" in values:
        values["prompt_templates"] = tuple(values["prompt_templates"])
    return replace(AuditConfig(), **values)
