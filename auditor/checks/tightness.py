"""Class tightness: is each class one coherent cluster, apart from the others, learnable by a probe?"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score

from auditor.checks.base import Check, CheckResult


class ClassTightness(Check):
    name = "tightness"

    @dataclass(frozen=True, kw_only=True)
    class Params:
        head_min: int = 200  # a head class has at least this many clips
        tail_max: int = 50  # a tail class has fewer
        probe_folds: int = 5  # cross-validation folds of the linear probe (shared: ctx.probe)

    def run(self, ctx) -> CheckResult:
        cfg = self.params
        sims = ctx.centroid_similarity
        own = ctx.own_similarity
        other = sims.copy()
        other[np.arange(len(own)), ctx.codes] = -np.inf
        best_other = other.max(axis=1) if len(ctx.classes) > 1 else np.full(len(own), np.nan)
        a, b = 1 - own, 1 - best_other
        silhouette = (b - a) / np.maximum(np.maximum(a, b), 1e-9)
        agreement = (ctx.neighbour_labels == ctx.codes[:, None]).mean(axis=1)
        f1, confused = probe_scores(ctx, cfg.probe_folds)
        centroid_cos = ctx.centroids @ ctx.centroids.T
        np.fill_diagonal(centroid_cos, -np.inf)
        result = self.result()
        for c, label in enumerate(ctx.classes):
            members = ctx.codes == c
            nearest = int(np.argmax(centroid_cos[c])) if len(ctx.classes) > 1 else None
            metrics = {
                "count": int(members.sum()),
                "tier": tier(int(members.sum()), cfg),
                "cohesion": float(own[members].mean()),
                "spread": float(own[members].std()),
                "nearest_class": ctx.classes[nearest] if nearest is not None else None,
                "separation": float(1 - centroid_cos[c, nearest]) if nearest is not None else None,
                "margin": float(np.mean(own[members] - best_other[members])) if nearest is not None else None,
                "silhouette": float(np.mean(silhouette[members])) if nearest is not None else None,
                "knn_agreement": float(agreement[members].mean()),
                "probe_f1": f1.get(label),
                "probe_confused_with": confused.get(label),
            }
            result.classes[label] = metrics
        for i in range(len(own)):
            result.clips[ctx.clip_ids[i]] = {"own_similarity": float(own[i]), "knn_agreement": float(agreement[i])}
        return result


def tier(count: int, cfg) -> str:
    return "head" if count >= cfg.head_min else "tail" if count < cfg.tail_max else "mid"


def probe_scores(ctx, folds: int) -> tuple[dict[str, float], dict[str, str]]:
    """Cross-validated linear-probe F1 per class: roughly how hard fine-tuning will find it (the shared probe)."""
    probe = ctx.probe(folds)
    if probe is None:
        return {}, {}
    y, predicted = probe.truth, probe.predicted
    scores = f1_score(y, predicted, labels=probe.labels, average=None, zero_division=0)
    confused = {}
    for label in probe.labels:
        wrong = Counter(predicted[(y == label) & (predicted != label)])
        if wrong:
            confused[label] = wrong.most_common(1)[0][0]
    return {label: float(s) for label, s in zip(probe.labels, scores)}, confused
