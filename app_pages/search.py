"""Search: "are my hurdles visually similar?" Text-to-video and example-to-video side by side, live on Milvus."""

import streamlit as st

from app_pages.shared import clip_gallery, current_report
from auditor import service
from taxonomy_core.store import StoreError


@st.cache_resource(show_spinner="Loading the text model…")
def text_encoder(model_id: str):
    return service.text_encoder(model_id)


@st.cache_resource(show_spinner="Reading vectors from Milvus…", max_entries=4)
def stored_context(uri: str, dataset: str, model: str, report_time: str):
    return service.load_context(uri, dataset, model)


report = current_report()
st.title("Are my examples visually similar?")
uri = st.session_state["uri"]
try:
    ctx = stored_context(uri, report["dataset"], report["model"], report.get("generated_at", ""))
except StoreError as e:
    st.error(f"Live search needs Milvus: {e}")
    st.stop()
clips, layout = ctx.clips, ctx.layout

labels = sorted(clips["label"].unique())
c1, c2, c3 = st.columns([2, 3, 1])
label = c1.selectbox("Class", labels, key="search_label")
text = c2.text_input("Text query", placeholder=f"e.g. a video of {label.replace('_', ' ')}", key="search_text")
k = c3.number_input("K", 1, 100, 10, key="search_k")
member_ids = clips.loc[clips["label"] == label, "clip_id"].tolist()
examples = st.multiselect("Example clips (default: all of the class)", member_ids, key="search_examples")

has_text = layout.text_space is not None
try:
    comparison = service.compare_queries(
        ctx, uri, label, int(k), text=text or None, examples=examples,
        encoder=text_encoder(layout.model_id) if has_text else None,
    )  # fmt: skip
except StoreError as e:
    st.error(f"Live search needs Milvus: {e}")
    st.stop()
result = comparison.consistency

st.subheader(f"{label}: {result.verdict}")
m = st.columns(4)
m[0].metric(f"text precision@{result.k}", "n/a" if result.text_precision is None else f"{result.text_precision:.2f}")
m[1].metric(f"example precision@{result.k}", f"{result.example_precision:.2f}")
m[2].metric(f"centroid precision@{result.k}", f"{result.centroid_precision:.2f}")
m[3].metric("text / example agreement", "n/a" if result.agreement is None else f"{result.agreement:.2f}")
if not has_text:
    st.info(f"`{layout.model_id}` has no text tower: text-to-video search is unavailable for this space.")

by_id = {c["clip_id"]: c for c in report["clips"]}
text_ids, example_ids = comparison.text_hits, comparison.example_hits
shared = set(text_ids) & set(example_ids)
left, right = st.columns(2)
with left:
    st.markdown(f"**Text → video** ({text or 'the label prompts'})")
    clip_gallery(report, [by_id[c] for c in text_ids if c in by_id], columns=3, highlight=shared)
with right:
    st.markdown("**Examples → video**")
    clip_gallery(report, [by_id[c] for c in example_ids if c in by_id], columns=3, highlight=shared)
st.caption("★ found by both queries")
if result.pulled:
    st.subheader("Examples that pull in other classes")
    st.dataframe(result.pulled, hide_index=True)
