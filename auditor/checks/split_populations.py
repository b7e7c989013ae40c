"""Split populations: do the evaluation splits come from the training split's population (AutoML's guidance)?

Per split: its label distribution, the classes it lacks, the total-variation distance of its label mix from the
training split's, and an embedding-shift score: the cross-validated AUC of a classifier telling its clips from
training clips, folds grouped by source video and samples weighted so both splits have the same label mix (so
the score measures footage, not label counts). 0.5 is one population; near 1.0 is another.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from auditor.checks.base import Check, CheckResult, Requirement
from auditor.checks.duplicates import TRAIN_SPLITS
from taxonomy_core import schema as S
from taxonomy_core.findings import Evidence, Finding, clamp

MAX_CLIPS = 20_000  # per comparison, a seeded sample above this


class SplitPopulations(Check):
    name = "splits"
    requires = frozenset({Requirement.SPLITS})

    @dataclass(frozen=True, kw_only=True)
    class Params:
        max_label_distance: float = 0.25  # total-variation distance of a split's label mix from training's
        max_auc: float = 0.8  # a split classifier this good (label mix evened out) means another population
        min_clips: int = 10  # a split smaller than this gets counts but no shift score
        folds: int = 5  # cross-validation folds of the split classifier (grouped by source video)

    def run(self, ctx) -> CheckResult:
        p = self.params
        result = self.result()
        split = ctx.clips[S.SPLIT].fillna("").to_numpy(dtype=object)
        names = sorted({s for s in split if s})
        reference = training_split(split, names)
        distribution = {s: dict(sorted(Counter(ctx.labels[split == s]).items())) for s in names}
        missing = {s: sorted(set(ctx.classes) - set(distribution[s])) for s in names}
        comparisons = []
        for other in (s for s in names if s != reference):
            record = compare(ctx, split, reference, other, p)
            comparisons.append(record)
            finding = mismatch(ctx, record, distribution, p)
            if finding is not None:
                result.findings.append(finding)
        result.sections["splits"] = {
            "reference": reference,
            "distribution": distribution,
            "unsplit": int(sum(1 for s in split if not s)),
            "missing": missing,
            "comparisons": comparisons,
        }
        return result


def training_split(split: np.ndarray, names: list[str]) -> str:
    """The split the others are compared with: a train split, else the largest that is not an evaluation split."""
    trains = [s for s in names if s.lower() in TRAIN_SPLITS]
    if trains:
        return trains[0]
    sizes = Counter(split)
    return max(names, key=lambda s: (s.lower() not in S.EVAL_SPLITS, sizes[s], s))


def compare(ctx, split: np.ndarray, reference: str, other: str, p) -> dict[str, Any]:
    a, b = Counter(ctx.labels[split == reference]), Counter(ctx.labels[split == other])
    shares_a = {k: v / sum(a.values()) for k, v in a.items()}
    shares_b = {k: v / sum(b.values()) for k, v in b.items()}
    distance = 0.5 * sum(abs(shares_a.get(k, 0.0) - shares_b.get(k, 0.0)) for k in set(a) | set(b))
    record = {
        "split": other,
        "reference": reference,
        "clips": int(sum(b.values())),
        "label_distance": float(distance),
        "missing_from_split": sorted(set(a) - set(b)),
        "missing_from_reference": sorted(set(b) - set(a)),
        "auc": None,
        "unlike_reference": [],
    }
    if min(sum(a.values()), sum(b.values())) >= p.min_clips:
        record.update(shift(ctx, split, reference, other, sorted(set(a) & set(b)), p))
    return record


def shift(ctx, split: np.ndarray, reference: str, other: str, shared: list[str], p) -> dict[str, Any]:
    """Cross-validated AUC of reference-vs-other on the shared classes, label mix evened out by weights."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

    idx = np.flatnonzero(np.isin(split, [reference, other]) & np.isin(ctx.labels, shared))
    if len(idx) > MAX_CLIPS:
        idx = np.sort(np.random.default_rng(ctx.config.seed).choice(idx, MAX_CLIPS, replace=False))
    y = (split[idx] == other).astype(int)
    groups = ctx.clips[S.VIDEO].to_numpy(dtype=object)[idx]
    videos = min(len(set(groups[y == 0])), len(set(groups[y == 1])))
    folds = min(p.folds, videos)
    if folds < 2:
        return {}
    weights = balance_weights(ctx.labels[idx], y)
    cv = StratifiedGroupKFold(folds, shuffle=True, random_state=ctx.config.seed)
    model = LogisticRegression(C=1.0, max_iter=500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_predict(
            model,
            ctx.vectors[idx],
            y,
            groups=groups,
            cv=cv,
            method="decision_function",
            params={"sample_weight": weights},
        )
    auc = float(roc_auc_score(y, scores, sample_weight=weights))
    unlike = idx[y == 1][np.argsort(-scores[y == 1])][:10]
    return {"auc": auc, "folds": folds, "unlike_reference": [int(ctx.rows[i]) for i in unlike]}


def balance_weights(labels: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Weights giving both sides the pooled label mix and equal total weight."""
    pooled = Counter(labels)
    weights = np.empty(len(labels))
    for s in (0, 1):
        here = side == s
        counts = Counter(labels[here])
        weights[here] = [pooled[label] / len(labels) / counts[label] for label in labels[here]]
    return weights * len(labels) / weights.sum()


def mismatch(ctx, record: dict[str, Any], distribution: dict, p) -> Finding | None:
    """One finding per split that differs from the training split: lacking classes, label mix or footage."""
    other, reference = record["split"], record["reference"]
    reasons, confidence = [], 0.0
    lacking, absent = record["missing_from_reference"], record["missing_from_split"]
    if lacking:
        reasons.append(
            f"{len(lacking)} of its classes have no {reference!r} clips ({_names(lacking)}): nothing to learn"
        )
        confidence = 1.0
    if absent:
        reasons.append(f"it has no clips of {len(absent)} class(es) ({_names(absent)}), which it cannot evaluate")
        confidence = 1.0
    if record["label_distance"] > p.max_label_distance:
        reasons.append(f"its label mix is {record['label_distance']:.0%} (total variation) away from {reference!r}'s")
        over = (record["label_distance"] - p.max_label_distance) / (2 * (1 - p.max_label_distance))
        confidence = max(confidence, clamp(0.5 + over))
    shifted = record["auc"] is not None and record["auc"] > p.max_auc
    if shifted:
        reasons.append(
            f"a classifier tells its clips from {reference!r} clips with AUC {record['auc']:.2f} at the same label "
            "mix: it is filmed differently"
        )
        confidence = max(confidence, clamp(0.5 + (record["auc"] - p.max_auc) / (2 * (1 - p.max_auc))))
    if not reasons:
        return None
    unlike = record["unlike_reference"] if shifted else []
    return Finding(
        "split_mismatch",
        "error" if lacking else "warning",
        f"split {other!r} differs from {reference!r}: " + "; ".join(reasons),
        labels=tuple(lacking + absent or sorted(distribution[other])),
        evidence=tuple(Evidence(r, f"unlike_{reference}") for r in unlike),
        confidence=confidence,
        action=f"re-split by source video, stratified by label, so {other!r} is drawn from the same footage "
        f"and classes as {reference!r}",
        suggestion={
            "compare": [reference, other],
            "missing_from_split": absent,
            "missing_from_reference": lacking,
            "resplit": "by source video, stratified by label",
        },
    )


def _names(labels: list[str]) -> str:
    return ", ".join(map(repr, labels[:8])) + (" …" if len(labels) > 8 else "")
