"""Likely mislabels (far from its class, inside another's neighbourhood) and outliers (far from all)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from auditor.checks.base import Check, CheckResult, Requirement
from taxonomy_core import schema as S
from taxonomy_core.edits import Edit
from taxonomy_core.findings import Evidence, Finding, clamp


class Mislabels(Check):
    name = "mislabels"
    requires = frozenset({Requirement.TWO_CLASSES})

    @dataclass(frozen=True, kw_only=True)
    class Params:
        knn_fraction: float = 0.6  # share of similarity-weighted neighbour votes for another class
        margin: float = 0.02  # and closer to that class's centroid than to its own by this much (cosine) ...
        margin_spread: float = 1.0  # ... and by this many of its own class's spreads (robust std of the cosines
        # to the class centroid): a broad class's atypical members need more than a tight class's
        probe_agrees: bool = True  # and the cross-validated probe predicts that class too (where it saw the clip)
        outlier_z: float = 3.0  # robust z below which a clip is far from its class
        identical_similarity: float = 0.95  # a near-identical clip with another label is evidence too
        min_target_count: int = 10  # never suggest a class under AutoML's minimum
        max_target_suspect_share: float = 0.5  # nor one whose clips are mostly suspects themselves

    def run(self, ctx) -> CheckResult:
        p = self.params
        result = self.result()
        tops, shares = neighbour_votes(ctx)
        sims, own = ctx.centroid_similarity, ctx.own_similarity
        z = robust_z(ctx)
        typical_nearest = np.median(ctx.neighbours[1][:, 0])
        suspects: dict[int, int | None] = {}  # position -> suggested class code (None: no healthy target)
        spread = ctx.class_spreads
        margin = np.maximum(p.margin, p.margin_spread * spread[ctx.codes])
        probe = probe_predictions(ctx) if p.probe_agrees else None
        tally = np.zeros((len(ctx.classes), 3), dtype=np.int64)  # per class: votes, + margin, + probe
        for i in np.flatnonzero((tops != ctx.codes) & (shares >= p.knn_fraction)).tolist():
            top = int(tops[i])
            tally[ctx.codes[i], 0] += 1
            if sims[i, top] <= own[i] + margin[i]:
                continue
            tally[ctx.codes[i], 1] += 1
            if probe is not None and probe[i] >= 0 and probe[i] != top:
                continue
            tally[ctx.codes[i], 2] += 1
            suspects[i] = top
        result.sections["mislabel_calibration"] = calibration(ctx, spread, tally, p, probe is not None)
        twins = identical_other_label(ctx, p.identical_similarity)
        for i, partners in twins.items():
            suspects.setdefault(i, int(ctx.codes[partners[0][0]]))
        healthy = healthy_classes(ctx, set(suspects), p)
        for i, code in sorted(suspects.items()):
            target = code if code in healthy else None
            finding = mislabel(ctx, i, code, target, vote_share(ctx, i, code), twins.get(i, []))
            result.findings.append(finding)
            if target is not None:
                result.edits.append(Edit(int(ctx.rows[i]), "relabel", ctx.classes[target], finding.kind))
        for i in np.flatnonzero((z < -p.outlier_z) & (ctx.neighbours[1][:, 0] < typical_nearest)):
            if int(i) not in suspects:
                result.findings.append(outlier(ctx, int(i), float(z[i]), p.outlier_z))
        return result


def identical_other_label(ctx, similarity: float) -> dict[int, list[tuple[int, float]]]:
    """Near-identical clips labelled differently: the one less typical of its own class is the suspect."""
    twins: dict[int, list[tuple[int, float]]] = {}
    for i, j, s in ctx.copy_pairs(similarity):
        if ctx.labels[i] != ctx.labels[j]:
            suspect, other = (i, j) if ctx.own_similarity[i] < ctx.own_similarity[j] else (j, i)
            twins.setdefault(suspect, []).append((other, s))
    return {i: sorted(found, key=lambda x: -x[1]) for i, found in twins.items()}


def probe_predictions(ctx) -> np.ndarray | None:
    """[N] the probe's held-out class code per clip (-1 for a class it could not learn), or None."""
    probe = ctx.probe()
    if probe is None:
        return None
    codes = {label: i for i, label in enumerate(ctx.classes)}
    lookup = np.array([codes.get(label, -1) for label in probe.labels], dtype=np.int64)
    where, probabilities = ctx.probe_everywhere()
    out = np.full(len(ctx.codes), -1, dtype=np.int64)
    seen = where >= 0
    out[seen] = lookup[np.argmax(probabilities[where[seen]], axis=1)]
    return out


