"""Diversity: a class drawn from one source video, one camera set-up, or near-identical clips."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from auditor.checks.base import Check, CheckResult
from taxonomy_core import schema as S
from taxonomy_core.findings import Evidence, Finding, clamp

SETUP = [S.WIDTH, S.HEIGHT, S.FPS, S.CODEC]


class Diversity(Check):
    name = "diversity"

    @dataclass(frozen=True, kw_only=True)
    class Params:
        single_video_share: float = 0.8  # a class mostly cut from one source video
        low_diversity: float = 0.05  # mean pairwise cosine distance under which clips are near-identical

    def run(self, ctx) -> CheckResult:
        cfg = self.params
        result = self.result()
        setups_in_dataset = ctx.clips[SETUP].drop_duplicates().shape[0]
        for c, label in enumerate(ctx.classes):
            members = ctx.members(label)
            n = len(members)
            diversity = mean_pairwise_distance(ctx.class_sums[c], n)
            table = ctx.clips.iloc[members]
            top_video_share = table[S.VIDEO].value_counts(normalize=True).iloc[0]
            setups = table[SETUP].drop_duplicates().shape[0]
            result.classes[label] = {
                "diversity": diversity,
                "source_videos": int(table[S.VIDEO].nunique()),
                "top_video_share": float(top_video_share),
            }
            reasons = []
            top_rows = table[table[S.VIDEO] == table[S.VIDEO].value_counts().index[0]][S.ROW].tolist()
            if n >= 3 and top_video_share >= cfg.single_video_share:
                reasons.append(
                    f"{top_video_share:.0%} of its clips come from one source video "
                    f"({table[S.VIDEO].value_counts().index[0]})"
                )
            if n >= 3 and diversity is not None and diversity < cfg.low_diversity:
                reasons.append(f"its clips are nearly identical (mean pairwise cosine distance {diversity:.3f})")
            if n >= 5 and setups == 1 and setups_in_dataset > 1:
                reasons.append(
                    "every clip shares one camera set-up (resolution, frame rate, codec) that other "
                    "classes do not all share"
                )
            if reasons:
                result.findings.append(
                    Finding(
                        "low_diversity",
                        "warning",
                        f"class {label!r}: " + "; ".join(reasons) + ": the model may learn the setting, not the action",
                        evidence=tuple(Evidence(int(r), "same_source_video") for r in top_rows[:20]),
                        labels=(label,),
                        confidence=clamp(len(reasons) / 2),
                        action=f"add {label!r} clips from other source videos, scenes and cameras",
                    )
                )
        return result


def mean_pairwise_distance(class_sum: np.ndarray, n: int) -> float | None:
    """1 - mean cosine over distinct pairs of unit vectors, from their sum alone: O(n)."""
    if n < 2:
        return None
    mean_cos = (float(class_sum @ class_sum) - n) / (n * (n - 1))
    return 1.0 - mean_cos
