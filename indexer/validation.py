"""Manifest validation: one finding per problem, naming the rows; row-level errors exclude the row."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from taxonomy_core.findings import Evidence, Finding
from taxonomy_core.formats import Manifest
from taxonomy_core.schema import KNOWN_SPLITS, ClipSpec


@dataclass(frozen=True)
class ValidationConfig:
    """Dataset rules; AutoML needs 10 examples a class and recommends far more."""

    min_per_class: int = 10
    recommended_per_class: int = 200
    imbalance_warning: float = 10.0
    imbalance_error: float = 100.0


@dataclass
class Validation:
    findings: list[Finding] = field(default_factory=list)
    excluded: dict[int, str] = field(default_factory=dict)

    def reject(self, clip: ClipSpec, reason: str) -> None:
        self.findings.append(
            Finding(
                "invalid_annotation",
                "error",
                f"row {clip.row} ({clip.video}): {reason}",
                rows=(clip.row,),
                videos=(clip.video,),
                action=f"fix row {clip.row} ({reason}) or remove it: it is not indexed",
            )
        )
        self.excluded[clip.row] = reason

    def warn(self, kind: str, message: str, clips: list[ClipSpec], action: str, **extra) -> None:
        rows = tuple(c.row for c in clips)
        self.findings.append(Finding(kind, "warning", message, rows=rows, action=action, **extra))

    def valid(self, clips: list[ClipSpec]) -> list[ClipSpec]:
        return [c for c in clips if c.row not in self.excluded]


def validate(manifest: Manifest, config: ValidationConfig = ValidationConfig()) -> Validation:
    """All rules over a parsed manifest; parse failures from the reader are carried over."""
    result = Validation(findings=list(manifest.findings))
    for finding in manifest.findings:
        result.excluded.update({row: finding.message for row in finding.rows if finding.severity == "error"})
    for clip in manifest.clips:
        _check_row(clip, result)
    _check_duplicates(result.valid(manifest.clips), result)
    valid = result.valid(manifest.clips)
    _check_label_variants(valid, result)
    _check_class_sizes(valid, config, result)
    return result


def _check_row(clip: ClipSpec, result: Validation) -> None:
    if not clip.label.strip():
        return result.reject(clip, "the label is empty")
    if clip.start is not None and clip.start < 0:
        return result.reject(clip, f"start {clip.start}s is negative")
    if clip.start is not None and clip.end is not None and clip.start >= clip.end:
        return result.reject(clip, f"start {clip.start}s is not before end {clip.end}s")
    if "," in clip.label:
        return result.reject(clip, f"label {clip.label!r} contains a comma, which AutoML rejects")
    if clip.label != clip.label.strip():
        result.warn(
            "invalid_annotation",
            f"row {clip.row}: label {clip.label!r} has surrounding spaces",
            [clip],
            f"relabel row {clip.row} as {clip.label.strip()!r}",
            labels=(clip.label,),
            suggestion={"label": clip.label.strip()},
        )
    if clip.split is not None and clip.split.lower() not in KNOWN_SPLITS:
        result.warn(
            "invalid_annotation",
            f"row {clip.row}: unknown split {clip.split!r}; expected one of {', '.join(sorted(KNOWN_SPLITS))}",
            [clip],
            f"set row {clip.row}'s split to train, validation or test",
        )


def _check_duplicates(clips: list[ClipSpec], result: Validation) -> None:
    """Rows naming the same segment share one clip id: the first is kept, the rest excluded."""
    groups: dict[str, list[ClipSpec]] = defaultdict(list)
    for clip in clips:
        groups[clip.clip_id].append(clip)
    for group in groups.values():
        if len(group) < 2:
            continue
        first = group[0]
        labels = sorted({c.label for c in group})
        for clip in group[1:]:
            if len(labels) > 1:
                result.excluded[clip.row] = f"conflicts with row {first.row}"
            else:
                result.excluded[clip.row] = f"duplicate of row {first.row}"
        rows = tuple(c.row for c in group)
        where = f"{first.video} [{first.start}, {first.end}]"
        if len(labels) > 1:
            message = (
                f"rows {list(rows)} label the same segment {where} differently: {labels}; "
                f"only row {first.row} is indexed"
            )
        else:
            message = f"rows {list(rows)} repeat the same segment {where}; only row {first.row} is indexed"
        repeats = tuple(c.row for c in group[1:])
        result.findings.append(
            Finding(
                "invalid_annotation",
                "error",
                message,
                rows=repeats,
                labels=tuple(labels),
                videos=(first.video,),
                evidence=(Evidence(first.row, "kept"),),
                action=f"remove row(s) {', '.join(map(str, repeats))}"
                + (f" after deciding which of {labels} the segment shows" if len(labels) > 1 else ""),
            )
        )


def _check_label_variants(clips: list[ClipSpec], result: Validation) -> None:
    counts = Counter(c.label for c in clips)
    variants: dict[str, list[str]] = defaultdict(list)
    for label in counts:
        variants[label.strip().casefold()].append(label)
    for names in variants.values():
        if len(names) < 2:
            continue
        keep = max(names, key=lambda n: (counts[n], n == n.strip()))
        others = [c for c in clips if c.label in names and c.label != keep]
        result.warn(
            "invalid_annotation",
            f"labels {sorted(names)} differ only by case or spaces; use {keep!r}",
            others,
            f"relabel {len(others)} row(s) as {keep!r}",
            labels=tuple(sorted(names)),
            suggestion={"label": keep},
        )


def _check_class_sizes(clips: list[ClipSpec], config: ValidationConfig, result: Validation) -> None:
    """Errors per class under AutoML's minimum; the rule of thumb as one dataset-wide warning."""
    counts = Counter(c.label for c in clips)
    if len(counts) < 2:
        result.findings.append(
            Finding(
                "too_few_examples",
                "error",
                f"the dataset has {len(counts)} class(es); classification needs at least 2",
                labels=tuple(counts),
                action="add at least one more class",
            )
        )
    for label, count in sorted(counts.items()):
        if count < config.min_per_class:
            result.findings.append(
                Finding(
                    "too_few_examples",
                    "error",
                    f"class {label!r} has {count} examples, below the minimum of {config.min_per_class} "
                    "(AutoML refuses fewer)",
                    labels=(label,),
                    action=f"add at least {config.min_per_class - count} {label!r} clips, or merge or drop the class",
                    suggestion={"add": config.min_per_class - count},
                )
            )
    small = sorted(name for name, n in counts.items() if config.min_per_class <= n < config.recommended_per_class)
    if small:
        share = "every class" if len(small) == len(counts) else f"{len(small)} of {len(counts)} classes"
        listed = ", ".join(f"{name!r}: {counts[name]}" for name in small[:12]) + (" …" if len(small) > 12 else "")
        result.findings.append(
            Finding(
                "too_few_examples",
                "warning",
                f"{share} ({listed}) "
                f"have fewer than the {config.recommended_per_class}-per-class rule of thumb",
                labels=tuple(small),
                confidence=0.5,
                action=f"collect more clips for these classes, the smallest first, towards "
                f"{config.recommended_per_class} each",
            )
        )
    if len(counts) >= 2:
        (big, most), (tiny, least) = counts.most_common()[0], counts.most_common()[-1]
        ratio = most / least
        if ratio >= config.imbalance_warning:
            severity = "error" if ratio >= config.imbalance_error else "warning"
            result.findings.append(
                Finding(
                    "class_imbalance",
                    severity,
                    f"class {big!r} ({most}) is {ratio:.0f}x class {tiny!r} ({least})",
                    labels=(big, tiny),
                    action=f"collect more {tiny!r} clips or subsample {big!r}; or weight classes in training",
                    suggestion={"ratio": round(ratio, 1)},
                )
            )
