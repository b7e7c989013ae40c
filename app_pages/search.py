"""Search: "are my hurdles visually similar?" Text-to-video and example-to-video side by side, live on Milvus."""

import math

import streamlit as st

from app_pages.literal import literal
from app_pages.shared import clip_caption, clip_gallery, current_audit, live, thumbnails
from auditor import service
from indexer.embedders import EmbedderUnavailable

PER_PAGE = 12


@st.cache_resource(show_spinner="Loading the text model…")
def text_encoder(model_id: str):
    return service.text_encoder(model_id)


@st.cache_resource(show_spinner="Reading vectors from Milvus…", max_entries=4)
def stored_context(uri: str, dataset: str, model: str, report_time: str):
    return service.load_context(uri, dataset, model)


def pick_examples(report: dict, label: str) -> list[dict]:
    """The class's clips as rows (thumbnail, file, time), a page at a time; the ticked ones are the examples."""
    members = sorted((c for c in report["clips"] if c["label"] == label), key=lambda c: c["row"])
    chosen: set[int] = st.session_state.setdefault("search_examples", {}).setdefault(label, set())
    summary = f"rows {', '.join(str(r) for r in sorted(chosen))}" if chosen else f"all {len(members)} clips of {label}"
    with st.expander(f"Example clips: {summary} (pick rows)"):
        query = st.text_input("Find a clip", placeholder="row or part of a file name", key=f"example_filter:{label}")
        shown = [c for c in members if not query or query == str(c["row"]) or query.lower() in c["video"].lower()]
        pages = max(1, math.ceil(len(shown) / PER_PAGE))
        page = st.number_input("Page", 1, pages, 1, key=f"example_page:{label}") if pages > 1 else 1
        batch = shown[(page - 1) * PER_PAGE : page * PER_PAGE]
        images = thumbnails(report, [c["clip_id"] for c in batch])
        for start in range(0, len(batch), 6):
            for col, clip in zip(st.columns(6), batch[start : start + 6]):
                with col:
                    if clip["clip_id"] in images:
                        st.image(images[clip["clip_id"]], width="stretch")
                    key = f"example:{label}:{clip['row']}"
                    st.session_state[key] = clip["row"] in chosen
                    st.checkbox(f"row {clip['row']}", key=key, on_change=toggle, args=(chosen, clip["row"], key))
                    st.caption(clip_caption(clip))
        if chosen and st.button("Use all clips of the class again", key=f"examples_clear:{label}"):
            chosen.clear()
            st.rerun()
    return [c for c in members if c["row"] in chosen]


def toggle(chosen: set[int], row: int, key: str) -> None:
    (chosen.add if st.session_state[key] else chosen.discard)(row)


def audit_numbers(report: dict, label: str) -> None:
    """What the audit measured for the class, when live search cannot run."""
    metrics = next(c for c in report["classes"] if c["label"] == label)
    st.subheader(f"{literal(label)}: {metrics.get('search_verdict') or 'no verdict in the audit'} (from the audit)")
    m = st.columns(4)
    for col, key in zip(m, ["text_precision", "example_precision", "centroid_precision", "text_example_agreement"]):
        value = metrics.get(key)
        col.metric(key.replace("_", " "), "n/a" if value is None else f"{value:.2f}")


report = current_audit().report
st.title("Are my examples visually similar?")
uri = st.session_state["uri"]
labels = sorted({c["label"] for c in report["clips"]})
c1, c2, c3 = st.columns([2, 3, 1])
label = c1.selectbox("Class", labels, key="search_label")
text = c2.text_input("Text query", placeholder=f"e.g. a video of {label.replace('_', ' ')}", key="search_text")
k = c3.number_input("K", 1, 100, 10, key="search_k")
examples = pick_examples(report, label)

ctx = live(stored_context, uri, report["dataset"], report["model"], report.get("generated_at", ""))
if ctx is None:
    audit_numbers(report, label)
    st.stop()
layout = ctx.layout
has_text = layout.text_space is not None
try:
    encoder = text_encoder(layout.model_id) if has_text else None
except EmbedderUnavailable as e:  # e.g. a local checkpoint that is not on this machine
    st.warning(f"Text queries are off: the model that indexed this dataset cannot be loaded here ({literal(e)}).")
    encoder = None
comparison = live(
    lambda: service.compare_queries(
        ctx, uri, label, int(k), text=text or None, examples=[c["clip_id"] for c in examples], encoder=encoder
    )
)
if comparison is None:
    audit_numbers(report, label)
    st.stop()
result = comparison.consistency

st.subheader(f"{literal(label)}: {result.verdict}")
m = st.columns(4)
m[0].metric(f"text precision@{result.k}", "n/a" if result.text_precision is None else f"{result.text_precision:.2f}")
m[1].metric(f"example precision@{result.k}", f"{result.example_precision:.2f}")
m[2].metric(f"centroid precision@{result.k}", f"{result.centroid_precision:.2f}")
m[3].metric("text / example agreement", "n/a" if result.agreement is None else f"{result.agreement:.2f}")

by_id = {c["clip_id"]: c for c in report["clips"]}
text_ids, example_ids = comparison.text_hits, comparison.example_hits
shared = frozenset(text_ids) & frozenset(example_ids)
left, right = st.columns(2)
with left:
    st.markdown(f"**Text → video** ({literal(text) if text else 'the label prompts'})")
    note = service.text_search_note(layout.model_id, layout.text_space)
    if note:
        st.info(note)
    elif result.text_precision is not None and result.text_precision < 0.3:
        st.caption(
            f"Few text results are {literal(label)}: try other words, or give the class prompts in the audit config."
        )
    clip_gallery(report, [by_id[c] for c in text_ids if c in by_id], columns=3, highlight=shared)
with right:
    which = f"rows {', '.join(str(c['row']) for c in examples)}" if examples else f"every clip of {label}"
    st.markdown(f"**Examples → video** ({which})")
    clip_gallery(report, [by_id[c] for c in example_ids if c in by_id], columns=3, highlight=shared)
st.caption("★ found by both queries")
if result.pulled:
    st.subheader("Examples that pull in other classes")
    st.dataframe(result.pulled, hide_index=True)
