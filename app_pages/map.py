"""Map: the UMAP projection, coloured by label, cluster, split or finding; selected points show their clips."""

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages.shared import clip_gallery, current_report

MAX_DRAWN = 20_000  # drawn points; filters and selections always apply to all clips

report = current_report()
st.title("Map")
clips = pd.DataFrame(report["clips"])
clips = clips[clips["umap"].notna()]
clips["x"], clips["y"] = zip(*clips["umap"]) if len(clips) else ([], [])
clips["finding"] = clips["findings"].map(lambda f: f[0] if f else "none")
clips["cluster"] = clips["cluster"].astype(str)
clips["split"] = clips["split"].fillna("–")

c1, c2 = st.columns([1, 2])
colour = c1.selectbox("Colour by", ["label", "cluster", "split", "finding"])
labels = c2.multiselect("Classes", sorted(clips["label"].unique()), placeholder="all classes")
only_flagged = st.toggle("Only clips with findings")
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
    render_mode="webgl",
    height=620,
    hover_data={"row": True, "label": True, "split": True, "finding": True, "x": False, "y": False},
    custom_data=["row"],
)
fig.update_traces(marker={"size": 6})
fig.update_layout(dragmode="lasso", margin={"l": 0, "r": 0, "t": 10, "b": 0}, xaxis_title=None, yaxis_title=None)
event = st.plotly_chart(fig, key="map", on_select="rerun", selection_mode=("points", "box", "lasso"))

selected = [int(p["customdata"][0]) for p in (event.selection.points if event and event.selection else [])]
typed = st.multiselect("…or pick rows", sorted(view["row"].tolist()), default=[], key="picked_rows")
rows = list(dict.fromkeys(selected + typed))
if rows:
    by_row = {c["row"]: c for c in report["clips"]}
    chosen = [by_row[r] for r in rows if r in by_row]
    st.subheader(f"{len(chosen)} selected clip(s)")
    clip_gallery(report, chosen[:24], columns=4, play=len(chosen) <= 8)
    for finding in report["findings"]:
        if set(finding["rows"]) & set(rows):
            st.write(f"**{finding['severity']}** · {finding['kind']}: {finding['message']}")
else:
    st.caption("Select points with the lasso or box tool (or pick rows) to see and play their clips.")
