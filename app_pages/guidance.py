"""Guidance: hard negatives per class, reference footage, split populations, the evaluation forecast, weak slices."""

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from app_pages.shared import clip_gallery, clip_index, current_audit
from app_pages.words import escape
from auditor.report import confusion_figure

TRAINING_POINTS = 20_000  # training clips drawn under the reference footage

audit = current_audit()
report = audit.report
st.title("Guidance")
st.caption("What fine-tuning guides ask of a dataset beyond tight classes, measured on this audit's report.")
by_row = clip_index(audit).by_row
classes = {c["label"]: c for c in report["classes"]}


def findings_of(kind: str) -> list[dict]:
    return [f for f in report["findings"] if f["kind"] == kind]


def _two_decimals(frame: pd.DataFrame) -> dict:
    """Numbers to two decimals, counts as integers."""
    return {
        c: st.column_config.NumberColumn(format="%d" if c in {"support", "count"} else "%.2f")
        for c in frame.columns
        if pd.api.types.is_numeric_dtype(frame[c])
    }


def not_measured(what: str) -> None:
    st.caption(f"Not measured in this audit ({what}).")


st.subheader("Hard negatives")
if any(c.get("hard_negatives") is not None for c in classes.values()):
    table = pd.DataFrame(
        {
            "label": label,
            "hard negatives": c.get("hard_negatives"),
            "their labels": ", ".join(f"{k} ({v})" for k, v in (c.get("hard_negative_labels") or {}).items()),
        }
        for label, c in classes.items()
    )
    st.dataframe(table, hide_index=True, width="stretch")
    label = st.selectbox("Class", sorted(classes), key="guidance_class")
    for f in findings_of("missing_hard_negatives"):
        if f["labels"][:1] == [label]:
            st.warning(f"missing hard negatives · {escape(f['message'])}. **{escape(f['action'])}**")
    examples = classes[label].get("hard_negative_examples") or []
    st.caption(
        f"The clips of other labels nearest {escape(repr(label))}'s centroid; "
        "★ sits within its spread (a hard negative)."
    )
    clip_gallery(
        report,
        [by_row[e["row"]] for e in examples if e["row"] in by_row],
        highlight={e["clip_id"] for e in examples if e["inside"]},
    )
else:
    not_measured("the hard_negatives check did not run")

