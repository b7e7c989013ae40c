"""What the fix set, applied whole, must leave true of the dataset; each rule returns its violations in words.

A dataset state is a table of the clips that remain after the plan: label, split and source group per clip
(`State`). The fix plan (auditor.fixplan) repairs what it can and reports the rest once, in the split table.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from taxonomy_core import schema as S


@dataclass(frozen=True)
class State:
    """The clips that remain: (label, split, group) each; `before` is the same for the input."""

    clips: tuple[tuple[str, str, int], ...]

    def counts(self) -> Counter:
        return Counter((label, split) for label, split, _ in self.clips)

    def labels(self) -> list[str]:
        return sorted({label for label, _, _ in self.clips})

    def groups(self, label: str) -> set[int]:
        return {g for lab, _, g in self.clips if lab == label}


def is_eval(split: str) -> bool:
    return str(split).lower() in S.EVAL_SPLITS


def each_class_trainable(before: State, after: State) -> list[str]:
    """A class that had training clips keeps at least one."""
    had = {label for label, split in before.counts() if split and not is_eval(split)}
    has = {label for label, split in after.counts() if split and not is_eval(split)}
    return [f"{label!r} has no training clip left" for label in sorted(had - has)]


def each_class_evaluable(before: State, after: State) -> list[str]:
    """A class that had evaluation clips keeps some, unless all of it comes from one source (then it cannot)."""
    out = []
    had = {label for label, split in before.counts() if is_eval(split)}
    has = {label for label, split in after.counts() if is_eval(split)}
    for label in sorted(had - has):
        if len(after.groups(label)) >= 2:
            out.append(f"{label!r} has two or more independent sources but no evaluation clip left")
    return out


def sources_kept_whole(before: State, after: State) -> list[str]:
    """No source group (a video, a source, a group of copies) is cut into several splits."""
    splits: dict[int, set[str]] = {}
    for _, split, group in after.clips:
        splits.setdefault(group, set()).add(split)
    return [f"source group {g} is in splits {sorted(s)}" for g, s in sorted(splits.items()) if len(s) > 1]


def above_minimum(before: State, after: State, minimum: int) -> list[str]:
    """A class at or above the minimum count stays there."""
    was = Counter(label for label, _, _ in before.clips)
    now = Counter(label for label, _, _ in after.clips)
    return [
        f"{label!r} falls to {now[label]} clips, under the minimum of {minimum}"
        for label in sorted(was)
        if was[label] >= minimum > now[label]
    ]


def violations(before: State, after: State, minimum: int) -> list[str]:
    """Every invariant's violations, in a fixed order."""
    return (
        each_class_trainable(before, after)
        + each_class_evaluable(before, after)
        + sources_kept_whole(before, after)
        + above_minimum(before, after, minimum)
    )
