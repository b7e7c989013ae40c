"""Spatial tightness: does a crop match the class far better than the whole frame (a small subject)?

Two ways to tell, either suffices: the best crop is closer to the class than the whole frame by `gain`; or the
clip as a whole is nearest another class while its best crop is nearest its own, by at least the class's own
spread (scale-free: a small subject in an unrelated scene, which would otherwise read as a mislabel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from auditor.checks.base import Check, CheckResult, Requirement
from taxonomy_core import schema as S
from taxonomy_core.findings import Finding, clamp


class SpatialTightness(Check):
    name = "spatial"
    requires = frozenset({Requirement.COMPANIONS})

    @dataclass(frozen=True, kw_only=True)
    class Params:
        gain: float = 0.08  # a crop this much closer to the class than the whole frame: the subject is small
        crop_margin_spread: float = 2.0  # or: the clip is nearest another class and one crop leans to its own class
        # by this many of the class's spreads more than the clip's crops typically do ...
        probe_own_min: float = 0.2  # ... and the cross-validated probe still gives its own class this probability
        # (a mislabelled clip's probe is sure of the other class; a small subject keeps part of its own)

    def run(self, ctx) -> CheckResult:
        result = self.result()
        for i, parts in ctx.each_with_parts("crops", "timeline"):
            self._clip(ctx, i, parts["crops"], parts["timeline"], result)
        return result

    def _clip(self, ctx, i: int, crops: dict, timeline: dict, result: CheckResult) -> None:
        clip = ctx.clip(i)
        prototype = ctx.loo_prototype(i)
        middle = (clip[S.START] + clip[S.END]) / 2
        full = float(timeline.vectors[np.argmin(np.abs(timeline.where - middle))] @ prototype)
        scores = crops.vectors @ prototype
        best = int(np.argmax(scores))
        box = [round(float(v), 3) for v in crops.where[best]]
        gain = float(scores[best]) - full
        result.clips[ctx.clip_ids[i]] = {"best_box": box, "crop_gain": round(gain, 4)}
        found = None if gain >= self.params.gain else self._subject_in_other_scene(ctx, i, crops)
        scene, tight = None, ctx.nearest_class(i, crops.vectors[best])
        confidence = clamp(gain / (3 * self.params.gain))
        if found is not None:  # the crop leans to the clip's own class: that is the tight part's class
            scene, best, spreads = found
            box, tight = [round(float(v), 3) for v in crops.where[best]], clip[S.LABEL]
            result.clips[ctx.clip_ids[i]]["best_box"] = box
            confidence = clamp(0.4 + spreads / (10 * self.params.crop_margin_spread))
        if gain >= self.params.gain or scene:
            why = (
                f"the crop {box} matches the class much better than the whole frame ({scores[best]:.2f} vs {full:.2f})"
                if scene is None
                else f"the whole clip looks like {scene!r}, but its crop {box} looks like {clip[S.LABEL]!r}"
            )
            result.findings.append(
                Finding(
                    "spatial_looseness",
                    "warning",
                    f"row {clip[S.ROW]} ({clip[S.LABEL]!r}): {why}: the subject is small or off-centre",
                    rows=(int(clip[S.ROW]),),
                    labels=(clip[S.LABEL],),
                    videos=(clip[S.VIDEO],),
                    confidence=confidence,
                    action=f"crop row {clip[S.ROW]} to the box {box} (x0, y0, x1, y1 as shares of the frame), "
                    "or replace it with a closer shot",
                    suggestion={"box": box, "tight_part_class": tight, "by": "crop_leans" if scene else "crop_gain"},
                )
            )

    def _subject_in_other_scene(self, ctx, i: int, crops) -> tuple[str, int, float] | None:
        """(the class the whole clip looks like, the crop that stands out towards the clip's own class, by how many
        spreads), when that crop leans to the clip's own class by `crop_margin_spread` of the class's spreads more than
        the clip's crops typically do.

        Crops and clips are different views (a crop sits lower against every class centroid), so the crop is
        judged against the clip's other crops, not against the centroids' scale.
        """
        whole = ctx.nearest_class(i, ctx.vectors[i])
        if whole == ctx.labels[i] or own_probability(ctx, i) < self.params.probe_own_min:
            return None
        lean = crops.vectors @ ctx.loo_prototype(i) - crops.vectors @ ctx.centroids[ctx.classes.index(whole)]
        best = int(np.argmax(lean))
        contrast = float(lean[best] - np.median(lean))
        spread = max(float(ctx.class_spreads[ctx.codes[i]]), 1e-6)
        spreads = contrast / spread
        return (whole, best, spreads) if spreads >= self.params.crop_margin_spread else None


def own_probability(ctx, i: int) -> float:
    """The probe's held-out probability of clip i's own label (1.0 where there is no probe for its class)."""
    probe = ctx.probe()
    if probe is None or ctx.labels[i] not in probe.labels:
        return 1.0
    where, probabilities = ctx.probe_everywhere()
    return float(probabilities[where[i], probe.labels.index(ctx.labels[i])]) if where[i] >= 0 else 1.0
