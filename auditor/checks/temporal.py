"""Temporal tightness: where in each segment is the action, and does the segment run past it?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from auditor.checks.base import Check, CheckResult, Requirement
from taxonomy_core import schema as S
from taxonomy_core.edits import Edit
from taxonomy_core.findings import Finding, clamp


class TemporalTightness(Check):
    name = "temporal"
    requires = frozenset({Requirement.COMPANIONS})

    @dataclass(frozen=True, kw_only=True)
    class Params:
        drop: float = 0.15  # a step belongs to the action while within this cosine of the best step
        core_ratio: float = 0.7  # flag segments whose action covers less than this share
        min_loose_s: float = 1.0  # ... and at least this many seconds look like something else
        shot_cut_similarity: float = 0.5  # adjacent steps less alike than this are a shot cut

    def run(self, ctx) -> CheckResult:
        result = self.result()
        for i, parts in ctx.each_with_parts("timeline"):
            self._clip(ctx, i, parts["timeline"], result)
        return result

    def _clip(self, ctx, i: int, timeline: dict, result: CheckResult) -> None:
        p, clip = self.params, ctx.clip(i)
        steps = timeline.vectors
        visual = steps @ ctx.loo_prototype(i)
        query = ctx.label_queries.get(clip[S.LABEL])
        text_space = timeline.text if timeline.text is not None else steps
        textual = text_space @ query if query is not None else None
        first, last = core_span(visual, p.drop)
        step = (clip[S.END] - clip[S.START]) / len(steps)
        core = (clip[S.START] + first * step, clip[S.START] + (last + 1) * step)
        cuts = shot_cuts(steps, timeline.where, p.shot_cut_similarity)
        result.clips[ctx.clip_ids[i]] = {
            "timeline": {
                "times": timeline.where.round(3).tolist(),
                "similarity": visual.round(4).tolist(),
                "text_similarity": textual.round(4).tolist() if textual is not None else None,
            },
            "core": [round(core[0], 2), round(core[1], 2)],
            "shot_cuts": cuts,
        }
        length = clip[S.END] - clip[S.START]
        loose = length - (core[1] - core[0])
        if (core[1] - core[0]) < p.core_ratio * length and loose >= p.min_loose_s:
            tight = ctx.nearest_class(i, unit(steps[first : last + 1].mean(axis=0)))
            cut_note = f"; shot cut(s) at {', '.join(f'{c:.1f}s' for c in cuts)}" if cuts else ""
            result.findings.append(
                Finding(
                    "temporal_looseness",
                    "warning",
                    f"row {clip[S.ROW]} ({clip[S.LABEL]!r}): the action fills {core[0]:.1f}-{core[1]:.1f}s of "
                    f"{clip[S.START]:.1f}-{clip[S.END]:.1f}s; {loose:.1f}s look like something else{cut_note}",
                    rows=(int(clip[S.ROW]),),
                    labels=(clip[S.LABEL],),
                    videos=(clip[S.VIDEO],),
                    confidence=clamp(0.5 + (loose / length - (1 - p.core_ratio)) / (2 * p.core_ratio)),
                    action=f"trim row {clip[S.ROW]} to {core[0]:.2f}-{core[1]:.2f}s",
                    suggestion={"start": round(core[0], 2), "end": round(core[1], 2), "tight_part_class": tight},
                )
            )
            result.edits.append(
                Edit(int(clip[S.ROW]), "trim", (round(core[0], 2), round(core[1], 2)), "temporal_looseness")
            )


def unit(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.linalg.norm(x)), 1e-12)


def core_span(scores: np.ndarray, drop: float) -> tuple[int, int]:
    """The longest run of steps within `drop` of the best one (single-step dips bridged)."""
    on = scores >= scores.max() - drop
    for k in range(1, len(on) - 1):
        on[k] |= on[k - 1] and on[k + 1]
    best, run_start, best_span = 0, None, (int(np.argmax(scores)),) * 2
    for k, flag in enumerate(np.append(on, False)):
        if flag and run_start is None:
            run_start = k
        elif not flag and run_start is not None:
            if k - run_start > best:
                best, best_span = k - run_start, (run_start, k - 1)
            run_start = None
    return best_span


def shot_cuts(steps: np.ndarray, times: np.ndarray, threshold: float) -> list[float]:
    """Times between consecutive timeline steps whose pictures barely resemble each other."""
    if len(steps) < 2:
        return []
    adjacent = np.einsum("td,td->t", steps[1:], steps[:-1])
    return [round(float((times[k] + times[k + 1]) / 2), 2) for k in np.flatnonzero(adjacent < threshold)]
