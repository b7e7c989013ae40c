"""Likely mislabels (far from its class, inside another's neighbourhood) and outliers (far from all)."""

from __future__ import annotations

import numpy as np

from auditor.checks import CheckResult
from taxonomy_core import schema as S
from taxonomy_core.findings import Finding


class Mislabels:
    name = "mislabels"

    def run(self, ctx) -> CheckResult:
        cfg = ctx.config
        result = CheckResult(self.name)
        if len(ctx.classes) < 2:
            result.skipped = "needs at least two classes"
            return result
        votes = neighbour_votes(ctx)
        sims = ctx.centroid_similarity
        own = ctx.own_similarity
        z = robust_z(ctx)
        for i in range(len(own)):
            top = int(np.argmax(votes[i]))
            fraction = float(votes[i, top])
            if (
                top != ctx.codes[i]
                and fraction >= cfg.mislabel_knn_fraction
                and sims[i, top] > own[i] + cfg.mislabel_margin
            ):
                result.findings.append(mislabel(ctx, i, top, fraction, float(sims[i, top] - own[i])))
            elif z[i] < -cfg.outlier_z and ctx.neighbours[1][i, 0] < np.median(ctx.neighbours[1][:, 0]):
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
