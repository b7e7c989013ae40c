"""Copies of the same footage: leaks across splits (one finding per group), repeats within a split, and
source videos cut into several splits (one finding per video, which absorbs its segments' pairs)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from auditor.checks.base import Check, CheckResult
from taxonomy_core import schema as S
from taxonomy_core.edits import Edit
from taxonomy_core.findings import Evidence, Finding, clamp

TRAIN_SPLITS = ("train", "training")


class Duplicates(Check):
    name = "duplicates"

    @dataclass(frozen=True, kw_only=True)
    class Params:
        similarity: float = 0.95  # cosine above which two clips are the same footage

    def run(self, ctx) -> CheckResult:
        result = self.result()
        pairs = ctx.copy_pairs(self.params.similarity)
        split = ctx.clips[S.SPLIT].fillna("").to_numpy(dtype=object)
        video = ctx.clips[S.VIDEO].to_numpy(dtype=object)
        split_videos = {v for v, group in ctx.clips.groupby(S.VIDEO) if group[S.SPLIT].fillna("").nunique() > 1}
        cross = [
            (i, j, s) for i, j, s in pairs if split[i] != split[j] and not _same_split_video(i, j, video, split_videos)
        ]
        within = [(i, j, s) for i, j, s in pairs if split[i] == split[j]]
        for group in components(len(ctx.codes), cross):
            self._leak(ctx, group, cross, result)
        for group in components(len(ctx.codes), within):
            result.findings.append(repeats(ctx, group, within, self.params.similarity))
        for name in sorted(split_videos):
            self._video_in_splits(ctx, name, result)
        return result

    def _leak(self, ctx, members: list[int], pairs, result: CheckResult) -> None:
        """One group of copies across splits: the evaluation-side copies are accused, the training side is evidence."""
        split = ctx.clips[S.SPLIT].fillna("").to_numpy(dtype=object)
        keep = _training_side(split[members])
        accused = [i for i in members if split[i] != keep]
        kept = [i for i in members if split[i] == keep]
        best = _best_match(accused, kept, pairs)
        rows, labels = ctx.rows, ctx.labels
        evidence = tuple(Evidence(int(rows[j]), "train_original", round(s, 4)) for j, s in _unique_kept(best))
        top = max(s for _, s in best.values())
        frames = max((ctx.frame_matches.get(tuple(sorted((i, j))), 0.0) for i, (j, _) in best.items()), default=0.0)
        seen = f"frames match {frames:.0%}, cosine up to {top:.3f}" if frames else f"cosine up to {top:.3f}"
        drops = ", ".join(f"{split[i]} row {rows[i]}" for i in accused)
        originals = ", ".join(sorted({f"{keep} row {rows[j]}" for j, _ in best.values()}))
        result.findings.append(
            Finding(
                "split_leak",
                "error",
                f"{len(accused)} clip(s) outside {keep!r} show footage of {len(kept)} {keep!r} clip(s) "
                f"({seen}): the copies inflate evaluation",
                rows=tuple(int(rows[i]) for i in accused),
                labels=tuple(sorted({labels[i] for i in members})),
                videos=tuple(sorted({ctx.clips[S.VIDEO].iloc[i] for i in members})),
                evidence=evidence,
                confidence=clamp(max(frames, 0.6 + 4 * (top - 0.9))),
                action=f"drop {drops}: copies of {originals}",
                suggestion={"drop": [int(rows[i]) for i in accused], "keep": [int(rows[j]) for j in kept]},
            )
        )
        result.edits += [
            Edit(int(rows[i]), "drop", f"copy of {keep} row {rows[best[i][0]]}", "split_leak") for i in accused
        ]

    def _video_in_splits(self, ctx, video: str, result: CheckResult) -> None:
        """AutoML splits by video: a source cut into several splits leaks scene and subject; move the minority."""
        group = ctx.clips[ctx.clips[S.VIDEO] == video]
        counts = group[S.SPLIT].fillna("").value_counts()
        majority = counts.index[0]
        moving = group[group[S.SPLIT].fillna("") != majority]
        staying = group[group[S.SPLIT].fillna("") == majority]
        rows = [int(r) for r in moving[S.ROW]]
        spread = ", ".join(f"{s or 'none'}: {n}" for s, n in counts.items())
        result.findings.append(
            Finding(
                "split_leak",
                "error",
                f"{video} has segments in several splits ({spread}): splits must be made by source video",
                rows=tuple(rows),
                labels=tuple(sorted(set(group[S.LABEL]))),
                videos=(video,),
                evidence=tuple(Evidence(int(r), "same_source_video") for r in staying[S.ROW]),
                confidence=1.0,
                action=f"move row(s) {', '.join(map(str, rows))} to {majority!r}, where the rest of this video is",
                suggestion={"split": majority, "rows": rows},
            )
        )
        result.edits += [Edit(r, "split", majority, "split_leak") for r in rows]


def components(n: int, pairs: list[tuple[int, int, float]]) -> list[list[int]]:
    """Connected groups of clips joined by pairs, each sorted, in order of their first member."""
    if not pairs:
        return []
    a, b = np.array([(i, j) for i, j, _ in pairs]).T
    _, label = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    groups = defaultdict(list)
    for i in sorted(set(a) | set(b)):
        groups[label[i]].append(int(i))
    return sorted(groups.values())


def repeats(ctx, members: list[int], pairs, threshold: float) -> Finding:
    """Near-identical clips within one split: the first row is kept, the repeats are named."""
    rows = sorted(int(ctx.rows[i]) for i in members)
    top = max(s for i, j, s in pairs if i in members)
    keep, extra = rows[0], rows[1:]
    labels = sorted(set(ctx.labels[members]))
    return Finding(
        "near_duplicate",
        "warning",
        f"rows {rows} ({', '.join(labels)}) are near-identical (cosine up to {top:.3f}) within one split",
        rows=tuple(extra),
        labels=tuple(labels),
        videos=tuple(sorted(set(ctx.clips[S.VIDEO].iloc[members]))),
        evidence=(Evidence(keep, "kept_copy", round(top, 4)),),
        confidence=clamp(0.5 + (top - threshold) / max(1e-6, 1 - threshold) / 2),
        action=f"keep row {keep} and drop row(s) {', '.join(map(str, extra))}, unless the repeats are intended",
        suggestion={"keep": keep, "drop": extra},
    )


def _same_split_video(i: int, j: int, video, split_videos: set[str]) -> bool:
    """A pair inside one source video that spans splits: its video's finding already covers it."""
    return video[i] == video[j] and video[i] in split_videos


def _training_side(splits) -> str:
    present = list(dict.fromkeys(splits))
    trains = [s for s in present if str(s).lower() in TRAIN_SPLITS]
    if trains:
        return trains[0]
    return max(present, key=lambda s: (str(s).lower() not in S.EVAL_SPLITS, list(splits).count(s)))


def _best_match(accused: list[int], kept: list[int], pairs) -> dict[int, tuple[int, float]]:
    """Each accused clip's most similar clip on the kept side (the group is connected, so one exists nearby)."""
    kept_set, best = set(kept), {}
    for i, j, s in pairs:
        for a, b in ((i, j), (j, i)):
            if a in accused and b in kept_set and s > best.get(a, (None, -1.0))[1]:
                best[a] = (b, s)
    for a in accused:  # linked to the kept side only through another accused copy
        best.setdefault(a, max((best[x] for x in best), key=lambda m: m[1]))
    return best


def _unique_kept(best: dict[int, tuple[int, float]]) -> list[tuple[int, float]]:
    top: dict[int, float] = {}
    for j, s in best.values():
        top[j] = max(top.get(j, -1.0), s)
    return sorted(top.items())
