"""Words for numbers: readable metric names, a glossary with the report's own thresholds, literal user text.

Labels, file names and sentences that carry them come from the user's manifest: they are shown through
`plain` (escaped HTML, never markdown, so no emphasis, links or emoji shortcodes) or `code` spans.
"""

from __future__ import annotations

import html
import re
from typing import Any

import streamlit as st

from app_pages.literal import literal

NAMES = {
    "label": "Class",
    "count": "Clips",
    "tier": "Tier",
    "grade": "Grade",
    "probe_f1": "Probe F1",
    "knn_agreement": "Neighbours agree",
    "cohesion": "Cohesion",
    "separation": "Separation",
    "nearest_class": "Nearest class",
    "search_consistency": "Search consistency",
    "diversity": "Diversity",
    "reasons": "Why this grade",
    "silhouette": "Silhouette",
    "margin": "Margin",
    "spread": "Spread",
    "text_precision": "Text precision",
    "example_precision": "Example precision",
    "centroid_precision": "Centroid precision",
    "text_example_agreement": "Text / example agreement",
    "source_videos": "Source videos",
    "hard_negatives": "Hard negatives",
}


def name(key: str) -> str:
    """A column's or metric's readable name."""
    return NAMES.get(key, key.replace("_", " ").capitalize())


def _checks(report: dict[str, Any]) -> dict[str, Any]:
    return (report.get("thresholds") or {}).get("checks") or {}


def glossary(report: dict[str, Any]) -> dict[str, str]:
    """What each metric means and the threshold the audit judged it by, from this report's own settings."""
    checks = _checks(report)
    search = checks.get("search", {})
    mislabels = checks.get("mislabels", {})
    tiers = checks.get("tightness", {})
    dup = checks.get("duplicates", {}).get("similarity", 0.95)
    diversity = checks.get("diversity", {})
    precision = search.get("min_precision", 0.5)
    return {
        "grade": "A–D by the grading rule: " + " ".join(report.get("grading_rule") or []),
        "tier": f"head: at least {tiers.get('head_min', 200)} clips; tail: at most {tiers.get('tail_max', 50)}; "
        "mid between.",
        "count": "Clips of the class the audit could index. AutoML asks for at least 10 per class.",
        "probe_f1": "How well a linear classifier on the embeddings recognises the class "
        f"({tiers.get('probe_folds', 5)}-fold cross-validated F1, 0–1). Grade A from 0.90, B from 0.75, C from 0.50.",
        "knn_agreement": f"Share of each clip's {(report.get('thresholds') or {}).get('audit', {}).get('knn_k', 10)} "
        "nearest neighbours that carry its label (0–1); used for the grade when there is no probe.",
        "cohesion": "Mean cosine similarity of each clip to the rest of its class (leave-one-out, 0–1): "
        "higher is tighter.",
        "separation": "Cosine distance from the class's centre to the nearest other class's centre: higher is "
        "easier to tell apart.",
        "nearest_class": "The class whose centre is closest.",
        "search_consistency": "Share of searches for the class (text and examples) that return it; "
        f"under {precision:.2f} is a search_inconsistency finding.",
        "diversity": f"How varied the class's footage is (0–1); under {diversity.get('low_diversity', 0.05):.2f}, or "
        f"one video making up more than {diversity.get('single_video_share', 0.8):.0%} of it, is low_diversity.",
        "text_precision": f"Share of the top-k text-search results that are the class; under {precision:.2f} is weak.",
        "example_precision": f"Share of the top-k results for the class's own clips that are the class; "
        f"{precision:.2f} or more passes, 0.80 or more reads as visually coherent.",
        "centroid_precision": "Share of the top-k results around the class's mean vector that are the class.",
        "text_example_agreement": "Overlap of the text results and the example results (0–1): low means the words "
        "and the clips describe different things. There is no pass mark; read it with the precisions.",
        "confidence": "How sure the audit is that the problem is real (0–1, comparable across kinds; facts are 1.0). "
        "The queue orders findings by severity, then confidence.",
        "similarity": f"Cosine similarity of the two clips' embeddings; from {dup:.2f} they are the same footage "
        "(a copy, re-encoded or resized).",
        "mislabel": f"A clip is a likely mislabel when at least {mislabels.get('knn_fraction', 0.6):.0%} of its "
        "neighbours carry another label, or a near-identical clip does.",
    }


def tip(report: dict[str, Any], key: str) -> str | None:
    """The glossary entry for `key`, for a widget's `help`."""
    return glossary(report).get(key)


