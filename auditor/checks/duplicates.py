"""Near-duplicates (re-encoded, resized, retimed copies) and leakage across splits."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from auditor.checks.base import Check, CheckResult
from taxonomy_core import schema as S
from taxonomy_core.edits import Edit
from taxonomy_core.findings import Finding


class Duplicates(Check):
    name = "duplicates"

    @dataclass(frozen=True, kw_only=True)
    class Params:
        similarity: float = 0.95  # cosine above which two clips are the same footage

    def run(self, ctx) -> CheckResult:
        result = self.result()
        pairs = duplicate_pairs(ctx, self.params.similarity)
        splits = ctx.clips[S.SPLIT].to_numpy(dtype=object)
        same_split = []
        for i, j, sim in pairs:
            if splits[i] != splits[j]:
                result.findings.append(leak(ctx, i, j, sim))
            else:
                same_split.append((i, j))
            if ctx.labels[i] != ctx.labels[j]:
                result.findings.append(conflict(ctx, i, j, sim))
        result.findings += grouped_duplicates(ctx, same_split, pairs)
        result.findings += videos_in_several_splits(ctx)
        result.edits = edits_for(result.findings)
        return result


def edits_for(findings: list[Finding]) -> list[Edit]:
    """Drop the evaluation copy of each leak; relabel the suspect of each near-identical pair."""
    edits = []
    for f in findings:
        s = f.suggestion or {}
        if f.kind == "split_leak" and "drop" in s:
            edits.append(Edit(s["drop"], "drop", f.message, f.kind))
        elif f.kind == "likely_mislabel" and "label" in s:
            edits.append(Edit(s["row"], "relabel", s["label"], f.kind))
    return edits


def duplicate_pairs(ctx, threshold: float) -> list[tuple[int, int, float]]:
    idx, sim = ctx.neighbours
    found = {}
    for i, j in zip(*np.nonzero(sim >= threshold)):
        a, b = sorted((int(i), int(idx[i, j])))
        found[(a, b)] = float(sim[i, j])
    return [(a, b, s) for (a, b), s in sorted(found.items())]


def _row(ctx, i):
    return ctx.clips.iloc[i]


def leak(ctx, i: int, j: int, sim: float) -> Finding:
    a, b = _row(ctx, i), _row(ctx, j)
    evaluation = b if str(b[S.SPLIT]).lower() in S.EVAL_SPLITS else a
    kept = a if evaluation is b else b
    return Finding(
        "split_leak",
        "error",
        f"rows {a[S.ROW]} ({a[S.SPLIT]}) and {b[S.ROW]} ({b[S.SPLIT]}) show the same footage (cosine {sim:.3f}): "
        f"the {evaluation[S.SPLIT]} copy inflates evaluation",
        rows=(int(a[S.ROW]), int(b[S.ROW])),
        labels=tuple(sorted({a[S.LABEL], b[S.LABEL]})),
        videos=(a[S.VIDEO], b[S.VIDEO]),
        score=round(sim, 4),
        suggestion={"drop": int(evaluation[S.ROW]), "keep": int(kept[S.ROW])},
    )


def conflict(ctx, i: int, j: int, sim: float) -> Finding:
    """Near-identical footage, two labels: the clip less typical of its own class is the suspect."""
    suspect, other = (i, j) if ctx.own_similarity[i] < ctx.own_similarity[j] else (j, i)
    s, o = _row(ctx, suspect), _row(ctx, other)
    return Finding(
        "likely_mislabel",
        "warning",
        f"rows {s[S.ROW]} ({s[S.LABEL]!r}) and {o[S.ROW]} ({o[S.LABEL]!r}) are near-identical (cosine "
        f"{sim:.3f}) but labelled differently",
        rows=(int(s[S.ROW]), int(o[S.ROW])),
        labels=(s[S.LABEL], o[S.LABEL]),
        videos=(s[S.VIDEO], o[S.VIDEO]),
        score=round(sim, 4),
        suggestion={"label": o[S.LABEL], "row": int(s[S.ROW])},
    )


def grouped_duplicates(ctx, pairs: list[tuple[int, int]], all_pairs) -> list[Finding]:
    """Same-split duplicates, one finding per group of mutually near-identical clips."""
    if not pairs:
        return []
    n = len(ctx.codes)
    a, b = np.array(pairs).T
    _, component = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    groups = defaultdict(list)
    for i in sorted(set(a) | set(b)):
        groups[component[i]].append(int(i))
    best = {(i, j): s for i, j, s in all_pairs}
    findings = []
    for members in groups.values():
        rows = [int(_row(ctx, i)[S.ROW]) for i in members]
        score = max(best.get((i, j), 0.0) for i in members for j in members if i < j)
        findings.append(
            Finding(
                "near_duplicate",
                "warning",
                f"rows {rows} ({', '.join(sorted(set(ctx.labels[members])))}) are near-identical "
                f"(cosine up to {score:.3f}) within one split: "
                f"keep one unless the repeats are intended",
                rows=tuple(rows),
                labels=tuple(sorted(set(ctx.labels[members]))),
                videos=tuple(sorted(set(ctx.clips[S.VIDEO].iloc[members]))),
                score=round(score, 4),
            )
        )
    return findings


def videos_in_several_splits(ctx) -> list[Finding]:
    """AutoML splits by video: segments of one source in train and test leak scene and subject."""
    findings = []
    table = ctx.clips[[S.VIDEO, S.SPLIT, S.ROW, S.LABEL]].dropna(subset=[S.SPLIT])
    for video, group in table.groupby(S.VIDEO):
        splits = sorted(set(group[S.SPLIT]))
        if len(splits) > 1:
            majority = group[S.SPLIT].value_counts().index[0]
            findings.append(
                Finding(
                    "split_leak",
                    "error",
                    f"{video} has segments in several splits ({', '.join(splits)}): split by source video",
                    rows=tuple(int(r) for r in group[S.ROW]),
                    labels=tuple(sorted(set(group[S.LABEL]))),
                    videos=(video,),
                    score=float(len(group)),
                    suggestion={"split": majority},
                )
            )
    return findings