def calibration(ctx, spread: np.ndarray, tally: np.ndarray, p, probed: bool) -> dict:
    """How each signal narrowed the suspects, per class: the report shows why a clip was or was not accused."""
    return {
        "rule": (
            f"neighbour votes >= {p.knn_fraction} for another class, closer to its centroid by more than "
            f"max({p.margin}, {p.margin_spread} x the class's spread)"
            + (", and the cross-validated probe predicts it" if probed else " (no probe: too few clips)")
        ),
        "classes": {
            label: {
                "spread": round(float(spread[c]), 4),
                "margin": round(float(max(p.margin, p.margin_spread * spread[c])), 4),
                "by_votes": int(tally[c, 0]),
                "and_margin": int(tally[c, 1]),
                "and_probe": int(tally[c, 2]),
            }
            for c, label in enumerate(ctx.classes)
        },
    }


def healthy_classes(ctx, suspects: set[int], p) -> set[int]:
    """Classes a clip may be moved into: big enough, and not made mostly of suspects."""
    suspect_counts = np.bincount(ctx.codes[sorted(suspects)], minlength=len(ctx.classes)) if suspects else 0
    share = suspect_counts / np.maximum(ctx.counts, 1)
    ok = (ctx.counts >= p.min_target_count) & (share <= p.max_target_suspect_share)
    return set(np.flatnonzero(ok).tolist())


VOTE_BLOCK = 1 << 15  # clips a block: [block, C] float64 votes (a whole [N, C] is 5.6 GB at 10^6 x 700 classes)


def neighbour_votes(ctx) -> tuple[np.ndarray, np.ndarray]:
    """Each clip's most-voted class among its k nearest neighbours (weighted by similarity) and that class's share
    of the votes, a block of clips at a time."""
    idx, sim = ctx.neighbours
    tops, shares = np.zeros(len(idx), np.int64), np.zeros(len(idx))
    for start in range(0, len(idx), VOTE_BLOCK):
        votes = _votes(ctx, idx[start : start + VOTE_BLOCK], sim[start : start + VOTE_BLOCK])
        tops[start : start + len(votes)] = top = votes.argmax(axis=1)
        shares[start : start + len(votes)] = votes[np.arange(len(votes)), top]
    return tops, shares


def vote_share(ctx, i: int, code: int) -> float:
    """Clip i's share of neighbour votes for one class (as `neighbour_votes` weighs them)."""
    idx, sim = ctx.neighbours
    return float(_votes(ctx, idx[i : i + 1], sim[i : i + 1])[0, code])


def _votes(ctx, idx: np.ndarray, sim: np.ndarray) -> np.ndarray:
    """[n, C] share of each clip's neighbours per class, weighted by similarity."""
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


def mislabel(ctx, i: int, code: int, target: int | None, fraction: float, twins: list[tuple[int, float]]) -> Finding:
    """One finding per accused clip, with every piece of evidence: neighbour votes and near-identical twins."""
    clip = ctx.clips.iloc[i]
    row, label, suggested = int(clip[S.ROW]), clip[S.LABEL], ctx.classes[code]
    idx, sim = ctx.neighbours
    voters = [(int(j), float(s)) for j, s in zip(idx[i], sim[i]) if ctx.codes[j] == code][:5]
    evidence = tuple(Evidence(int(ctx.rows[j]), "near_identical_other_label", round(s, 4)) for j, s in twins)
    evidence += tuple(Evidence(int(ctx.rows[j]), "neighbour", round(s, 4)) for j, s in voters)
    reasons = []
    if fraction >= 0.5:
        reasons.append(f"{fraction:.0%} of its nearest neighbours are {suggested!r}")
    if twins:
        reasons.append(
            f"it is near-identical to row {ctx.rows[twins[0][0]]} labelled {suggested!r} (cosine {twins[0][1]:.3f})"
        )
    confidence = clamp(max(fraction, 0.5 + 5 * (twins[0][1] - 0.95) if twins else 0.0))
    if target is None:
        action = (
            f"check row {row}: it looks like {suggested!r}, but that class is too small or unreliable to move it into"
        )
    else:
        action = f"relabel row {row} from {label!r} to {suggested!r}"
    return Finding(
        "likely_mislabel",
        "warning",
        f"row {row} is labelled {label!r} but " + " and ".join(reasons or [f"it sits among {suggested!r} clips"]),
        rows=(row,),
        labels=(label, suggested),
        videos=(clip[S.VIDEO],),
        evidence=evidence,
        confidence=confidence,
        action=action,
        suggestion={"label": suggested} if target is not None else None,
    )


def outlier(ctx, i: int, z: float, threshold: float) -> Finding:
    clip = ctx.clips.iloc[i]
    row = int(clip[S.ROW])
    return Finding(
        "outlier",
        "warning",
        f"row {row} ({clip[S.LABEL]!r}) is far from its class (robust z {z:.1f}) and from every other",
        rows=(row,),
        labels=(clip[S.LABEL],),
        videos=(clip[S.VIDEO],),
        confidence=clamp(0.5 + (-z - threshold) / (2 * threshold)),
        action=f"look at row {row}: wrong footage, a broken file or bounds that miss the action",
    )
