"""Manifest validation: one finding per problem, naming the rows; row-level errors exclude the row."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from taxonomy_core.findings import Finding
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
            )
        )
        self.excluded[clip.row] = reason

    def warn(self, kind: str, message: str, clips: list[ClipSpec], **extra) -> None:
        rows = tuple(c.row for c in clips)
        self.findings.append(Finding(kind, "warning", message, rows=rows, **extra))

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
    if clip.label != clip.label.strip():
        result.warn(
            "invalid_annotation",
            f"row {clip.row}: label {clip.label!r} has surrounding spaces",
            [clip],
            labels=(clip.label,),
            suggestion={"label": clip.label.strip()},
        )
    if "," in clip.label:
        result.warn(
            "invalid_annotation",
            f"row {clip.row}: label {clip.label!r} contains a comma, which breaks CSV manifests such as AutoML's",
            [clip],
            labels=(clip.label,),
            suggestion={"label": clip.label.replace(",", " ").strip()},
        )
    if clip.split is not None and clip.split.lower() not in KNOWN_SPLITS:
        result.warn(
            "invalid_annotation",
            f"row {clip.row}: unknown split {clip.split!r}; expected one of {', '.join(sorted(KNOWN_SPLITS))}",
            [clip],
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
        result.findings.append(
            Finding("invalid_annotation", "error", message, rows=rows, labels=tuple(labels), videos=(first.video,))
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
            labels=tuple(sorted(names)),
            suggestion={"label": keep},
        )


def _check_class_sizes(clips: list[ClipSpec], config: ValidationConfig, result: Validation) -> None:
    counts = Counter(c.label for c in clips)
    if len(counts) < 2:
        result.findings.append(
            Finding(
                "too_few_examples",
                "error",
                f"the dataset has {len(counts)} class(es); classification needs at least 2",
                labels=tuple(counts),
            )
        )
    by_label: dict[str, list[int]] = defaultdict(list)
    for clip in clips:
        by_label[clip.label].append(clip.row)
    for label, count in sorted(counts.items()):
        if count < config.min_per_class:
            severity, rule = "error", f"the minimum of {config.min_per_class} (AutoML refuses fewer)"
        elif count < config.recommended_per_class:
            severity, rule = "warning", f"the {config.recommended_per_class}-per-class rule of thumb"
        else:
            continue
        result.findings.append(
            Finding(
                "too_few_examples",
                severity,
                f"class {label!r} has {count} examples, below {rule}",
                rows=tuple(by_label[label]),
                labels=(label,),
                score=float(count),
            )
        )
    if len(counts) >= 2:
        (big, most), (small, least) = counts.most_common()[0], counts.most_common()[-1]
        ratio = most / least
        if ratio >= config.imbalance_warning:
            severity = "error" if ratio >= config.imbalance_error else "warning"
            result.findings.append(
                Finding(
                    "class_imbalance",
                    severity,
                    f"class {big!r} ({most}) is {ratio:.0f}x class {small!r} ({least})",
                    labels=(big, small),
                    score=ratio,
                )
            )
