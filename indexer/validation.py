"""Manifest validation: one finding per problem, naming the rows; row-level errors exclude the row.

Whatever the store would refuse (a field past its declared limit) is a row error here, so a bad row never
reaches a write batch and takes its neighbours down with it.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taxonomy_core.findings import Evidence, Finding
from taxonomy_core.formats import Manifest
from taxonomy_core.formats.csvtext import is_formula
from taxonomy_core.names import ZERO_WIDTH, foreign_letters, invisible, latin_lookalike, mixed_script, normal_label
from taxonomy_core.schema import KNOWN_SPLITS, ClipSpec
from taxonomy_core.store import StoreLimits


@dataclass(frozen=True)
class ValidationConfig:
    """Dataset rules; AutoML needs 10 examples a class and recommends far more."""

    min_per_class: int = 10
    recommended_per_class: int = 200
    imbalance_warning: float = 10.0
    imbalance_error: float = 100.0
    # The only folders videos may come from (the app's data roots); empty: anywhere the manifest points.
    video_roots: tuple[str, ...] = ()


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


def validate(
    manifest: Manifest,
    config: ValidationConfig = ValidationConfig(),
    limits: StoreLimits = StoreLimits(),
    sizes: bool = True,
) -> Validation:
    """All rules over a parsed manifest; parse failures from the reader are carried over.

    `limits` are the store's declared field limits (the indexer passes its store's). Without `sizes`, the class
    sizes are left to the caller: the indexer counts the rows it indexed (`class_size_findings`), not the rows
    that passed the rules only to fail at decoding.
    """
    result = Validation(findings=list(manifest.findings))
    for finding in manifest.findings:
        result.excluded.update({row: finding.message for row in finding.rows if finding.severity == "error"})
    roots = [Path(r).resolve() for r in config.video_roots]
    labels = {c.label for c in manifest.clips}
    for clip in manifest.clips:
        _check_row(clip, result, limits, roots, labels)
    _check_duplicates(result.valid(manifest.clips), result)
    valid = result.valid(manifest.clips)
    _check_label_forms(valid, result)
    _check_label_variants(result.valid(valid), result)
    _check_file_name_forms(result.valid(valid), result)
    if sizes:
        result.findings += class_size_findings(result.valid(valid), config)
    return result


def _check_row(clip: ClipSpec, result: Validation, limits: StoreLimits, roots: list[Path], labels: set[str]) -> None:
    problem = _outside(clip.video, roots) or _field_problem(clip, limits) or _label_problem(clip.label, labels)
    if problem:
        return result.reject(clip, problem)
    if clip.start is not None and clip.start < 0:
        return result.reject(clip, f"start {clip.start}s is negative")
    if clip.start is not None and clip.end is not None and clip.start >= clip.end:
        return result.reject(clip, f"start {clip.start}s is not before end {clip.end}s")
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
            f"row {clip.row}: unknown split {_short(clip.split)}; expected one of {', '.join(sorted(KNOWN_SPLITS))}",
            [clip],
            f"set row {clip.row}'s split to train, validation or test",
        )


def _field_problem(clip: ClipSpec, limits: StoreLimits) -> str | None:
    """A field longer than the store holds, or a split with control characters: the store write would fail."""
    for name, value, limit in (
        ("label", clip.label, limits.max_label_chars),
        ("split", clip.split or "", limits.max_split_chars),
        ("video path", clip.video, limits.max_video_chars),
    ):
        if len(value) > limit:
            return f"the {name} is {len(value)} characters long; the store holds at most {limit}"
    if _control(clip.split or ""):
        return f"the split {_short(clip.split)} contains a control character ({_control(clip.split)})"
    return _unstorable(clip)


def _unstorable(clip: ClipSpec) -> str | None:
    """Values the store cannot encode: text with an unpaired surrogate (a JSON escape such as \\ud800) and,
    in the metadata columns, integers beyond 64 bits."""
    fields = [("the label", clip.label), ("the split", clip.split), ("the video path", clip.video)]
    for what, value in fields + list(_leaves(clip.extra)):
        if isinstance(value, str) and not _encodes(value):
            return f"{what} holds an unpaired surrogate, which is not text; fix the escape in the manifest"
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            return f"{what} holds {_short(str(value))}, beyond a 64-bit integer; write it as text"
    return None


def _leaves(value: Any, what: str = "") -> Iterator[tuple[str, Any]]:
    """(where, value) for every key and scalar of a row's metadata, nested lists and objects included."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield "a column name", key
            yield from _leaves(inner, what or f"column {_short(str(key))}")
    elif isinstance(value, (list, tuple)):
        for inner in value:
            yield from _leaves(inner, what)
    else:
        yield what, value


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _outside(video: str, roots: list[Path]) -> str | None:
    """A video outside the configured roots; the same words whether or not it exists (nothing is looked at)."""
    if not roots:
        return None
    real = None if "://" in video else Path(video).resolve()
    if real is not None and any(real == root or real.is_relative_to(root) for root in roots):
        return None
    return "the video is outside the data folders this app reads; the operator may add its folder (--data-root)"


