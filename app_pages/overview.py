"""Overview: health summary and the class table with grades and reasons."""

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages.literal import literal
from app_pages.shared import current_audit, live
from auditor import service

report = current_audit().report
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
cols = st.columns(5)
cols[0].metric("clips", len(report["clips"]))
cols[1].metric("classes", len(classes))
cols[2].metric("not indexed", report.get("not_indexed", 0))
cols[3].metric("errors", int((findings["severity"] == "error").sum()))
cols[4].metric("warnings", int((findings["severity"] == "warning").sum()))

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
                height=360,
            ),
            key="kinds",
        )
with right:
    st.subheader("Tiers and grades")
    tiers = classes.groupby(["tier", "grade"]).size().reset_index(name="classes")
    st.plotly_chart(
        px.bar(tiers, x="tier", y="classes", color="grade", height=360, category_orders={"grade": list("ABCD")}),
        key="tiers",
    )

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
st.dataframe(shown[[c for c in columns if c in shown]], hide_index=True, width="stretch")
st.caption(f"{len(shown)} of {len(classes)} classes · sort by clicking a column header")
