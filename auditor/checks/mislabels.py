"""Likely mislabels (far from its class, inside another's neighbourhood) and outliers (far from all)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from auditor.checks.base import Check, CheckResult, Requirement
from taxonomy_core import schema as S
from taxonomy_core.edits import Edit
from taxonomy_core.findings import Finding


class Mislabels(Check):
    name = "mislabels"
    requires = frozenset({Requirement.TWO_CLASSES})

    @dataclass(frozen=True, kw_only=True)
    class Params:
        knn_fraction: float = 0.6  # share of similarity-weighted neighbour votes for another class
        margin: float = 0.02  # and closer to that class's centroid than to its own by this much
        outlier_z: float = 3.0  # robust z below which a clip is far from its class

    def run(self, ctx) -> CheckResult:
        p = self.params
        result = self.result()
        votes = neighbour_votes(ctx)
        sims = ctx.centroid_similarity
        own = ctx.own_similarity
        z = robust_z(ctx)
        typical_nearest = np.median(ctx.neighbours[1][:, 0])
        for i in range(len(own)):
            top = int(np.argmax(votes[i]))
            fraction = float(votes[i, top])
            if top != ctx.codes[i] and fraction >= p.knn_fraction and sims[i, top] > own[i] + p.margin:
                finding = mislabel(ctx, i, top, fraction, float(sims[i, top] - own[i]))
                result.findings.append(finding)
                result.edits.append(Edit(int(ctx.rows[i]), "relabel", ctx.classes[top], finding.kind))
            elif z[i] < -p.outlier_z and ctx.neighbours[1][i, 0] < typical_nearest:
                result.findings.append(outlier(ctx, i, float(z[i])))
        return result


def neighbour_votes(ctx) -> np.ndarray:
    """[N, C] share of each clip's k nearest neighbours per class, weighted by similarity."""
    idx, sim = ctx.neighbours
    weights = np.clip(sim, 0, None) + 1e-6
    votes = np.zeros((len(idx), len(ctx.classes)))
    np.add.at(votes, (np.repeat(np.arange(len(idx)), idx.shape[1]), ctx.codes[idx].ravel()), weights.ravel())
    return votes / votes.sum(axis=1, keepdims=True)


def robust_z(ctx) -> np.ndarray:
    """How unusually far each clip is from its own centroid, against its class (median / MAD)."""
    z = np.zeros(len(ctx.codes))
    for c in range(len(ctx.classes)):
        members = ctx.codes == c
        if members.sum() < 5:
            continue
        values = ctx.own_similarity[members]
        mad = np.median(np.abs(values - np.median(values))) * 1.4826 + 1e-3
        z[members] = (values - np.median(values)) / mad
    return z


def mislabel(ctx, i: int, code: int, fraction: float, gain: float) -> Finding:
    clip = ctx.clips.iloc[i]
    label, suggested = clip[S.LABEL], ctx.classes[code]
    return Finding(
        "likely_mislabel",
        "warning",
        f"row {clip[S.ROW]} is labelled {label!r} but {fraction:.0%} of its neighbours are {suggested!r} "
        f"and it is closer to that class's centroid (+{gain:.3f})",
        rows=(int(clip[S.ROW]),),
        labels=(label, suggested),
        videos=(clip[S.VIDEO],),
        score=round(fraction * (1 + gain), 4),
        suggestion={"label": suggested},
    )


def outlier(ctx, i: int, z: float) -> Finding:
    clip = ctx.clips.iloc[i]
    return Finding(
        "outlier",
        "warning",
        f"row {clip[S.ROW]} ({clip[S.LABEL]!r}) is far from its class (robust z {z:.1f}) and from every other: "
        "check the footage and the segment bounds",
        rows=(int(clip[S.ROW]),),
        labels=(clip[S.LABEL],),
        videos=(clip[S.VIDEO],),
        score=round(-z, 3),
    )