def _label_problem(label: str, labels: set[str] = frozenset()) -> str | None:
    """Why a label cannot be a class name: empty, a line break or other control character, an invisible
    character, letters of two alphabets in one word (a look-alike), a spreadsheet formula (CSV injection: it
    would run when the fixed manifest is opened), or a comma (AutoML refuses it)."""
    if not label.translate(ZERO_WIDTH).strip():
        return "the label is empty"
    if _control(label):
        return f"the label {_short(label)} contains a control character ({_control(label)}), such as a line break"
    if invisible(label):
        return (
            f"the label {_short(label)} contains an invisible character ({invisible(label)}), so it differs from "
            f"{_short(label.translate(ZERO_WIDTH))} though it looks the same: write it as that"
        )
    alphabets = mixed_script(label)
    if alphabets:
        seen = latin_lookalike(label)
        known = ", the label of other rows" if seen in labels else ""
        return (
            f"the label {_short(label)} mixes {' and '.join(a.title() for a in alphabets)} letters "
            f"({foreign_letters(label, alphabets[0])}), so it passes for {_short(seen)}{known} but is another class: "
            "retype it in one alphabet"
        )
    if is_formula(label.strip()):
        return f"the label {_short(label)} starts with {label.strip()[0]!r}, so a spreadsheet would run it as a formula"
    if "," in label:
        return f"label {_short(label)} contains a comma, which AutoML rejects"
    return None


def _control(text: str) -> str:
    """The control characters in `text` (line and paragraph separators included), as escapes; "" if none."""
    found = dict.fromkeys(c for c in text if unicodedata.category(c) in ("Cc", "Zl", "Zp"))
    return ", ".join(repr(c)[1:-1] for c in found)


def _short(text: str, limit: int = 60) -> str:
    """A value for a message: quoted, cut at `limit` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


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


def _check_label_forms(clips: list[ClipSpec], result: Validation) -> None:
    """Labels spelled differently that are one label in Unicode's normal form (NFKC: a full-width `ｈｕｒｄｌｅｓ`,
    a decomposed `café`): an error naming both spellings; the rows of the rarer spelling are not indexed."""
    counts = Counter(c.label for c in clips)
    forms: dict[str, list[str]] = defaultdict(list)
    for label in counts:
        forms[normal_label(label)].append(label)
    for names in forms.values():
        spellings = {unicodedata.normalize("NFKC", n).strip().casefold() for n in names}
        if len(names) < 2 or len(spellings) == len({n.strip().casefold() for n in names}):
            continue  # differ by case or spaces only: the warning below
        keep = max(names, key=lambda n: (counts[n], n == unicodedata.normalize("NFC", n)))
        for clip in clips:
            if clip.label in names and clip.label != keep:
                result.reject(
                    clip,
                    f"the label {clip.label!r} and the label {keep!r} of other rows are one label in Unicode normal "
                    f"form (NFKC) but are spelled with different characters: write it as {keep!r}",
                )


def _check_file_name_forms(clips: list[ClipSpec], result: Validation) -> None:
    """Paths equal up to Unicode normal form (NFC vs NFD): two files here, one file on macOS."""
    paths: dict[str, list[ClipSpec]] = defaultdict(list)
    for clip in clips:
        paths[unicodedata.normalize("NFC", clip.video)].append(clip)
    for group in paths.values():
        spellings = sorted({c.video for c in group})
        if len(spellings) > 1:
            result.warn(
                "invalid_annotation",
                f"the video paths {', '.join(map(ascii, spellings))} are one name in Unicode normal form (NFC) "
                "but different files here; on macOS, and to most people, they are the same file",
                group,
                "rename one of the files (or merge them) so that each video has one spelling",
                videos=tuple(spellings),
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


def class_size_findings(clips: list[ClipSpec], config: ValidationConfig = ValidationConfig()) -> list[Finding]:
    """Errors per class under AutoML's minimum; the rule of thumb as one dataset-wide warning."""
    result = Validation()
    _check_class_sizes(clips, config, result)
    return result.findings


def _check_class_sizes(clips: list[ClipSpec], config: ValidationConfig, result: Validation) -> None:
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
                f"{share} ({listed}) have fewer than the {config.recommended_per_class}-per-class rule of thumb",
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
