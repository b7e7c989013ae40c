"""Class tightness: is each class one coherent cluster, apart from the others, learnable by a probe?"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from auditor.checks.base import Check, CheckResult

PROBE_MAX_SAMPLES = 20_000


class ClassTightness(Check):
    name = "tightness"

    @dataclass(frozen=True, kw_only=True)
    class Params:
        head_min: int = 200  # a head class has at least this many clips
        tail_max: int = 50  # a tail class has fewer
        probe_folds: int = 5  # cross-validation folds of the linear probe

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
        f1, confused = probe_scores(ctx, cfg.probe_folds, ctx.config.seed)
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


def probe_scores(ctx, folds: int, seed: int) -> tuple[dict[str, float], dict[str, str]]:
    """Cross-validated linear-probe F1 per class: roughly how hard fine-tuning will find it."""
    counts = Counter(ctx.labels)
    usable = [label for label, n in counts.items() if n >= 2]
    if len(usable) < 2:
        return {}, {}
    idx = np.flatnonzero(np.isin(ctx.labels, usable))
    rng = np.random.default_rng(seed)
    if len(idx) > PROBE_MAX_SAMPLES:
        idx = np.sort(rng.choice(idx, PROBE_MAX_SAMPLES, replace=False))
    y = ctx.labels[idx].astype(str)
    n_splits = int(min(folds, min(Counter(y).values())))
    if n_splits < 2:
        return {}, {}
    probe = LogisticRegression(C=10.0, max_iter=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        predicted = cross_val_predict(
            probe, ctx.vectors[idx], y, cv=StratifiedKFold(n_splits, shuffle=True, random_state=seed)
        )
    labels = sorted(set(y))
    scores = f1_score(y, predicted, labels=labels, average=None, zero_division=0)
    confused = {}
    for label in labels:
        wrong = Counter(predicted[(y == label) & (predicted != label)])
        if wrong:
            confused[label] = wrong.most_common(1)[0][0]
    return {label: float(s) for label, s in zip(labels, scores)}, confused
