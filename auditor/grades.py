"""Class grades from a stated rule over each class's metrics and the findings about it (written into the report)."""

from __future__ import annotations

from taxonomy_core.findings import Finding

LETTERS = "ABCD"
# The rule, in the order it is applied; the report and docs/report.md carry these sentences.
RULE = (
    "Start from the cross-validated linear-probe F1 (k-NN agreement without a probe): "
    "A >= 0.90, B >= 0.75, C >= 0.50, else D.",
    "A class under AutoML's minimum count is D.",
    "An error finding about the class's clips (a split leak, a class imbalance error) caps it at C.",
    "A text-search precision under 0.30 caps it at C (a model with a text space only).",
    "Likely mislabels making up more than 10% of the class cap it at C.",
    "A warning about the class as a whole (low diversity, confusable classes, search inconsistency, "
    "shortcut risk) caps it at B.",
)
NOT_ABOUT_THE_CLASS = {"invalid_annotation", "unreadable_video"}  # those rows are simply not indexed
CLASS_WARNINGS = {"low_diversity", "confusable_classes", "search_inconsistency", "shortcut_risk"}


def grade_classes(classes: list[dict], findings: list[Finding]) -> None:
    """Set `grade` and `reasons` on each class record, naming every cap that applied."""
    for record in classes:
        record["grade"], record["reasons"] = grade(record, [f for f in findings if record["label"] in f.labels])


def grade(m: dict, findings: list[Finding]) -> tuple[str, list[str]]:
    score = m["probe_f1"] if m.get("probe_f1") is not None else m.get("knn_agreement") or 0.0
    letter = "A" if score >= 0.9 else "B" if score >= 0.75 else "C" if score >= 0.5 else "D"
    reasons = _metric_reasons(m)
    caps: list[tuple[str, str]] = []
    for f in findings:
        if f.kind == "too_few_examples" and f.severity == "error":
            caps.append(("D", f"{m['count']} clips, under AutoML's minimum"))
        elif f.severity == "error" and f.kind not in NOT_ABOUT_THE_CLASS:
            caps.append(("C", f"an error: {f.kind.replace('_', ' ')} ({f.action or f.message})"))
        elif f.severity == "warning" and f.kind in CLASS_WARNINGS:
            caps.append(("B", f"a warning: {f.kind.replace('_', ' ')}"))
    text = m.get("text_precision")
    if text is not None and text < 0.3:
        caps.append(("C", f"a text search for the label finds only {text:.0%} of its clips"))
    mislabelled = sum(1 for f in findings if f.kind == "likely_mislabel" and f.labels[:1] == (m["label"],))
    if m["count"] and mislabelled / m["count"] > 0.1:
        caps.append(("C", f"{mislabelled} of {m['count']} clips look mislabelled"))
    for cap, reason in dict.fromkeys(caps):
        if LETTERS.index(cap) > LETTERS.index(letter):
            letter = cap
        reasons.append(f"capped at {cap}: {reason}")
    return letter, reasons or ["coherent and well separated"]


def _metric_reasons(m: dict) -> list[str]:
    reasons = []
    if m.get("probe_f1") is not None and m["probe_f1"] < 0.9:
        confused = f", mostly confused with {m['probe_confused_with']!r}" if m.get("probe_confused_with") else ""
        reasons.append(f"a linear probe reaches F1 {m['probe_f1']:.2f}{confused}")
    if m.get("knn_agreement") is not None and m["knn_agreement"] < 0.7:
        reasons.append(f"only {m['knn_agreement']:.0%} of nearest neighbours share the label")
    if m.get("margin") is not None and m["margin"] < 0.02:
        reasons.append(
            f"clips sit about as close to {m['nearest_class']!r} as to their own centroid (margin {m['margin']:.3f})"
        )
    if m.get("tier") == "tail":
        reasons.append(f"a tail class: {m['count']} examples")
    return reasons