st.subheader("Reference footage")
reference = report.get("reference")
if reference:
    cols = st.columns(3)
    cols[0].metric("reference clips", reference["clips"])
    cols[1].metric("unrepresented", reference["unrepresented"])
    cols[2].metric("far below cosine", f"{reference['threshold']:.3f}")
    metadata = pd.DataFrame(reference["metadata"])
    for side in ("training", "reference"):
        metadata[side] = metadata[side].map(lambda d: ", ".join(f"{k}: {v:.2f}" for k, v in d.items()))
    st.dataframe(metadata, hide_index=True, width="stretch")
    step = max(1, len(audit.clips) // TRAINING_POINTS)  # at scale, every step-th clip: an even grey background
    x, y = audit.clips.umap()
    placed = audit.clips.frame(["label"]).assign(x=x, y=y).iloc[::step].dropna(subset=["x"])
    refs = pd.DataFrame([c for c in report.get("reference_clips", []) if c.get("umap")])
    fig = go.Figure()
    if len(placed):
        fig.add_trace(
            go.Scattergl(
                x=placed["x"].tolist(),
                y=placed["y"].tolist(),
                mode="markers",
                name="training" if step == 1 else f"training (every {step}th clip)",
                text=placed["label"].tolist(),
                marker={"size": 6, "color": "#bbb"},
            )
        )
    for represented, name, colour in ((True, "reference", "#1f77b4"), (False, "unrepresented", "#d62728")):
        group = refs[refs["represented"] == represented] if len(refs) else refs
        if len(group):
            fig.add_trace(
                go.Scattergl(
                    x=[u[0] for u in group["umap"]],
                    y=[u[1] for u in group["umap"]],
                    mode="markers",
                    name=name,
                    text=group["nearest_label"],
                    marker={"size": 10, "symbol": "x", "color": colour},
                )
            )
    fig.update_layout(height=420, margin={"l": 0, "r": 0, "t": 10, "b": 0})
    st.plotly_chart(fig, key="reference_map")
    reference_clips = {c["clip_id"]: c for c in report.get("reference_clips", [])}
    for f in findings_of("unrepresented_reference"):
        st.markdown(f"**unrepresented reference footage** · {escape(f['message'])}. {escape(f['action'])}")
        far = [reference_clips[i] for i in f["suggestion"]["reference_clips"][:12] if i in reference_clips]
        clip_gallery({**report, "dataset": reference["dataset"]}, far)
else:
    not_measured("run `auditor audit MANIFEST --reference FOLDER` with footage from where the model will run")

st.subheader("Split populations")
splits = report.get("splits")
if splits:
    counts = pd.DataFrame(
        [{"split": s, "label": label, "clips": n} for s, d in splits["distribution"].items() for label, n in d.items()]
    )
    st.plotly_chart(px.bar(counts, x="split", y="clips", color="label", height=320), key="split_counts")
    max_auc = ((report.get("thresholds") or {}).get("checks") or {}).get("splits", {}).get("max_auc", 0.8)
    max_distance = (
        ((report.get("thresholds") or {}).get("checks") or {}).get("splits", {}).get("max_label_distance", 0.25)
    )
    comparisons = pd.DataFrame(splits["comparisons"]).drop(columns=["unlike_reference"], errors="ignore")
    for column in ("missing_from_split", "missing_from_reference"):
        if column in comparisons:
            comparisons[column] = comparisons[column].map(lambda v: ", ".join(map(str, v or [])) or "none")
    if "auc" in comparisons:
        comparisons["auc"] = comparisons["auc"].map(
            lambda v: "not measured (too few clips)" if v is None else f"{v:.2f}"
        )
    st.dataframe(
        comparisons,
        hide_index=True,
        width="stretch",
        column_config={
            "split": "Split",
            "reference": "Compared with",
            "clips": st.column_config.NumberColumn("Clips", format="%d"),
            "label_distance": st.column_config.NumberColumn(
                "Label-mix distance",
                format="%.2f",
                help=f"0: the same label mix; above {max_distance:.2f} is a finding",
            ),
            "missing_from_split": "Classes missing from the split",
            "missing_from_reference": "Classes missing from training",
            "auc": st.column_config.TextColumn(
                "Shift AUC",
                help=f"How well a classifier tells the split from training (0.5: alike; from {max_auc:.2f}"
                " the split is filmed differently). Measured only with enough clips on both sides.",
            ),
        },
    )
    for f in findings_of("split_mismatch"):
        st.warning(f"split mismatch · {escape(f['message'])}. **{escape(f['action'])}**")
else:
    not_measured("needs at least two splits")

st.subheader("Evaluation forecast")
evaluation = report.get("evaluation")
if evaluation:
    st.caption(
        f"{evaluation['method']}: roughly what an evaluation on held-out clips may show after training a classifier "
        "on these embeddings (frozen features); fine-tuning usually does better."
    )
    averages = pd.DataFrame(evaluation["averages"]).T.reset_index(names="average")
    st.dataframe(averages, hide_index=True, column_config=_two_decimals(averages))
    st.plotly_chart(confusion_figure(evaluation, go), key="confusion")
    confused = pd.DataFrame(evaluation["top_confusions"], columns=["true", "predicted", "count", "share"])
    st.markdown("**Most confused pairs**")
    st.dataframe(confused, hide_index=True, column_config=_two_decimals(confused))
    per_class = pd.DataFrame(evaluation["per_class"])
    st.dataframe(per_class, hide_index=True, width="stretch", column_config=_two_decimals(per_class))
else:
    not_measured("needs two classes with at least two clips each")

st.subheader("Weak slices")
slices = report.get("slices")
if slices:
    params = ((report.get("thresholds") or {}).get("checks") or {}).get("weak_slices", {})
    judged = pd.DataFrame([s for s in slices["slices"] if s["judged"]])
    if len(judged):
        judged["classes_hurt"] = judged["classes_hurt"].map(lambda c: ", ".join(x["label"] for x in c) or "none")
        shown = judged.sort_values("gap", ascending=False).drop(columns=["judged", "weak"], errors="ignore")
        st.dataframe(
            shown,
            hide_index=True,
            width="stretch",
            column_config={
                "column": "Metadata",
                "value": "Slice",
                "size": st.column_config.NumberColumn("Clips", format="%d"),
                "accuracy": st.column_config.NumberColumn("Probe accuracy", format="%.2f"),
                "compared": st.column_config.NumberColumn("Clips compared", format="%d"),
                "expected": st.column_config.NumberColumn(
                    "Expected accuracy", format="%.2f", help="what the same classes score outside the slice"
                ),
                "gap": st.column_config.NumberColumn(
                    "Shortfall",
                    format="%.2f",
                    help=f"expected minus actual accuracy; from {params.get('min_gap', 0.15):.2f} (and z from "
                    f"{params.get('min_z', 2.0):.1f}) the slice is weak",
                ),
                "z": st.column_config.NumberColumn(
                    "Significance (z)",
                    format="%.1f",
                    help="the shortfall in standard errors: 2 or more is unlikely to be chance",
                ),
                "classes_hurt": "Classes hurt most",
            },
        )
        st.caption(
            f"Only slices of at least {params.get('min_size', 10)} clips are judged. A slice is weak when its "
            "shortfall and its significance both pass their thresholds (hover the column names)."
        )
    for f in findings_of("weak_slice"):
        st.warning(f"weak slice · {escape(f['message'])}. **{escape(f['action'])}**")
    if not findings_of("weak_slice"):
        st.success("No metadata slice is clearly worse than the rest.")
else:
    not_measured("the weak_slices check did not run")
