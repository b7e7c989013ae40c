"""report.json (a public contract), report.html (self-contained: plotly charts, thumbnails)."""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from auditor.checks.base import CheckResult
from auditor.grades import RULE, grade_classes
from taxonomy_core import schema as S
from taxonomy_core.atomic import write_atomic
from taxonomy_core.findings import SEVERITY_ORDER, Finding

SCHEMA_VERSION = 2
CLASS_KEYS = [
    "label",
    "count",
    "tier",
    "cohesion",
    "separation",
    "knn_agreement",
    "probe_f1",
    "search_consistency",
    "diversity",
    "grade",
]


def build_report(
    ctx, results: list[CheckResult], findings: list[Finding], meta: dict[str, Any], params: dict[str, dict]
) -> dict[str, Any]:
    """`findings`: the indexer's (validation, decoding) and the checks', reconciled; `params`: each check's."""
    findings = sorted(findings, key=lambda f: f.sort_key)
    kinds_by_row: dict[int, list[str]] = {}
    for f in findings:
        for row in f.rows:  # accused rows only: evidence rows are not blamed
            kinds_by_row.setdefault(row, []).append(f.kind)
    classes = _classes(ctx, results)
    grade_classes(classes, findings)
    return _clean(
        {
            "schema_version": SCHEMA_VERSION,
            "model": meta.get("model"),
            "dataset": meta.get("dataset"),
            "thresholds": {"audit": ctx.config.context_dict(), "checks": params},
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **{k: v for k, v in meta.items() if k not in ("model", "dataset")},
            "clips": _clips(ctx, results, kinds_by_row),
            "classes": classes,
            "grading_rule": list(RULE),
            "findings": [f.to_dict() for f in findings],
            "checks": [
                {
                    "name": r.name,
                    "seconds": round(r.seconds, 3),
                    "skipped": r.skipped,
                    "error": r.error,
                    "findings": len(r.findings),
                }
                for r in results
            ],
        }
    )


def _clips(ctx, results, kinds_by_row) -> list[dict[str, Any]]:
    out = []
    for clip in ctx.clips.itertuples(index=False):
        record = {
            "row": int(getattr(clip, S.ROW)),
            "clip_id": getattr(clip, S.CLIP_ID),
            "label": getattr(clip, S.LABEL),
            "split": getattr(clip, S.SPLIT),
            "video": getattr(clip, S.VIDEO),
            "start": float(getattr(clip, S.START)),
            "end": float(getattr(clip, S.END)),
            "umap": None,
            "cluster": -1,
        }
        for result in results:
            record.update(result.clips.get(record["clip_id"], {}))
        record["findings"] = sorted(set(kinds_by_row.get(record["row"], [])))
        out.append(record)
    return out


def _classes(ctx, results) -> list[dict[str, Any]]:
    out = []
    for label in ctx.classes:
        record = {key: None for key in CLASS_KEYS}
        record["label"] = label
        for result in results:
            record.update(result.classes.get(label, {}))
        out.append(record)
    return out


def _clean(value):
    """Plain JSON: numpy scalars to Python, NaN/inf to null, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(report: dict[str, Any], path: Path) -> Path:
    return write_atomic(path, json.dumps(report, indent=1, ensure_ascii=False))


# --- html ---------------------------------------------------------------------------------------


def write_html(report: dict[str, Any], thumbnails: dict[str, str], path: Path) -> Path:
    """One file to open or send: the map, class grades, every finding with the clips' thumbnails."""
    import plotly.graph_objects as go

    map_html = _map(report, go).to_html(full_html=False, include_plotlyjs=True)
    classes_html = _class_chart(report, go).to_html(full_html=False, include_plotlyjs=False)
    parts = [
        f"<h1>Taxonomy audit · {html.escape(str(report['dataset']))}</h1>",
        f"<p>model <code>{html.escape(str(report['model']))}</code> · {len(report['clips'])} clips · "
        f"{len(report['classes'])} classes · generated {report['generated_at']}</p>",
        _summary(report),
        "<h2>Map (UMAP of clip vectors)</h2>",
        map_html,
        "<h2>Classes</h2>",
        classes_html,
        _class_table(report),
        "<h2>Findings</h2>",
        _findings_table(report, thumbnails),
    ]
    head = f"<meta charset='utf-8'><meta name='audit-run' content='{html.escape(str(report.get('run_id')))}'>"
    body = "".join(parts)
    page = f"<!doctype html><html><head>{head}<title>Taxonomy audit</title>{STYLE}</head><body>{body}</body></html>"
    return write_atomic(path, page)


