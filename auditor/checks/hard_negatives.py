"""Hard negatives: does each class have clips of other labels near its boundary to learn that boundary from?

Fine-tuning guides ask for the target and for visually similar instances that are not it (the "timeout" gesture
and other sideline gestures). A clip of another label is a hard negative of a class when it sits within the
class's own spread: its cosine to the class centroid is at least the class's cohesion minus `spread_k` times its
spread (the mean and standard deviation of the members' leave-one-out cosines).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from auditor.checks.base import Check, CheckResult, Requirement
from taxonomy_core.findings import Evidence, Finding, clamp


class HardNegatives(Check):
    name = "hard_negatives"
    requires = frozenset({Requirement.TWO_CLASSES})

    @dataclass(frozen=True, kw_only=True)
    class Params:
        spread_k: float = 2.0  # "within the class's spread": cohesion - spread_k * spread (about 95% of its clips)
        examples: int = 8  # nearest other-label clips kept per class (the app and the report show them)
        negative_words: tuple[str, ...] = ("background", "negative", "none", "other", "null", "nothing", "no")

    def run(self, ctx) -> CheckResult:
        p = self.params
        result = self.result()
        negatives = [label for label in ctx.classes if is_negative_class(label, p.negative_words)]
        result.sections["hard_negatives"] = {"negative_classes": negatives, "spread_k": p.spread_k}
        for c, label in enumerate(ctx.classes):
            record, finding = self._class(ctx, c, label, negatives)
            result.classes[label] = record
            if finding is not None:
                result.findings.append(finding)
        return result

    def _class(self, ctx, c: int, label: str, negatives: list[str]) -> tuple[dict, Finding | None]:
        p = self.params
        members = ctx.codes == c
        own = ctx.own_similarity[members]
        boundary = float(own.mean() - p.spread_k * own.std())
        others = np.flatnonzero(~members)
        to_centroid = ctx.centroid_similarity[others, c]
        inside = others[to_centroid >= boundary]
        order = others[_top(to_centroid, p.examples)]
        examples = [
            {
                "row": int(ctx.rows[j]),
                "clip_id": ctx.clip_ids[j],
                "label": ctx.labels[j],
                "similarity": round(float(ctx.centroid_similarity[j, c]), 4),
                "inside": bool(ctx.centroid_similarity[j, c] >= boundary),
            }
            for j in order
        ]
        record = {
            "hard_negatives": len(inside),
            "hard_negative_labels": dict(Counter(ctx.labels[inside]).most_common()),
            "hard_negative_boundary": boundary,
            "hard_negative_examples": examples,
        }
        if len(inside) or negatives or not examples:
            return record, None
        return record, missing(label, boundary, float(own.std()), examples, p.spread_k)


def is_negative_class(label: str, words: tuple[str, ...]) -> bool:
    """A background or negative class ("background", "no_gesture", "other"): it teaches every boundary at once."""
    return bool(set(re.split(r"[^a-z0-9]+", label.lower())) & set(words))


def missing(label: str, boundary: float, spread: float, examples: list[dict], spread_k: float) -> Finding:
    nearest = examples[0]
    gap = boundary - nearest["similarity"]
    return Finding(
        "missing_hard_negatives",
        "warning",
        f"no clip of another label sits within {label!r}'s spread (cosine to its centroid >= {boundary:.3f}); the "
        f"nearest is row {nearest['row']} ({nearest['label']!r}, {nearest['similarity']:.3f}) and the dataset has no "
        f"background or negative class: the model never sees what {label!r} is not",
        labels=(label,),
        evidence=tuple(Evidence(e["row"], "nearest_other_label", e["similarity"]) for e in examples),
        confidence=clamp(0.5 + gap / (2 * max(spread_k * spread, 0.02))),
        action=f"add clips that resemble {label!r} but are something else (like {nearest['label']!r} footage "
        f"close to it), or a background class",
    )


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first (a partition, then a sort of k)."""
    if len(values) <= k:
        return np.argsort(-values, kind="stable")
    top = np.argpartition(-values, k - 1)[:k]
    return top[np.argsort(-values[top], kind="stable")]
