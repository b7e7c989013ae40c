"""Spatial tightness: does a crop match the class far better than the whole frame (a small subject)?"""

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
        if gain >= self.params.gain:
            result.findings.append(
                Finding(
                    "spatial_looseness",
                    "warning",
                    f"row {clip[S.ROW]} ({clip[S.LABEL]!r}): the crop {box} matches the class much "
                    "better than the whole frame "
                    f"({scores[best]:.2f} vs {full:.2f}): the subject is small or off-centre",
                    rows=(int(clip[S.ROW]),),
                    labels=(clip[S.LABEL],),
                    videos=(clip[S.VIDEO],),
                    confidence=clamp(gain / (3 * self.params.gain)),
                    action=f"crop row {clip[S.ROW]} to the box {box} (x0, y0, x1, y1 as shares of the frame), "
                    "or replace it with a closer shot",
                    suggestion={"box": box},
                )
            )
