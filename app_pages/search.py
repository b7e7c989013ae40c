"""Search: "are my hurdles visually similar?" Text-to-video and example-to-video side by side, live on Milvus."""

import numpy as np
import streamlit as st

from app_pages.shared import StoreSession, clip_gallery, current_report
from auditor.config import AuditConfig
from auditor.context import AuditContext
from auditor.knn import knn
from auditor.search import class_consistency, nearest
from taxonomy_core.store import StoreError


@st.cache_resource(show_spinner="Loading the text model…")
def text_encoder(model_id: str):
    from indexer.embedders import load_embedder

    return load_embedder(model_id).embed_texts


@st.cache_data(show_spinner="Reading vectors from Milvus…")
def stored_vectors(uri: str, dataset: str, model: str, report_time: str):
    with StoreSession(uri) as store:
        layout = store.layout(dataset, model)
        if layout is None:
            return None
        ctx = AuditContext.from_store(store, layout)
        neighbours = knn(ctx.vectors, AuditConfig().knn_k)
        return ctx.clips, ctx.vectors, ctx.text_vectors, layout, neighbours


report = current_report()
st.title("Are my examples visually similar?")
uri = st.session_state["uri"]
try:
    loaded = stored_vectors(uri, report["dataset"], report["model"], report.get("generated_at", ""))
except StoreError as e:
    st.error(f"Live search needs Milvus: {e}")
    st.stop()
if loaded is None:
    st.error(f"Milvus at `{uri}` has no dataset {report['dataset']!r} embedded with `{report['model']}`.")
    st.stop()
clips, vectors, text_vectors, layout, neighbours = loaded

labels = sorted(clips["label"].unique())
c1, c2, c3 = st.columns([2, 3, 1])
label = c1.selectbox("Class", labels, key="search_label")
text = c2.text_input("Text query", placeholder=f"e.g. a video of {label.replace('_', ' ')}", key="search_text")
k = c3.number_input("K", 1, 100, 10, key="search_k")
member_ids = clips.loc[clips["label"] == label, "clip_id"].tolist()
examples = st.multiselect("Example clips (default: all of the class)", member_ids, key="search_examples")

has_text = layout.text_space is not None
with StoreSession(uri) as store:
    ctx = AuditContext(
        clips,
        vectors,
        text_vectors=text_vectors,
        layout=layout,
        store=store,
        text_encoder=text_encoder(layout.model_id) if has_text else None,
    )
    ctx.__dict__["neighbours"] = neighbours
    query = ctx.text_encoder([text])[0] if text and has_text else None
    seeds = [ctx.position[c] for c in examples] or None
    result = class_consistency(ctx, label, int(k), query=query, examples=seeds)
    example_vector = ctx.vectors[seeds].mean(axis=0) if seeds else None
    example_hits = (
        [i for i, _ in nearest(ctx, example_vector / np.linalg.norm(example_vector), int(k))]
        if seeds
        else result.example_results
    )

st.subheader(f"{label}: {result.verdict}")
m = st.columns(4)
m[0].metric(f"text precision@{result.k}", "n/a" if result.text_precision is None else f"{result.text_precision:.2f}")
m[1].metric(f"example precision@{result.k}", f"{result.example_precision:.2f}")
m[2].metric(f"centroid precision@{result.k}", f"{result.centroid_precision:.2f}")
m[3].metric("text / example agreement", "n/a" if result.agreement is None else f"{result.agreement:.2f}")
if not has_text:
    st.info(f"`{layout.model_id}` has no text tower: text-to-video search is unavailable for this space.")

by_id = {c["clip_id"]: c for c in report["clips"]}
text_ids = [clips["clip_id"].iloc[i] for i in result.text_results]
example_ids = [clips["clip_id"].iloc[i] for i in example_hits]
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
