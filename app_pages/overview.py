"""Overview: where to start (the few fixes that matter most), the health summary linked to the findings,
and the class table with grades and reasons in words."""

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages.literal import literal
from app_pages.shared import current_audit, live, plan_of
from app_pages.words import column_config, kind_name, plain, tip
from auditor import service

START_HERE = 4

audit = current_audit()
report = audit.report
uri = st.session_state["uri"]
models = live(service.stored_models, uri, report["dataset"])
if models == []:
    st.warning(
        f"Milvus at {literal(uri)} has no dataset {literal(repr(report['dataset']))}: "
        "thumbnails, players and live search are off."
    )
elif models and report["model"] not in models:
    st.error(
        f"This audit was made with {literal(report['model'])} but the store holds {literal(repr(report['dataset']))} "
        f"embedded with {literal(', '.join(models))}: re-run the audit with that model, or pick the store it was "
        "made with."
    )
st.title(f"Audit of {literal(report['dataset'])}")
st.caption(
    f"model {literal(report['model'])} · manifest {literal(report.get('manifest', '?'))} · generated "
    f"{literal(report.get('generated_at', '?'))}"
)

classes = pd.DataFrame(report["classes"])
findings = pd.DataFrame(
    report["findings"], columns=["kind", "severity", "confidence", "action", "rows", "labels", "message"]
)
plan = plan_of(audit)


def open_findings(severity: str | None = None, kind: str | None = None) -> None:
    """The Findings page, filtered to what was clicked."""
    st.session_state["finding_severities"] = [severity] if severity else []
    st.session_state["finding_kinds"] = [kind] if kind else []


def open_review(key: str | None = None) -> None:
    st.session_state["review_at"] = key


with st.container(border=True, key="start_here"):
    st.subheader("Start here")
    fixes, kinds_seen = [], set()
    for k, f in zip(plan.keys, plan.findings):  # the first fix of each kind, in review order: one of each problem
        if (plan.edits.get(k) or f["severity"] == "error") and f["kind"] not in kinds_seen:
            fixes.append((k, f))
            kinds_seen.add(f["kind"])
    for key, finding in (fixes or list(zip(plan.keys, plan.findings)))[:START_HERE]:
        left, right = st.columns([6, 1])
        with left:
            plain(
                f"{finding['severity']} · {kind_name(finding['kind'])}: {finding.get('action') or finding['message']}"
            )
        if right.button("Review", key=f"start_{key}", on_click=open_review, args=(key,)):
            st.switch_page("app_pages/review.py")
    if not plan.keys:
        st.success("The audit found nothing to fix.")
    elif st.button(
        f"Review all {len(plan.keys)} findings, most severe first (keyboard: A / X / S / U)",
        key="start_review",
        type="primary",
        on_click=open_review,
    ):
        st.switch_page("app_pages/review.py")

cols = st.columns(5)
cols[0].metric("clips", len(audit.clips), help="Clips the audit embedded and checked.")
cols[1].metric("classes", len(classes))
cols[2].metric(
    "not indexed", report.get("not_indexed", 0), help="Manifest rows that could not be read: each is a finding."
)
for col, severity in zip(cols[3:], ("error", "warning")):
    n = int((findings["severity"] == severity).sum())
    col.metric(f"{severity}s", n, help="error: breaks training or evaluation; warning: a likely problem")
    if col.button(
        f"See the {n} {severity}s", key=f"see_{severity}", disabled=not n, on_click=open_findings, args=(severity,)
    ):
        st.switch_page("app_pages/findings.py")

left, right = st.columns(2)
with left:
    st.subheader("Findings by kind")
    if findings.empty:
        st.success("No findings.")
    else:
        counts = findings.groupby(["kind", "severity"]).size().reset_index(name="findings")
        colours = {"error": "#b00020", "warning": "#e69500", "info": "#4a7a8c"}
        st.plotly_chart(
            px.bar(
                counts,
                x="findings",
                y="kind",
                color="severity",
                orientation="h",
                color_discrete_map=colours,
                height=80 + 28 * counts["kind"].nunique(),
            ),
            key="kinds",
        )
        kind = st.selectbox(
            "Open the findings of a kind",
            sorted(counts["kind"].unique()),
            index=None,
            format_func=kind_name,
            key="overview_kind",
            placeholder="pick a kind…",
        )
        if kind:
            open_findings(kind=kind)
            st.session_state.pop("overview_kind", None)
            st.switch_page("app_pages/findings.py")
with right:
    st.subheader("Tiers and grades", help=tip(report, "grade"))
    tiers = classes.pivot_table(index="tier", columns="grade", values="label", aggfunc="count", fill_value=0)
    tiers = tiers.reindex(columns=[g for g in "ABCD" if g in tiers.columns])
    st.dataframe(
        tiers, width="stretch", column_config={"tier": st.column_config.TextColumn("tier", help=tip(report, "tier"))}
    )
    st.caption("classes per tier (rows) and grade (columns). " + (tip(report, "tier") or ""))

st.subheader("Classes")
query = st.text_input("Filter classes", placeholder="part of a label", key="class_filter")
c1, c2 = st.columns(2)
grades = c1.multiselect(
    "Grades", sorted(classes["grade"].dropna().unique()), default=sorted(classes["grade"].dropna().unique())
)
tiers_shown = c2.multiselect("Tiers", sorted(classes["tier"].unique()), default=sorted(classes["tier"].unique()))
shown = classes[classes["grade"].isin(grades) & classes["tier"].isin(tiers_shown)]
if query:
    shown = shown[shown["label"].str.contains(query, case=False, regex=False)]
shown = shown.assign(reasons=shown["reasons"].map(lambda r: "; ".join(r or [])))
columns = [
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
    "reasons",
]
present = [c for c in columns if c in shown]
st.dataframe(shown[present], hide_index=True, width="stretch", column_config=column_config(report, present))
with st.expander("Why each class got its grade"):
    for _, row in shown.iterrows():
        plain(f"{row['label']} · grade {row.get('grade')}: {row['reasons'] or 'no cap applied'}", small=True)
st.caption(f"{len(shown)} of {len(classes)} classes · sort by clicking a column header")

plan = report.get("fix_plan") or {}
if plan.get("table"):
    st.subheader(
        "The fix set, applied whole",
        help="Clips per class and split before → after every proposed edit. Where drops and moves would leave a "
        "class without evaluation clips, the audit re-splits whole source videos and groups of copies instead.",
    )
    splits = sorted({s for row in plan["table"] for s in (*row["before"], *row["after"])})
    table = pd.DataFrame(
        [
            {
                "class": row["label"],
                **{s or "no split": f"{row['before'].get(s, 0)} → {row['after'].get(s, 0)}" for s in splits},
                "status": row["status"],
            }
            for row in plan["table"]
        ]
    )
    st.dataframe(table, hide_index=True, width="stretch")
    for note in plan.get("notes", []):
        plain(note, small=True)