def column_config(report: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """Readable headers, two decimals and a glossary tooltip for each column of a class table."""
    config: dict[str, Any] = {}
    for column in columns:
        help_text = tip(report, column)
        if column in {"label", "tier", "grade", "nearest_class", "reasons"}:
            width = "large" if column == "reasons" else None
            config[column] = st.column_config.TextColumn(name(column), help=help_text, width=width)
        elif column in {"count", "source_videos", "hard_negatives"}:
            config[column] = st.column_config.NumberColumn(name(column), help=help_text, format="%d")
        else:
            config[column] = st.column_config.NumberColumn(name(column), help=help_text, format="%.2f")
    return config


def code(text: Any) -> str:
    """A code span that shows `text` exactly (backticks inside it included)."""
    text = str(text).replace("\n", " ")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def plain(text: Any, *, strong: bool = False, small: bool = False) -> None:
    """User text exactly as written: escaped HTML, never markdown."""
    style = (
        "margin:0 0 .4rem 0;"
        + ("font-weight:600;" if strong else "")
        + ("font-size:.875rem;opacity:.75;" if small else "")
    )
    st.html(f'<p class="literal" style="{style}">{html.escape(str(text))}</p>')


def fix_text(edit: Any, clip: dict | None) -> str:
    """An edit as a sentence: what happens to which row (unknown actions are named as they are)."""
    if edit.action == "relabel":
        was = f" from '{clip['label']}'" if clip else ""
        return f"Relabel row {edit.row}{was} to '{edit.value}'"
    if edit.action == "trim":
        start, end = edit.value
        now = f" (now {clip['start']:.2f}–{clip['end']:.2f} s)" if clip else ""
        return f"Trim row {edit.row} to {float(start):.2f}–{float(end):.2f} s{now}"
    if edit.action == "split":
        return f"Move row {edit.row} to the '{edit.value}' split"
    if edit.action == "drop":
        return f"Drop row {edit.row}" + (f": {edit.value}" if edit.value else "")
    return f"{edit.action.capitalize()} row {edit.row}" + (f": {edit.value}" if edit.value not in (None, "") else "")


KINDS = {
    "invalid_annotation": "The row breaks the manifest's rules (bounds, label, split): it is not indexed.",
    "unreadable_video": "The row's video is missing or cannot be decoded: it is not indexed.",
    "too_few_examples": "Classes under the 200-per-class rule of thumb (under 10 breaks AutoML).",
    "class_imbalance": "The largest class dwarfs the smallest.",
    "likely_mislabel": "Far from its class and inside another's neighbourhood, or a near-identical clip carries "
    "another label.",
    "outlier": "Far from its class and from everything else.",
    "near_duplicate": "Near-identical footage repeated within one split.",
    "split_leak": "The same footage (or one source video) in training and evaluation splits: evaluation "
    "scores would be inflated.",
    "temporal_looseness": "The part of the segment that looks like its class is much shorter than the segment.",
    "spatial_looseness": "A crop matches the class far better than the whole frame: the subject is small or "
    "off-centre.",
    "search_inconsistency": "A text search for the label, or the class's own examples, retrieve other classes.",
    "low_diversity": "One source video, camera set-up or near-identical clips make up the class.",
    "split_candidate": "The class falls into two distinct groups.",
    "confusable_classes": "Two classes mixed in each other's neighbourhoods.",
    "shortcut_risk": "The label is predictable from metadata alone (resolution, fps, duration, folder, brightness).",
    "missing_hard_negatives": "No clip of another label sits close to the class: the model never sees what it is not.",
    "unrepresented_reference": "Reference footage far from all training data.",
    "split_mismatch": "A split lacks classes, has another label mix, or is filmed differently from training.",
    "weak_slice": "The probe lags on a metadata slice (night, a resolution, a folder).",
}


def kind_help(report: dict[str, Any], kind: str) -> str:
    """What a finding kind means (kinds this app does not know yet are named), then what confidence means."""
    meaning = KINDS.get(kind, f"{kind_name(kind)}: a kind of finding this app has no description of yet.")
    return f"{meaning} Confidence: {tip(report, 'confidence')}"


def kind_name(kind: str) -> str:
    """A finding kind in words (kinds this app does not know yet read the same way)."""
    return kind.replace("_", " ")


def escape(text: Any) -> str:
    """User text for a markdown context (a subheader, a warning box): shown exactly (app_pages.literal)."""
    return literal(text)
