"""Structure: the UMAP + HDBSCAN map, classes that should be split, pairs that should be merged or sharpened."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from auditor.checks.base import Check, CheckResult
from auditor.projection import cluster, project
from taxonomy_core import schema as S
from taxonomy_core.findings import Finding, clamp

SPLIT_SAMPLE = 5_000  # a larger class is split by k-means fitted on, and scored on, this many of its clips


class Structure(Check):
    name = "structure"

    @dataclass(frozen=True, kw_only=True)
    class Params:
        split_silhouette: float = 0.25  # two sub-groups at least this well separated suggest a split
        split_min_share: float = 0.25  # ... each holding at least this share of the class
        confusable_fraction: float = 0.3  # neighbour share of another class that makes two classes confusable
        umap_max_fit: int = 100_000  # UMAP lays out a seeded sample this large; the rest go beside their neighbours
        hdbscan_min_cluster: int = 5

    def run(self, ctx) -> CheckResult:
        cfg = self.params
        result = self.result()
        points = project(ctx.vectors, ctx.config.seed, cfg.umap_max_fit, neighbours=ctx.neighbours)
        clusters = cluster(points, cfg.hdbscan_min_cluster)
        for i, (xy, c) in enumerate(zip(points, clusters)):
            result.clips[ctx.clip_ids[i]] = {
                "umap": [round(float(xy[0]), 4), round(float(xy[1]), 4)],
                "cluster": int(c),
            }
        for label in ctx.classes:
            members = ctx.members(label)
            found = set(clusters[members]) - {-1}
            result.classes[label] = {"clusters": sorted(int(c) for c in found)}
            finding = split_candidate(ctx, label, members, cfg)
            if finding:
                result.findings.append(finding)
        result.findings += confusable_pairs(ctx, cfg)
        return result


def split_candidate(ctx, label: str, members: np.ndarray, cfg) -> Finding | None:
    """Two well separated sub-groups, each a real share of the class: maybe two classes under one name."""
    if len(members) < 6:
        return None
    x = ctx.vectors[members]
    rng = np.random.default_rng(ctx.config.seed)
    kmeans = KMeans(2, n_init=4, random_state=ctx.config.seed)
    if len(x) <= SPLIT_SAMPLE:
        parts = kmeans.fit_predict(x)
    else:
        parts = kmeans.fit(x[np.sort(rng.choice(len(x), SPLIT_SAMPLE, replace=False))]).predict(x)
    shares = np.bincount(parts, minlength=2) / len(parts)
    if shares.min() < cfg.split_min_share:
        return None
    sample = min(len(x), SPLIT_SAMPLE)  # silhouette is O(n^2): 20k clips of a class at 10^6 took minutes each
    score = float(silhouette_score(x, parts, metric="cosine", sample_size=sample, random_state=ctx.config.seed))
    if score < cfg.split_silhouette:
        return None
    rows = ctx.clips[S.ROW].to_numpy()[members]
    groups = [sorted(int(r) for r in rows[parts == p]) for p in (0, 1)]
    return Finding(
        "split_candidate",
        "info",
        f"class {label!r} falls into two distinct groups ({len(groups[0])} and {len(groups[1])} "
        f"clips, silhouette {score:.2f}): "
        "consider two classes, or check that both are what the label means",
        labels=(label,),
        confidence=clamp(score),
        action=f"look at both groups of {label!r}: split the class if they are different actions",
        suggestion={"groups": groups},
    )


def confusable_pairs(ctx, cfg) -> list[Finding]:
    """Classes whose clips sit in each other's neighbourhoods."""
    n_classes = len(ctx.classes)
    share = np.zeros((n_classes, n_classes))
    np.add.at(share, (np.repeat(ctx.codes, ctx.neighbour_labels.shape[1]), ctx.neighbour_labels.ravel()), 1.0)
    share /= np.maximum(share.sum(axis=1, keepdims=True), 1)
    findings = []
    for a in range(n_classes):
        for b in range(a + 1, n_classes):
            ab, ba = share[a, b], share[b, a]
            if max(ab, ba) >= cfg.confusable_fraction and min(ab, ba) >= cfg.confusable_fraction / 2:
                la, lb = ctx.classes[a], ctx.classes[b]
                findings.append(
                    Finding(
                        "confusable_classes",
                        "warning",
                        f"{la!r} and {lb!r} are mixed: {ab:.0%} of {la!r} neighbours are {lb!r} and "
                        f"{ba:.0%} the other way: "
                        "merge them, or sharpen the definitions and relabel",
                        labels=(la, lb),
                        confidence=clamp(ab + ba),
                        action=f"merge {la!r} and {lb!r}, or write down what tells them apart and relabel",
                        suggestion={"merge": [la, lb]},
                    )
                )
    return findings
