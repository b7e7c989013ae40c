"""Map: the UMAP projection, coloured by label, cluster, split or finding; selected points show and play their clips."""

import base64
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages.hover import hover_thumbnails
from app_pages.literal import literal
from app_pages.shared import PLAYERS, clip_gallery, current_audit, finding_title, thumbnails

MAX_DRAWN = 20_000  # drawn points; filters and selections always apply to all clips
HOVER_THUMBNAILS = 400  # thumbnails sent to the browser for hovering (each is a few kB)
PALETTE = px.colors.qualitative.D3 + px.colors.qualitative.Dark24  # distinct hues first: blue, orange, green, red…

report = current_audit().report
st.title("Map")
clips = pd.DataFrame(report["clips"])
clips = clips[clips["umap"].notna()] if "umap" in clips else clips.iloc[0:0]
if clips.empty:
    st.info("This audit has no map (no clip has a UMAP position).")
    st.stop()
clips["x"], clips["y"] = zip(*clips["umap"])
clips["finding"] = clips["findings"].map(lambda f: f[0] if f else "none")
clips["cluster"] = clips["cluster"].astype(str)
clips["split"] = clips["split"].fillna("–")
clips["file"] = clips["video"].map(lambda v: Path(v).name)

c1, c2 = st.columns([1, 2])
colour = c1.selectbox("Colour by", ["label", "cluster", "split", "finding"], key="map_colour")
labels = c2.multiselect("Classes", sorted(clips["label"].unique()), placeholder="all classes", key="map_classes")
only_flagged = st.toggle("Only clips with findings", key="map_flagged")
view = clips[clips["label"].isin(labels)] if labels else clips
if only_flagged:
    view = view[view["finding"] != "none"]
drawn = view.sample(MAX_DRAWN, random_state=0) if len(view) > MAX_DRAWN else view
if len(drawn) < len(view):
    st.caption(
        f"drawing {len(drawn):,} of {len(view):,} clips (a seeded sample); the filters and selections use all of them"
    )

fig = px.scatter(
    drawn,
    x="x",
    y="y",
    color=colour,
    color_discrete_sequence=PALETTE,
    color_discrete_map={"none": "#c4c4c4"} if colour == "finding" else None,
    category_orders={colour: sorted(drawn[colour].unique())},
    render_mode="webgl",
    height=520,
    hover_data={"row": True, "label": True, "split": True, "finding": True, "file": True, "x": False, "y": False},
    custom_data=["row"],
)
fig.update_traces(marker={"size": 7})
fig.update_layout(
    dragmode="lasso",
    margin={"l": 0, "r": 0, "t": 10, "b": 0},
    xaxis_title=None,
    yaxis_title=None,
    legend={"orientation": "h", "yanchor": "top", "y": -0.1, "xanchor": "left", "x": 0, "title": {"text": colour}},
)
event = st.plotly_chart(fig, key="map", on_select="rerun", selection_mode=("points", "box", "lasso"))
hovered = drawn.head(HOVER_THUMBNAILS)
images = thumbnails(report, hovered["clip_id"].tolist())
hover_thumbnails(
    "map", {str(r): f"data:image/jpeg;base64,{base64.b64encode(images[c]).decode()}"
            for r, c in zip(hovered["row"], hovered["clip_id"]) if c in images},
)  # fmt: skip
if len(drawn) > HOVER_THUMBNAILS:
    st.caption(f"hover thumbnails for {HOVER_THUMBNAILS} of the {len(drawn):,} drawn clips: filter classes for more")

selected = [int(p["customdata"][0]) for p in (event.selection.points if event and event.selection else [])]
typed = st.multiselect("…or pick rows", sorted(clips["row"].tolist()), key="picked_rows")
rows = list(dict.fromkeys(selected + typed))
if not rows:
    st.caption("Select points with the lasso or box tool (or pick rows) to see and play their clips.")
    st.stop()

by_row = {c["row"]: c for c in report["clips"]}
chosen = [by_row[r] for r in rows if r in by_row]
st.subheader(f"{len(chosen)} selected clip(s)")
if len(chosen) > PLAYERS:
    st.info(
        f"Players for the first {PLAYERS} of the {len(chosen)} selected clips (each cuts its segment from the "
        "file); thumbnails for the rest. Select fewer points, or pick rows, to play others."
    )
clip_gallery(report, chosen[:PLAYERS], columns=4, play=True)
if chosen[PLAYERS:]:
    clip_gallery(report, chosen[PLAYERS:48], columns=6)
if len(chosen) > 48:
    st.caption(f"…and {len(chosen) - 48} more selected clips")

accused = [f for f in report["findings"] if set(f["rows"]) & set(rows)]
st.subheader(f"Findings about these clips ({len(accused)})")
for finding in accused:
    with st.container(border=True):
        st.markdown(finding_title(finding))
        st.markdown(literal(finding.get("action") or finding["message"]))
        st.caption(literal(finding["message"]))
if not accused:
    st.caption("No finding accuses these clips (class-level findings are on the Class and Findings pages).")
