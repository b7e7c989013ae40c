"""The evaluation forecast (AutoML's evaluate tab before any training): per-class precision, recall and average
precision, the confusion matrix and macro/weighted/micro averages, all from the shared cross-validated probe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from auditor.checks.base import Check, CheckResult, Requirement

METHOD = "out-of-fold predictions of a logistic regression on the clip vectors (stratified {folds}-fold)"


class EvaluationForecast(Check):
    name = "evaluation"
    requires = frozenset({Requirement.TWO_CLASSES})

    @dataclass(frozen=True, kw_only=True)
    class Params:
        probe_folds: int = 5  # the shared probe's folds: keep tightness's value so the probe is fitted once
        top_confusions: int = 10  # confused pairs listed, most frequent first

    def run(self, ctx) -> CheckResult:
        result = self.result()
        probe = ctx.probe(self.params.probe_folds)
        if probe is None:
            result.skipped = "needs two classes with at least two clips each"
            return result
        result.sections["evaluation"] = forecast(probe, self.params.top_confusions)
        excluded = sorted(set(ctx.classes) - set(probe.labels))
        result.sections["evaluation"]["excluded_classes"] = excluded
        for i, predicted in zip(probe.positions, probe.predicted):
            result.clips[ctx.clip_ids[i]] = {"probe_predicted": predicted}
        return result


def forecast(probe, top: int) -> dict[str, Any]:
    """What a fine-tuned model's evaluation may look like, at best as good as a linear probe on frozen features."""
    from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_fscore_support

    labels, y, predicted = probe.labels, probe.truth, probe.predicted
    truth = (y[:, None] == np.array(labels, dtype=object)[None, :]).astype(int)
    ap = [float(average_precision_score(truth[:, k], probe.probabilities[:, k])) for k in range(len(labels))]
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted, labels=labels, average=None, zero_division=0
    )
    per_class = [
        {
            "label": label,
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "average_precision": ap[k],
            "support": int(support[k]),
        }
        for k, label in enumerate(labels)
    ]
    counts = confusion_matrix(y, predicted, labels=labels)
    averages = {}
    for average in ("macro", "weighted", "micro"):
        p, r, f, _ = precision_recall_fscore_support(y, predicted, labels=labels, average=average, zero_division=0)
        averages[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    averages["macro"]["average_precision"] = float(np.mean(ap))
    averages["weighted"]["average_precision"] = float(np.average(ap, weights=support))
    averages["micro"]["average_precision"] = float(average_precision_score(truth.ravel(), probe.probabilities.ravel()))
    return {
        "method": METHOD.format(folds=probe.folds),
        "clips": int(len(y)),
        "accuracy": float(np.mean(probe.correct)),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(labels), "counts": counts.tolist()},
        "averages": averages,
        "top_confusions": top_confusions(labels, counts, top),
    }


def top_confusions(labels: list[str], counts: np.ndarray, top: int) -> list[dict[str, Any]]:
    """Off-diagonal cells, largest first: (true, predicted, count, share of the true class)."""
    support = counts.sum(axis=1)
    cells = [(int(counts[a, b]), a, b) for a in range(len(labels)) for b in range(len(labels)) if a != b]
    cells = sorted((c for c in cells if c[0] > 0), key=lambda c: (-c[0], labels[c[1]], labels[c[2]]))[:top]
    return [
        {"true": labels[a], "predicted": labels[b], "count": n, "share": n / max(int(support[a]), 1)}
        for n, a, b in cells
    ]
