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
        crop_margin_spread: float = 1.0  # or: the clip is nearest another class, its best crop nearest its own by
        # this many of the class's spreads

    def run(self, ctx) -> CheckResult:
        result = self.result()
        for i, parts in ctx.each_with_parts("crops", "timeline"):
            self._clip(ctx, i, parts["crops"], parts["timeline"], result)
        return result

    def _clip(self, ctx, i: int, crops: dict, timeline: dict, result: CheckResult) -> None:
        clip = ctx.clips.iloc[i]
        prototype = ctx.loo_prototypes[i]
        middle = (clip[S.START] + clip[S.END]) / 2
        full = float(timeline.vectors[np.argmin(np.abs(timeline.where - middle))] @ prototype)
        scores = crops.vectors @ prototype
        best = int(np.argmax(scores))
        box = [round(float(v), 3) for v in crops.where[best]]
        gain = float(scores[best]) - full
        result.clips[ctx.clip_ids[i]] = {"best_box": box, "crop_gain": round(gain, 4)}
        tight = ctx.nearest_class(i, crops.vectors[best])
        scene = None if gain >= self.params.gain else self._subject_in_other_scene(ctx, i, crops.vectors[best], tight)
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
                    confidence=clamp(gain / (3 * self.params.gain)),
                    action=f"crop row {clip[S.ROW]} to the box {box} (x0, y0, x1, y1 as shares of the frame), "
                    "or replace it with a closer shot",
                    suggestion={"box": box, "tight_part_class": tight},
                )
            )

    def _subject_in_other_scene(self, ctx, i: int, crop: np.ndarray, tight: str) -> str | None:
        """The class the whole clip looks like, when its best crop looks like its own class instead; else None."""
        whole = ctx.nearest_class(i, ctx.vectors[i])
        if tight != ctx.labels[i] or whole == ctx.labels[i]:
            return None
        other = ctx.centroids[ctx.classes.index(whole)]
        margin = float(crop @ ctx.loo_prototypes[i]) - float(crop @ other)
        return whole if margin >= self.params.crop_margin_spread * float(ctx.class_spreads[ctx.codes[i]]) else None
