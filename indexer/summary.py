"""The indexing job's summary: a table for people (both CLIs print it) and a dict for `--report`."""

from __future__ import annotations

from indexer.pipeline import IndexReport
from taxonomy_core.terminal import console, table

MAX_LISTED_FAILURES = 50


def print_summary(report: IndexReport) -> None:
    counts = table("", "", title=f"{report.dataset} · {report.model_id} · {report.uri}", show_header=False)
    rows = [
        ("manifest rows", report.manifest.row_count),
        ("indexed now", report.indexed),
        ("already present", report.already_present),
        ("labels/splits updated in place", report.relabelled),
        ("failed (not indexed)", len(report.failed)),
        ("stored clips no longer in the manifest", report.stale),
        ("images embedded", report.frames),
    ]
    for name, value in rows:
        counts.add_row(name, str(value))
    timing = "  ".join(f"{k} {v:.1f}s" for k, v in report.timings.items())
    counts.add_row("time by stage", timing)
    console.print(counts)
    if report.failed:
        failures = table("row", "video", "kind", "reason", title="rows not indexed")
        for failure in sorted(report.failed, key=lambda f: f.row)[:MAX_LISTED_FAILURES]:
            failures.add_row(str(failure.row), failure.video, failure.kind, failure.reason)
        console.print(failures)
        if len(report.failed) > MAX_LISTED_FAILURES:
            console.print(
                f"... and {len(report.failed) - MAX_LISTED_FAILURES} more: pass --report FILE for all of them"
            )
    warnings = [f for f in report.findings if f.severity != "error" or not f.rows]
    for finding in warnings:
        console.print(f"[yellow]{finding.severity}[/yellow] {finding.kind}: {finding.message}")


def summary_dict(report: IndexReport) -> dict:
    return {
        "dataset": report.dataset,
        "model": report.model_id,
        "uri": report.uri,
        "manifest": str(report.manifest.path),
        "format": report.manifest.format,
        "rows": report.manifest.row_count,
        "indexed": report.indexed,
        "already_present": report.already_present,
        "relabelled": report.relabelled,
        "stale": report.stale,
        "timings": dict(report.timings),
        "failed": [f.__dict__ for f in sorted(report.failed, key=lambda f: f.row)],
        "findings": [f.to_dict() for f in report.findings],
    }
