"""Class: one class against the dataset; its suspicious clips, sub-groups, neighbours, time and space checks."""

import io

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pyarrow as pa
import streamlit as st
from PIL import Image, ImageDraw

from app_pages.literal import literal
from app_pages.shared import clip_gallery, clip_index, clip_title, current_audit, finding_title, thumbnails
from app_pages.words import escape, name, plain, tip

audit = current_audit()
report = audit.report
classes = {c["label"]: c for c in report["classes"]}
st.title("Class")
label = st.selectbox("Class", sorted(classes), key="class_label")
metrics = classes[label]
table = pd.DataFrame(report["classes"])
index = clip_index(audit)
by_row = index.by_row
positions = index.members.positions[label]  # the class's clips, read from columns: no record made a member
member_rows = index.table.column("row")[positions]
rows = set(member_rows.tolist())


def timed_mask(table, positions: np.ndarray) -> np.ndarray:
    """Which of these clips have a timeline (a null struct where the audit recorded none)."""
    if "timeline" not in table.columns:
        return np.zeros(len(positions), bool)
    taken = table.arrow("timeline").take(pa.array(positions, pa.int64()))
    return taken.is_valid().to_numpy(zero_copy_only=False)


def column_titles(table, positions: np.ndarray) -> list[str]:
    """`clip_title` of these clips from their columns (a picker of a class's 20,000 clips makes no record)."""
    columns = [table.column(c)[positions].tolist() for c in ("row", "video", "start", "end")]
    return [clip_title({"row": r, "video": v, "start": a, "end": b}) for r, v, a, b in zip(*columns)]


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def and_list(items: list) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def findings_of(kind: str, accused_only: bool = True) -> list[dict]:
    """This class's findings of one kind: those accusing its clips, or naming it."""
    return [
        f
        for f in report["findings"]
        if f["kind"] == kind and (set(f["rows"]) & rows if accused_only else label in f["labels"])
    ]


st.subheader(f"{escape(label)} · grade {metrics.get('grade')}", help=tip(report, "grade"))
plain("; ".join(metrics.get("reasons") or []))
cols = st.columns(5)
for col, key in zip(cols, ["count", "probe_f1", "knn_agreement", "cohesion", "search_consistency"]):
    value = metrics.get(key)
    median = table[key].median() if key in table and table[key].notna().any() else None
    delta = None if value is None or median is None or key == "count" else f"{value - median:+.2f} vs median"
    shown = "–" if value is None else (value if key == "count" else f"{value:.2f}")
    col.metric(name(key), shown, delta, help=tip(report, key))
separation = metrics.get("separation")
st.caption(
    f"tier {metrics.get('tier')} · nearest class **{metrics.get('nearest_class')}**"
    + (f" (separation {separation:.2f})" if separation is not None else "")
    + f" · {plural(metrics.get('source_videos') or 0, 'source video')}"
)

suspects = findings_of("likely_mislabel") + findings_of("outlier")
split = findings_of("split_candidate", accused_only=False)
boxed = findings_of("spatial_looseness")
shown_rows = [r for f in suspects[:12] for r in f["rows"][:1]] + [f["rows"][0] for f in boxed]
shown_rows += [r for group in (split[0]["suggestion"]["groups"] if split else []) for r in group[:6]]
thumbnails(report, [by_row[r]["clip_id"] for r in shown_rows if r in by_row])  # the page's, in one read
st.subheader(f"Outliers and likely mislabels ({len(suspects)})")
for f in suspects[:12]:
    with st.container(border=True):
        st.markdown(finding_title(f))
        plain(f.get("action") or f["message"], strong=True)
        plain(f["message"], small=True)
clip_gallery(report, [by_row[r] for f in suspects[:12] for r in f["rows"][:1] if r in by_row])

st.subheader("Sub-groups")
if split:
    groups = split[0]["suggestion"]["groups"]
    st.info(escape(f"{split[0].get('action') or ''} {split[0]['message']}"))
    for i, group in enumerate(groups):
        st.caption(f"group {i + 1}: {plural(len(group), 'clip')}")
        clip_gallery(report, [by_row[r] for r in group[:6] if r in by_row])
else:
    st.write(f"The clips of {escape(label)} form one group: the audit found no distinct sub-groups in it.")
clusters = pd.Series(index.table.column("cluster")[positions]).dropna().astype(int).value_counts().sort_index()
parts = [plural(n, "clip") + (" as noise" if k < 0 else f" in cluster {k}") for k, n in clusters.items()]
if parts:
    st.caption(
        f"On the map's dataset-wide HDBSCAN clustering (colour the Map by cluster), {label} has {and_list(parts)}. "
        "That clustering is of the whole dataset, so it can group differently from the sub-groups above."
    )

st.subheader("Nearest classes")
confusions = findings_of("confusable_classes", accused_only=False)
nearest = metrics.get("nearest_class")
st.write(f"nearest centroid: **{literal(nearest)}**")
for f in confusions:
    st.warning(escape(f"{f.get('action') or ''} {f['message']}"))

st.subheader("Temporal tightness")
timed = positions[timed_mask(index.table, positions)]
loose_rows = {f["rows"][0]: f for f in findings_of("temporal_looseness")}
titles = dict(zip(index.table.column("row")[timed].tolist(), column_titles(index.table, timed)))
picked = (
    st.selectbox(
        "Clip",
        sorted(titles, key=lambda r: (r not in loose_rows, r)),
        format_func=lambda r: titles[r] + (" · loose" if r in loose_rows else ""),
        key="timeline_row",
    )
    if titles
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
    fig.update_layout(
        height=320,
        xaxis_title="seconds",
        yaxis_title="cosine",
        margin={"t": 10},
        legend={"orientation": "h", "yanchor": "top", "y": -0.3, "xanchor": "left", "x": 0},  # clear of the toolbar
    )
    st.plotly_chart(fig, key="timeline")
    if picked in loose_rows:
        plain(loose_rows[picked].get("action") or "", strong=True)
        plain(loose_rows[picked]["message"], small=True)
else:
    st.caption("No clip of this class has a timeline (the model or the audit did not sample one).")

st.subheader("Spatial tightness")
if not boxed:
    st.write(
        f"No clip of {escape(label)} is cut loosely in space: no crop matches the class clearly better than the frame."
    )
images = thumbnails(report, [by_row[f["rows"][0]]["clip_id"] for f in boxed if f["rows"][0] in by_row])
for start in range(0, len(boxed), 3):
    for col, finding in zip(st.columns(3), boxed[start : start + 3]):
        clip = by_row.get(finding["rows"][0])
        box = (finding.get("suggestion") or {}).get("box")
        with col:
            if clip and clip["clip_id"] in images and box:
                picture = Image.open(io.BytesIO(images[clip["clip_id"]])).convert("RGB")
                w, h = picture.size
                x0, y0, x1, y1 = box
                outline = [x0 * w, y0 * h, x1 * w - 1, y1 * h - 1]
                ImageDraw.Draw(picture).rectangle(outline, outline=(255, 40, 40), width=3)
                st.image(picture, caption="suggested crop in red", width="stretch")
            plain(finding.get("action") or "", strong=True)
            plain(finding["message"] + (f" · {clip_title(clip)}" if clip else ""), small=True)