STYLE = """<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
td,th{border:1px solid #ddd;padding:4px 8px;vertical-align:top;text-align:left}
th{background:#f3f3f3}.error{color:#b00020;font-weight:600}.warning{color:#a15c00}.info{color:#355}
img.thumb{height:64px;margin:1px;border-radius:3px}.grade-A{color:#137333}.grade-D{color:#b00020}
</style>"""


def _map(report, go):
    fig = go.Figure()
    by_label: dict[str, list[dict]] = {}
    for clip in report["clips"]:
        if clip.get("umap"):
            by_label.setdefault(clip["label"], []).append(clip)
    for label, clips in sorted(by_label.items()):
        fig.add_trace(
            go.Scattergl(
                x=[c["umap"][0] for c in clips],
                y=[c["umap"][1] for c in clips],
                mode="markers",
                name=label,
                text=[
                    f"row {c['row']} · {c['label']} · {c['split'] or ''} · {', '.join(c['findings'])}" for c in clips
                ],
                hoverinfo="text",
                marker={"size": 7, "line": {"width": [2 if c["findings"] else 0 for c in clips]}},
            )
        )
    fig.update_layout(height=560, margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend_title_text="label")
    return fig


def _class_chart(report, go):
    classes = report["classes"]
    fig = go.Figure()
    for key in ("probe_f1", "knn_agreement", "cohesion"):
        fig.add_trace(go.Bar(name=key, x=[c["label"] for c in classes], y=[c.get(key) for c in classes]))
    fig.update_layout(barmode="group", height=320, margin={"l": 10, "r": 10, "t": 10, "b": 10}, yaxis_range=[0, 1])
    return fig


def finding_counts(report) -> list[tuple[str, str, int]]:
    """(severity, kind, count), errors first: the summary the HTML report and the CLI both show."""
    counts = Counter((f["severity"], f["kind"]) for f in report["findings"])
    return [(s, k, n) for (s, k), n in sorted(counts.items(), key=lambda x: (SEVERITY_ORDER[x[0][0]], x[0][1]))]


def _summary(report) -> str:
    rows = "".join(f"<tr><td class='{s}'>{s}</td><td>{k}</td><td>{n}</td></tr>" for s, k, n in finding_counts(report))
    return f"<table><tr><th>severity</th><th>kind</th><th>findings</th></tr>{rows}</table>"


def _class_table(report) -> str:
    keys = [
        "label",
        "count",
        "tier",
        "grade",
        "probe_f1",
        "knn_agreement",
        "cohesion",
        "separation",
        "nearest_class",
        "search_consistency",
        "diversity",
    ]
    head = "".join(f"<th>{k}</th>" for k in keys) + "<th>reasons</th>"
    body = ""
    for c in report["classes"]:
        cells = "".join(
            f"<td class='grade-{c.get('grade')}'>{_fmt(c.get(k))}</td>"
            if k == "grade"
            else f"<td>{_fmt(c.get(k))}</td>"
            for k in keys
        )
        body += f"<tr>{cells}<td>{html.escape('; '.join(c.get('reasons') or []))}</td></tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def _findings_table(report, thumbnails: dict[str, str]) -> str:
    """Each finding: what to do first, then why; thumbnails of the accused rows, then of the evidence."""
    by_row = {c["row"]: c for c in report["clips"]}

    def images(rows: list[int], note: str) -> str:
        return "".join(
            f"<img class='thumb' title='{note} row {r}' "
            f"src='data:image/jpeg;base64,{thumbnails[by_row[r]['clip_id']]}'>"
            for r in rows[:8]
            if r in by_row and by_row[r]["clip_id"] in thumbnails
        )

    body = ""
    for f in report["findings"]:
        accused = images(f["rows"], "accused")
        evidence = images([e["row"] for e in f["evidence"]], "evidence")
        clips = accused + (f"<span class='evidence'>evidence: {evidence}</span>" if evidence else "")
        body += (
            f"<tr><td class='{f['severity']}'>{f['severity']}</td><td>{f['kind']}</td><td>{f['confidence']:.2f}</td>"
            f"<td><b>{html.escape(f['action'] or '')}</b><br>{html.escape(f['message'])}</td><td>{clips}</td></tr>"
        )
    head = "<tr><th>severity</th><th>kind</th><th>confidence</th><th>action · why</th><th>clips</th></tr>"
    return f"<table>{head}{body}</table>"


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))
