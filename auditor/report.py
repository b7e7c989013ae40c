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
from auditor.cliptable import ClipTable, build_table
from auditor.grades import RULE, grade_classes
from taxonomy_core.atomic import write_atomic
from taxonomy_core.findings import SEVERITY_ORDER, Finding

SCHEMA_VERSION = 4  # 4: the clips moved out of report.json into a Parquet table beside it (auditor.cliptable)
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
) -> tuple[dict[str, Any], ClipTable]:
    """The report and its clip table. `findings`: the indexer's (validation, decoding) and the checks', reconciled;
    `params`: each check's. The clips go to a table of columns, not into the report: at 3 x 10^5 clips their
    records were 232 MB of JSON that every reader parsed whole."""
    findings = sorted(findings, key=lambda f: f.sort_key)
    kinds_by_row: dict[int, list[str]] = {}
    for f in findings:
        for row in f.rows:  # accused rows only: evidence rows are not blamed
            kinds_by_row.setdefault(row, []).append(f.kind)
    classes = _classes(ctx, results)
    grade_classes(classes, findings)
    clips = ClipTable(build_table(ctx, results, kinds_by_row))
    sections = {key: value for r in results for key, value in r.sections.items()}
    if "reference_clips" in sections:
        place_on_map(sections["reference_clips"], clips)
    report = _clean(
        {
            "schema_version": SCHEMA_VERSION,
            "model": meta.get("model"),
            "dataset": meta.get("dataset"),
            "thresholds": {"audit": ctx.config.context_dict(), "checks": params},
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **{k: v for k, v in meta.items() if k not in ("model", "dataset")},
            "clip_count": len(clips),
            "classes": classes,
            "grading_rule": list(RULE),
            "findings": [f.to_dict() for f in findings],
            "neighbours": _neighbours(ctx),
            **sections,
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
    return report, clips


def place_on_map(reference_clips: list[dict[str, Any]], clips: ClipTable) -> None:
    """A reference clip goes where its nearest training clips are (similarity-weighted), as UMAP's transform starts."""
    x, y = clips.umap()
    where = clips.by_id
    for ref in reference_clips:
        found = [
            (where[i], max(s, 0.0) + 1e-6) for i, s in ref["neighbours"] if i in where and np.isfinite(x[where[i]])
        ]
        if found:
            at, weights = np.array([p for p, _ in found]), np.array([w for _, w in found])
            point = weights @ np.stack([x[at], y[at]], axis=1) / weights.sum()
            ref["umap"] = [round(float(v), 4) for v in point]
        ref["findings"] = [] if ref["represented"] else ["unrepresented_reference"]


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


def write_html(report: dict[str, Any], clips: ClipTable, thumbnails: dict[str, str], path: Path) -> Path:
    """One file to open or send: the map, class grades, every finding with the clips' thumbnails."""
    import plotly.graph_objects as go

    map_html = _map(report, clips, go).to_html(full_html=False, include_plotlyjs=True)
    classes_html = _class_chart(report, go).to_html(full_html=False, include_plotlyjs=False)
    parts = [
        f"<h1>Taxonomy audit · {html.escape(str(report['dataset']))}</h1>",
        f"<p>model <code>{html.escape(str(report['model']))}</code> · {len(clips)} clips · "
        f"{len(report['classes'])} classes · generated {report['generated_at']}</p>",
        _summary(report),
        "<h2>Map (UMAP of clip vectors)</h2>",
        map_html,
        "<h2>Classes</h2>",
        classes_html,
        _class_table(report),
        *_guidance(report, go),
        *_fix_plan(report),
        "<h2>Findings</h2>",
        _findings_table(report, clips, thumbnails),
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


def _map(report, clips: ClipTable, go):
    fig = go.Figure()
    x, y = clips.umap()
    frame = clips.frame(["row", "label", "split", "findings"]).assign(x=x, y=y).dropna(subset=["x"])
    for label, part in frame.groupby("label", sort=True):
        fig.add_trace(
            go.Scattergl(
                x=part["x"].tolist(),
                y=part["y"].tolist(),
                mode="markers",
                name=label,
                text=[
                    f"row {r} · {label} · {s or ''} · {', '.join(f)}"
                    for r, s, f in zip(part["row"], part["split"], part["findings"])
                ],
                hoverinfo="text",
                marker={"size": 7, "line": {"width": [2 if len(f) else 0 for f in part["findings"]]}},
            )
        )
    placed = [c for c in report.get("reference_clips", []) if c.get("umap")]
    for represented, name, colour in ((True, "reference", "#777"), (False, "reference, unrepresented", "#000")):
        group = [c for c in placed if c["represented"] == represented]
        if group:
            fig.add_trace(
                go.Scattergl(
                    x=[c["umap"][0] for c in group],
                    y=[c["umap"][1] for c in group],
                    mode="markers",
                    name=name,
                    text=[
                        f"reference row {c['row']} · nearest {c['nearest_label']} ({c['similarity']:.2f})"
                        for c in group
                    ],
                    hoverinfo="text",
                    marker={"size": 9, "symbol": "x", "color": colour},
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


def _neighbours(ctx) -> dict[str, Any] | None:
    """How the shared k-NN was found (exact, clustered in memory, or Milvus's index) and its measured recall@k."""
    graph = ctx.__dict__.get("neighbour_graph")  # only if a check needed it: never computed for the report alone
    return graph.summary() if graph is not None else None


def _summary(report) -> str:
    rows = "".join(f"<tr><td class='{s}'>{s}</td><td>{k}</td><td>{n}</td></tr>" for s, k, n in finding_counts(report))
    table = f"<table><tr><th>severity</th><th>kind</th><th>findings</th></tr>{rows}</table>"
    graph = report.get("neighbours")
    if not graph or graph["recall"] is None:
        return table
    how = f"{graph['method']}, {graph['detail']}" if graph.get("detail") else graph["method"]
    return table + (
        f"<p>Nearest neighbours (k = {graph['k']}) were found approximately ({html.escape(how)}): "
        f"recall@{graph['k']} {graph['recall']:.3f} against exact search on a sample.</p>"
    )


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


def _findings_table(report, clips: ClipTable, thumbnails: dict[str, str]) -> str:
    """Each finding: what to do first, then why; thumbnails of the accused rows, then of the evidence."""
    ids = clips.column("clip_id")
    by_row = {r: ids[i] for r, i in clips.by_row.items() if ids[i] in thumbnails}

    def images(rows: list[int], note: str) -> str:
        return "".join(
            f"<img class='thumb' title='{note} row {r}' src='data:image/jpeg;base64,{thumbnails[by_row[r]]}'>"
            for r in rows[:8]
            if r in by_row
        )

    def reference_images(f) -> str:
        ids = ((f.get("suggestion") or {}).get("reference_clips") or [])[:8]
        return "".join(
            f"<img class='thumb' title='reference clip' src='data:image/jpeg;base64,{thumbnails[i]}'>"
            for i in ids
            if i in thumbnails
        )

    body = ""
    for f in report["findings"]:
        accused = images(f["rows"], "accused") + reference_images(f)
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


# --- guidance sections: evaluation forecast, hard negatives, splits, weak slices, reference footage -------------


def _guidance(report, go) -> list[str]:
    """The sections the guidance checks add, each only when its check ran."""
    parts = []
    if report.get("evaluation"):
        parts += ["<h2>Evaluation forecast</h2>", _evaluation(report["evaluation"], go)]
    if any(c.get("hard_negatives") is not None for c in report["classes"]):
        parts += ["<h2>Hard negatives</h2>", _hard_negatives(report)]
    if report.get("splits"):
        parts += ["<h2>Split populations</h2>", _splits(report["splits"])]
    if report.get("slices"):
        parts += ["<h2>Weak slices</h2>", _slices(report["slices"])]
    if report.get("reference"):
        parts += ["<h2>Reference footage</h2>", _reference(report["reference"])]
    return parts


def _fix_plan(report) -> list[str]:
    """Class x split counts before and after every proposed fix, and what the plan could not repair (once)."""
    plan = report.get("fix_plan")
    if not plan or not plan.get("table"):
        return []
    splits = sorted({s for row in plan["table"] for s in (*row["before"], *row["after"])})
    rows = [
        [row["label"], *(f"{row['before'].get(s, 0)} → {row['after'].get(s, 0)}" for s in splits), row["status"]]
        for row in plan["table"]
    ]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in plan.get("notes", []))
    return [
        "<h2>The fix set, applied whole</h2>",
        "<p>Clips per class and split, before → after every proposed edit (a re-split moves whole source videos "
        "and groups of copies where drops and moves would leave a class without evaluation clips).</p>",
        _table(["class", *(s or "no split" for s in splits), "status"], rows),
        f"<ul>{notes}</ul>" if notes else "",
    ]


def _table(head: list[str], rows: list[list]) -> str:
    cells = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + f"</tr>{cells}</table>"


def confusion_figure(evaluation: dict, go):
    """Rows: the true class; columns: the probe's prediction; colour: share of the true class (recall per cell)."""
    labels = evaluation["confusion_matrix"]["labels"]
    counts = np.array(evaluation["confusion_matrix"]["counts"], dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = go.Figure(
        go.Heatmap(
            z=shares,
            x=labels,
            y=labels,
            text=counts.astype(int),
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=1,
            hovertemplate="true %{y} · predicted %{x}: %{text} clips (%{z:.0%})<extra></extra>",
        )
    )
    size = min(900, 220 + 28 * len(labels))
    fig.update_layout(height=size, width=size + 120, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    fig.update_xaxes(title="predicted")
    fig.update_yaxes(title="true", autorange="reversed")
    return fig


def _evaluation(evaluation: dict, go) -> str:
    averages = [
        [name, *(a.get(k) for k in ("precision", "recall", "f1", "average_precision"))]
        for name, a in evaluation["averages"].items()
    ]
    per_class = [
        [c["label"], c["precision"], c["recall"], c["f1"], c["average_precision"], c["support"]]
        for c in evaluation["per_class"]
    ]
    confused = [[c["true"], c["predicted"], c["count"], c["share"]] for c in evaluation["top_confusions"]]
    return (
        f"<p>{html.escape(evaluation['method'])} · {evaluation['clips']} clips · accuracy "
        f"{evaluation['accuracy']:.3f}: what a fine-tuned model's evaluation tab may show, from frozen features</p>"
        + _table(["average", "precision", "recall", "F1", "average precision"], averages)
        + confusion_figure(evaluation, go).to_html(full_html=False, include_plotlyjs=False)
        + "<h3>Most confused pairs</h3>"
        + (_table(["true", "predicted as", "clips", "share of the class"], confused) if confused else "<p>none</p>")
        + _table(["class", "precision", "recall", "F1", "average precision", "support"], per_class)
    )


def _hard_negatives(report) -> str:
    rows = []
    for c in report["classes"]:
        near = ", ".join(
            f"row {e['row']} {e['label']} ({e['similarity']:.2f})" for e in c.get("hard_negative_examples") or []
        )
        labels = ", ".join(f"{k}: {v}" for k, v in (c.get("hard_negative_labels") or {}).items())
        rows.append([c["label"], c.get("hard_negatives"), labels or "none", near])
    return "<p>Clips of other labels within each class's own spread: what teaches the model its boundary.</p>" + _table(
        ["class", "hard negatives", "their labels", "nearest other-label clips (cosine to the centroid)"], rows
    )


def _splits(splits: dict) -> str:
    names = list(splits["distribution"])
    labels = sorted({label for d in splits["distribution"].values() for label in d})
    counts = [[label, *(splits["distribution"][s].get(label, 0) for s in names)] for label in labels]
    comparisons = [
        [
            c["split"],
            c["clips"],
            c["label_distance"],
            c["auc"],
            ", ".join(c["missing_from_split"]) or "–",
            ", ".join(c["missing_from_reference"]) or "–",
        ]
        for c in splits["comparisons"]
    ]
    return (
        _table(["class", *names], counts)
        + f"<p>Each split against {html.escape(str(splits['reference']))}: label-mix distance (total variation) "
        "and the AUC of a classifier telling the two apart at the same label mix (0.5: one population).</p>"
        + _table(
            [
                "split",
                "clips",
                "label distance",
                "shift AUC",
                "classes it lacks",
                f"classes {splits['reference']} lacks",
            ],
            comparisons,
        )
    )


def _slices(slices: dict) -> str:
    judged = sorted((s for s in slices["slices"] if s["judged"]), key=lambda s: -s["gap"])
    rows = [
        [
            s["column"],
            s["value"],
            s["size"],
            s["accuracy"],
            s["expected"],
            s["gap"],
            s["z"],
            ", ".join(c["label"] for c in s["classes_hurt"]) or "–",
            "weak" if s["weak"] else "",
        ]
        for s in judged
    ]
    return "<p>Probe accuracy per metadata slice against what the same classes reach elsewhere.</p>" + _table(
        ["column", "value", "clips", "accuracy", "expected", "gap", "z", "classes hurt", ""], rows
    )


def _reference(reference: dict) -> str:
    rows = [
        [
            m["attribute"],
            json.dumps(m["training"]),
            json.dumps(m["reference"]),
            "yes" if m["differs"] else "no",
            m["note"],
        ]
        for m in reference["metadata"]
    ]
    groups = [[g["group"], g["size"], g["nearest_class"], g["similarity"]] for g in reference["groups"]]
    return (
        f"<p>{reference['clips']} reference clips from <code>{html.escape(reference['source'])}</code> "
        f"(indexed as <code>{html.escape(reference['dataset'])}</code>, {len(reference['not_indexed'])} not indexed); "
        f"{reference['unrepresented']} are farther from all training data than cosine {reference['threshold']:.3f}. "
        "They are the crosses on the map.</p>"
        + _table(["attribute", "training", "reference", "differs", "note"], rows)
        + (_table(["group", "reference clips", "nearest class", "mean nearest cosine"], groups) if groups else "")
    )
