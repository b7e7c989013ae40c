"""Class: one class against the dataset; its suspicious clips, sub-clusters, neighbours, time and space checks."""

import io

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image, ImageDraw

from app_pages.shared import clip_gallery, current_report, thumbnails

report = current_report()
classes = {c["label"]: c for c in report["classes"]}
st.title("Class")
label = st.selectbox("Class", sorted(classes), key="class_label")
metrics = classes[label]
table = pd.DataFrame(report["classes"])

st.subheader(f"{label} · grade {metrics.get('grade')}")
st.write("; ".join(metrics.get("reasons") or []))
cols = st.columns(5)
for col, key in zip(cols, ["count", "probe_f1", "knn_agreement", "cohesion", "search_consistency"]):
    value = metrics.get(key)
    median = table[key].median() if key in table and table[key].notna().any() else None
    delta = None if value is None or median is None or key == "count" else f"{value - median:+.2f} vs median"
    col.metric(key.replace("_", " "), "–" if value is None else (value if key == "count" else f"{value:.2f}"), delta)
st.caption(
    f"tier {metrics.get('tier')} · nearest class **{metrics.get('nearest_class')}** (separation "
    f"{metrics.get('separation') or 0:.2f}) · "
    f"{metrics.get('source_videos', '?')} source videos · HDBSCAN clusters {metrics.get('clusters')}"
)

members = [c for c in report["clips"] if c["label"] == label]
rows = {c["row"] for c in members}
suspects = [f for f in report["findings"] if set(f["rows"]) & rows and f["kind"] in ("likely_mislabel", "outlier")]
st.subheader(f"Outliers and likely mislabels ({len(suspects)})")
by_row = {c["row"]: c for c in report["clips"]}
for f in suspects[:12]:
    st.write(f"**{f['kind']}** · {f['message']}")
clip_gallery(report, [by_row[r] for f in suspects[:12] for r in f["rows"][:1] if r in by_row])

st.subheader("Sub-clusters")
groups = pd.Series([c["cluster"] for c in members]).value_counts()
st.write(", ".join(f"cluster {k}: {v} clips" for k, v in groups.items()))
split = [f for f in report["findings"] if f["kind"] == "split_candidate" and label in f["labels"]]
if split:
    st.info(split[0]["message"])
    for i, group in enumerate(split[0]["suggestion"]["groups"]):
        st.caption(f"group {i + 1}")
        clip_gallery(report, [by_row[r] for r in group[:6] if r in by_row])

st.subheader("Nearest classes")
confusions = [f for f in report["findings"] if f["kind"] == "confusable_classes" and label in f["labels"]]
nearest = metrics.get("nearest_class")
st.write(f"nearest centroid: **{nearest}**" + "".join(f"\n\n⚠ {f['message']}" for f in confusions))

st.subheader("Temporal tightness")
timed = [c for c in members if c.get("timeline")]
loose_rows = {f["rows"][0]: f for f in report["findings"] if f["kind"] == "temporal_looseness"}
timed.sort(key=lambda c: (c["row"] not in loose_rows, c["row"]))
picked = (
    st.selectbox(
        "Clip",
        [c["row"] for c in timed],
        format_func=lambda r: f"row {r}" + (" · loose" if r in loose_rows else ""),
        key="timeline_row",
    )
    if timed
    else None
)
if picked is not None:
    clip = by_row[picked]
    fig = go.Figure(
        go.Scatter(
            x=clip["timeline"]["times"],
            y=clip["timeline"]["similarity"],
            mode="lines+markers",
            name="to class prototype",
        )
    )
    if clip["timeline"].get("text_similarity"):
        fig.add_trace(
            go.Scatter(
                x=clip["timeline"]["times"],
                y=clip["timeline"]["text_similarity"],
                mode="lines",
                name="to the label's text",
                line={"dash": "dot"},
            )
        )
    if picked in loose_rows:
        s = loose_rows[picked]["suggestion"]
        fig.add_vrect(x0=s["start"], x1=s["end"], fillcolor="green", opacity=0.15, annotation_text="suggested trim")
    for cut in clip.get("shot_cuts") or []:
        fig.add_vline(x=cut, line_dash="dash", line_color="grey")
    fig.update_layout(height=300, xaxis_title="seconds", yaxis_title="cosine", margin={"t": 10})
    st.plotly_chart(fig, key="timeline")
    if picked in loose_rows:
        st.write(loose_rows[picked]["message"])

st.subheader("Spatial tightness")
boxed = sorted((c for c in members if c.get("best_box")), key=lambda c: -c.get("crop_gain", 0))[:6]
images = thumbnails(st.session_state["uri"], report["dataset"], report["model"], tuple(c["clip_id"] for c in boxed))
for col, clip in zip(st.columns(6), boxed):
    with col:
        if clip["clip_id"] in images:
            picture = Image.open(io.BytesIO(images[clip["clip_id"]])).convert("RGB")
            w, h = picture.size
            x0, y0, x1, y1 = clip["best_box"]
            ImageDraw.Draw(picture).rectangle([x0 * w, y0 * h, x1 * w - 1, y1 * h - 1], outline=(255, 40, 40), width=3)
            st.image(picture, width="stretch")
        st.caption(f"row {clip['row']} · crop gain {clip.get('crop_gain', 0):+.2f}")
