"""The same footage twice: copies across splits (one finding per group), repeats within a split (groups in which
every dropped clip is itself a copy of the kept one, never across labels), copies that disagree on the label,
sources cut into several splits (one finding per source, its segments moved, not dropped), and segments of one
video that overlap in time (from the manifest's own times, one finding per video)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from auditor.checks.base import Check, CheckResult
from auditor.copies import EMBEDDING_ONLY, SAME_FRAMES
from auditor.sources import components, source_name, source_of
from taxonomy_core import schema as S
from taxonomy_core.edits import Edit
from taxonomy_core.findings import Evidence, Finding, clamp

TRAIN_SPLITS = ("train", "training")
SAME_SOURCE = "same_source_video"


class Duplicates(Check):
    name = "duplicates"

    @dataclass(frozen=True, kw_only=True)
    class Params:
        similarity: float = 0.95  # cosine above which two clips are the same footage (frames must confirm it)
        overlap_seconds: float = 0.1  # segments of one video sharing more than this are overlapping windows

    def run(self, ctx) -> CheckResult:
        result = self.result()
        pairs = ctx.copy_pairs(self.params.similarity)
        split = ctx.clips[S.SPLIT].fillna("").to_numpy(dtype=object)
        sources = source_of(ctx.clips)
        spread = pd.DataFrame({"source": sources, "split": split}).groupby("source", sort=False)["split"].nunique()
        split_sources = set(spread.index[spread > 1])  # one pass: a scan per source was O(N^2) (hours at 3 x 10^5)
        cross = [p for p in pairs if split[p[0]] != split[p[1]] and not _one_split_source(p, sources, split_sources)]
        within = [p for p in pairs if split[p[0]] == split[p[1]]]
        for group in leak_groups(split, cross):
            self._leak(ctx, group, cross, result)
        same_label = [p for p in within if ctx.labels[p[0]] == ctx.labels[p[1]]]
        for kept, dropped in star_groups(ctx, same_label):
            result.findings.append(repeats(ctx, kept, dropped, same_label, self.params.similarity))
        other_label = [p for p in pairs if ctx.labels[p[0]] != ctx.labels[p[1]]]
        for members in components(len(ctx.codes), other_label):
            result.findings.append(label_conflict(ctx, members, other_label))
        in_splits = np.flatnonzero(pd.Series(sources).isin(split_sources).to_numpy())
        by_source = pd.Series(in_splits).groupby(sources[in_splits]).indices
        for source in sorted(split_sources):
            self._source_in_splits(ctx, source, in_splits[by_source[source]], result)
        result.findings += overlapping_segments(ctx, self.params.overlap_seconds)
        return result

    def _leak(self, ctx, group: tuple[list[int], dict[int, tuple[int, float]]], pairs, result: CheckResult) -> None:
        """Evaluation-side copies of training clips: each accused clip is itself a copy of a named original."""
        accused, best = group
        split = ctx.clips[S.SPLIT].fillna("").to_numpy(dtype=object)
        rows, labels = ctx.rows, ctx.labels
        keep = split[best[accused[0]][0]]
        members = accused + sorted({j for j, _ in best.values()})
        reasons = {ctx.copy_reasons.get(tuple(sorted((i, j))), SAME_FRAMES) for i, (j, _) in best.items()}
        reason = EMBEDDING_ONLY if EMBEDDING_ONLY in reasons else SAME_FRAMES
        evidence = tuple(Evidence(int(rows[j]), "train_original", round(s, 4)) for j, s in _unique_kept(best))
        top = max(s for _, s in best.values())
        low = min(s for _, s in best.values())
        frames = [ctx.frame_matches.get(tuple(sorted((i, j))), 0.0) for i, (j, _) in best.items()]
        bits = [ctx.frame_bits.get(tuple(sorted((i, j))), 64.0) for i, (j, _) in best.items()]
        seen = (
            f"frames match {min(frames):.0%} or more, {max(bits):.1f} bits apart at most; cosine {low:.3f}-{top:.3f}"
            if reason == SAME_FRAMES
            else f"cosine {low:.3f}-{top:.3f}; no frame fingerprints stored, so not confirmed by frames"
        )
        drops = ", ".join(f"{split[i]} row {rows[i]}" for i in accused)
        copies = "; ".join(f"row {rows[i]} of {keep} row {rows[j]}" for i, (j, _) in sorted(best.items()))
        noun = "copies" if reason == SAME_FRAMES else "near-identical clips (by embedding)"
        result.findings.append(
            Finding(
                "split_leak",
                "error",
                f"{len(accused)} clip(s) outside {keep!r} are {noun} of {keep!r} clips ({seen}): "
                "they inflate evaluation",
                rows=tuple(int(rows[i]) for i in accused),
                labels=tuple(sorted({labels[i] for i in members})),
                videos=tuple(sorted({ctx.clips[S.VIDEO].iloc[i] for i in members})),
                evidence=evidence,
                confidence=clamp(max(min(frames), 0.6 + 4 * (low - 0.9)) if frames else 0.6 + 4 * (low - 0.9)),
                action=f"drop {drops}: {noun} ({copies})",
                suggestion={
                    "reason": reason,
                    "drop": [int(rows[i]) for i in accused],
                    "originals": {int(rows[i]): int(rows[j]) for i, (j, _) in best.items()},
                },
            )
        )
        result.edits += [
            Edit(int(rows[i]), "drop", f"copy of {keep} row {rows[j]} ({reason})", "split_leak")
            for i, (j, _) in sorted(best.items())
        ]

    def _source_in_splits(self, ctx, source: str, positions: np.ndarray, result: CheckResult) -> None:
        """A source video cut into several splits leaks scene and subject (siblings, not copies): move the
        minority to the split that holds most of it."""
        group = ctx.clips.iloc[np.sort(positions)]
        counts = group[S.SPLIT].fillna("").value_counts()
        majority = counts.index[0]
        moving = group[group[S.SPLIT].fillna("") != majority]
        staying = group[group[S.SPLIT].fillna("") == majority]
        rows = [int(r) for r in moving[S.ROW]]
        spread = ", ".join(f"{s or 'none'}: {n}" for s, n in counts.items())
        name = source_name(source)
        result.findings.append(
            Finding(
                "split_leak",
                "error",
                f"{name} has segments in several splits ({spread}): other moments of one source video in "
                "evaluation are not independent of training; splits must be made by source video",
                rows=tuple(rows),
                labels=tuple(sorted(set(group[S.LABEL]))),
                videos=tuple(sorted(set(group[S.VIDEO]))),
                evidence=tuple(Evidence(int(r), SAME_SOURCE) for r in staying[S.ROW]),
                confidence=1.0,
                action=f"move row(s) {', '.join(map(str, rows))} to {majority!r}, where the rest of {name} is",
                suggestion={"reason": SAME_SOURCE, "split": majority, "rows": rows, "source": name},
            )
        )
        result.edits += [Edit(r, "split", majority, "split_leak") for r in rows]


def leak_groups(split, pairs) -> list[tuple[list[int], dict[int, tuple[int, float]]]]:
    """(accused, {accused: (original, cosine)}) per group: every accused clip is directly a copy of an original
    on the training side; groups join only through a shared original, never through another copy."""
    best: dict[int, tuple[int, float]] = {}
    for i, j, s in pairs:
        keep = _training_side(split[[i, j]])
        copy, original = (i, j) if split[j] == keep else (j, i)
        if split[original] == keep and s > best.get(copy, (None, -1.0))[1]:
            best[copy] = (original, s)
    by_original: dict[int, list[int]] = defaultdict(list)
    for copy, (original, _) in best.items():
        by_original[original].append(copy)
    groups, seen = [], set()
    for original in sorted(by_original):
        if original in seen:
            continue
        accused = sorted(by_original[original])
        seen.add(original)
        groups.append((accused, {i: best[i] for i in accused}))
    return groups


def star_groups(ctx, pairs) -> list[tuple[int, list[int]]]:
    """(kept, dropped) groups in which every dropped clip is a copy of the kept clip itself: no chaining.

    The kept clip is the one with the most copies (ties: the more typical of its class, then the lower row).
    """
    partners: dict[int, set[int]] = defaultdict(set)
    for i, j, _ in pairs:
        partners[i].add(j)
        partners[j].add(i)
    groups, used = [], set()
    while True:
        degree = {i: len(p - used) for i, p in partners.items() if i not in used}
        degree = {i: d for i, d in degree.items() if d}
        if not degree:
            return groups
        kept = min(degree, key=lambda i: (-degree[i], -float(ctx.own_similarity[i]), int(ctx.rows[i])))
        dropped = sorted(partners[kept] - used, key=lambda i: int(ctx.rows[i]))
        used |= {kept, *dropped}
        groups.append((kept, dropped))


def repeats(ctx, kept: int, dropped: list[int], pairs, threshold: float) -> Finding:
    """Copies within one split and label: the kept clip and each copy of it, with the weakest link stated."""
    link = {frozenset((i, j)): s for i, j, s in pairs}
    sims = [link[frozenset((kept, d))] for d in dropped]
    bits = [ctx.frame_bits.get(tuple(sorted((kept, d))), None) for d in dropped]
    rows = [int(ctx.rows[d]) for d in dropped]
    keep = int(ctx.rows[kept])
    weakest = min(sims)
    frames = "" if None in bits else f", frames {max(bits):.1f} bits apart at most"
    members = [kept, *dropped]
    return Finding(
        "near_duplicate",
        "warning",
        f"row(s) {', '.join(map(str, rows))} are copies of row {keep} ({ctx.labels[kept]!r}, one split): weakest link "
        f"cosine {weakest:.3f}{frames}",
        rows=tuple(rows),
        labels=(ctx.labels[kept],),
        videos=tuple(sorted(set(ctx.clips[S.VIDEO].iloc[members]))),
        evidence=(Evidence(keep, "kept_copy", round(weakest, 4)),),
        confidence=clamp(0.9 - 0.1 * max(bits))
        if None not in bits
        else clamp(0.5 + (weakest - threshold) / max(1e-6, 1 - threshold) / 2),
        action=f"keep row {keep} and drop row(s) {', '.join(map(str, rows))}, unless the repeats are intended",
        suggestion={"keep": keep, "drop": rows, "weakest_link": round(weakest, 4)},
    )


def label_conflict(ctx, members: list[int], pairs) -> Finding:
    """The same footage under several labels: one finding per group (the mislabel check may say which is wrong)."""
    inside = [(i, j, s) for i, j, s in pairs if i in members and j in members]
    top = max(s for _, _, s in inside)
    rows = sorted(int(ctx.rows[i]) for i in members)
    labels = sorted({ctx.labels[i] for i in members})
    named = ", ".join(f"{int(ctx.rows[i])} ({ctx.labels[i]!r})" for i in sorted(members, key=lambda i: ctx.rows[i]))
    return Finding(
        "label_conflict",
        "warning",
        f"rows {named} show the same footage (cosine up to {top:.3f}) under different labels",
        labels=tuple(labels),
        videos=tuple(sorted(set(ctx.clips[S.VIDEO].iloc[members]))),
        evidence=tuple(Evidence(r, "near_identical_other_label", round(top, 4)) for r in rows),
        confidence=clamp(0.5 + (top - 0.9) * 5),
        action=f"decide which of {', '.join(map(repr, labels))} rows {', '.join(map(str, rows))} show, and give "
        "them that label (or keep one of them)",
        suggestion={"rows": rows, "labels": labels},
    )


def overlapping_segments(ctx, tolerance: float) -> list[Finding]:
    """Segments of one video file whose times overlap: one finding per video, from the manifest alone."""
    out = []
    videos = ctx.clips[S.VIDEO]
    shared = ctx.clips[videos.duplicated(keep=False).to_numpy()]  # a video cut once overlaps nothing
    for video, table in shared.groupby(S.VIDEO, sort=True):
        spans = sorted(zip(table[S.START], table[S.END], table[S.ROW], table[S.SPLIT].fillna("")))
        overlaps, reach = [], spans[0]
        for span in spans[1:]:
            shared = min(reach[1], span[1]) - span[0]
            if shared > tolerance:
                length = float(span[1] - span[0])
                overlaps.append((int(reach[2]), int(span[2]), round(float(shared), 2), length, float(reach[1])))
            reach = max(reach, span, key=lambda s: s[1])
        if overlaps:
            out.append(_overlap_finding(video, table, overlaps))
    return out


def _overlap_finding(video: str, table, overlaps) -> Finding:
    later = sorted({b for _, b, _, _, _ in overlaps})
    seconds = sum(o[2] for o in overlaps)
    ends: dict[int, float] = {}
    for _, b, _, _, end in overlaps:  # a later segment would start where the earlier one ends
        ends[b] = max(ends.get(b, 0.0), end)
    pairs = ", ".join(f"rows {a}/{b} share {s:.1f}s" for a, b, s, _, _ in overlaps[:6])
    heavy = any(s >= 0.5 * length for _, _, s, length, _ in overlaps)
    trims = "; ".join(f"row {b} to start at {ends[b]:.2f}s" for b in later[:6])
    return Finding(
        "overlapping_segments",
        "warning" if heavy else "info",
        f"{len(overlaps)} pair(s) of segments of {video} overlap in time ({seconds:.1f}s shared in all: {pairs}): "
        "the same frames are seen more than once",
        rows=tuple(later),
        labels=tuple(sorted(set(table[S.LABEL]))),
        videos=(video,),
        evidence=tuple(Evidence(a, "overlaps") for a in sorted({o[0] for o in overlaps} - set(later))),
        confidence=clamp(0.4 + min(0.5, seconds / max(1e-6, float((table[S.END] - table[S.START]).sum())))),
        action=f"if these are not meant as overlapping windows, trim {trims}",
        suggestion={"overlaps": [{"rows": [o[0], o[1]], "seconds": o[2]} for o in overlaps], "starts": ends},
    )


def _one_split_source(pair, sources, split_sources: set[str]) -> bool:
    """A pair inside one source that spans splits: the source's finding (a move) already covers it."""
    i, j, _ = pair
    return sources[i] == sources[j] and sources[i] in split_sources


def _training_side(splits) -> str:
    present = list(dict.fromkeys(splits))
    trains = [s for s in present if str(s).lower() in TRAIN_SPLITS]
    if trains:
        return trains[0]
    return max(present, key=lambda s: (str(s).lower() not in S.EVAL_SPLITS, list(splits).count(s)))


def _unique_kept(best: dict[int, tuple[int, float]]) -> list[tuple[int, float]]:
    top: dict[int, float] = {}
    for j, s in best.values():
        top[j] = max(top.get(j, -1.0), s)
    return sorted(top.items())
