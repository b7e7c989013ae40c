"""Search: "are my hurdles visually similar?" Text-to-video and example-to-video side by side.

Queries scan the audit's 8-bit copies of its clips' vectors (a file beside report.json, memory-mapped: ~0.5 s at
3 x 10^5 clips, with no store and no context read); where the store answers cheaply (a server, or a Lite file of
at most 10^4 clips) it re-scores the best candidates with its float32 vectors, so the ranking is its own. An audit
written before the copies existed asks the store's own vector search. Example queries need no model; the text
model (torch and its weights) loads in a background thread the first time, and text results appear by themselves
when it is ready.
"""

import math
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import streamlit as st

from app_pages.shared import audit_stamp, clip_caption, clip_index, current_audit, live, player, thumbnails
from app_pages.words import escape, tip
from auditor import service
from auditor.searchcopies import SearchCopies
from auditor.workspace import Audit, AuditFolderError

PER_PAGE = 12


@st.cache_resource(show_spinner=False)
def text_encoder(model_id: str) -> Future:
    """The model's text encoder, loading in a background thread (the first visit does not wait for it)."""
    return ThreadPoolExecutor(1, thread_name_prefix="text-model").submit(service.text_encoder, model_id)


def encoder_now(model_id: str):
    """The text encoder if it has loaded; None while it loads (the page polls and reruns when it is ready)."""
    loading = text_encoder(model_id)
    if not loading.done():
        st.info(
            "Loading the text model in the background (first visit only; 10–40 s on a CPU): example search works "
            "now; text results appear here by themselves when it is ready."
        )
        st.fragment(wait_for_model, run_every=1.0)(loading)
        return None
    try:
        return loading.result()
    except Exception as e:  # noqa: BLE001  e.g. a local checkpoint that is not on this machine: say so, go on
        st.warning(f"Text queries are off: the model that indexed this dataset cannot be loaded here ({e}).")
        return None


def wait_for_model(loading: Future) -> None:
    if loading.done():
        st.rerun(scope="app")


@st.cache_data(show_spinner=False, ttl=600, max_entries=4)
def stored_layout(uri: str, dataset: str, model: str):
    return service.dataset_layout(uri, dataset, model)  # a StoreError is raised, so never cached


@st.cache_resource(show_spinner=False, max_entries=2)
def search_copies(stamp: tuple, _audit: Audit) -> SearchCopies | None:
    """The audit's search copies, memory-mapped once per audit (None for an audit written before them)."""
    return _audit.search_copies()


@st.cache_data(show_spinner="Searching…", max_entries=64)
def search(
    uri: str, dataset: str, model: str, label: str, k: int, examples: tuple[str, ...], text: str,
    prompts: tuple[str, ...], audit_k: int | None, exact: bool, audit_stamp: tuple, _index, _encoder, _copies,
) -> service.QueryComparison:  # fmt: skip
    """The class's queries; one answer per question (the text model's arrival is part of it)."""
    members = _index.table.column("clip_id")[_index.members.positions[label]].tolist()  # no record made a clip
    return service.search_class(
        uri, dataset, model, label, k, clips=_index.by_id, members=members, examples=examples, text=text or None,
        prompts=prompts, encoder=_encoder, audit_k=audit_k, copies=_copies, exact=exact,
    )  # fmt: skip


def pick_examples(report: dict, label: str) -> list[dict]:
    """The class's clips as rows (thumbnail, file, time), a page at a time; the ticked ones are the examples."""
    positions = index.members.positions[label]  # by row; records are made for the page shown only
    rows = index.table.column("row")[positions]
    chosen: set[int] = st.session_state.setdefault("search_examples", {}).setdefault(label, set())
    everyone = f"all {len(positions)} clips of {label}"
    summary = f"rows {', '.join(str(r) for r in sorted(chosen))}" if chosen else everyone
    with st.expander(f"Example clips: {summary} (pick rows)"):
        query = st.text_input("Find a clip", placeholder="row or part of a file name", key=f"example_filter:{label}")
        shown = positions
        if query:
            videos = index.table.column("video")[positions]
            shown = positions[[query == str(r) or query.lower() in v.lower() for r, v in zip(rows, videos)]]
        pages = max(1, math.ceil(len(shown) / PER_PAGE))
        page = st.number_input("Page", 1, pages, 1, key=f"example_page:{label}") if pages > 1 else 1
        batch = index.members.records(shown[(page - 1) * PER_PAGE : page * PER_PAGE].tolist())
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
    return index.members.records(positions[np.isin(rows, list(chosen))].tolist()) if chosen else []


def toggle(chosen: set[int], row: int, key: str) -> None:
    (chosen.add if st.session_state[key] else chosen.discard)(row)


def sample_note(comparison: service.QueryComparison, audit_k: int | None) -> str | None:
    """How a large class was measured (seeded samples of its examples), or None when every example counted."""
    parts = []
    if comparison.measured < comparison.seeds:
        parts.append(
            f"Example precision is measured on the neighbours of {comparison.measured} of the {comparison.seeds:,} "
            "examples (a seeded sample: each is one more search of the store)"
            + (f"; at K = {audit_k} the audit's own neighbours give it for all of them" if audit_k else "")
            + "."
        )
    if comparison.averaged < comparison.seeds:
        parts.append(f"The example query averages {comparison.averaged:,} of the {comparison.seeds:,} (seeded).")
    return " ".join(parts) or None


def audit_numbers(report: dict, label: str) -> None:
    """What the audit measured for the class, when live search cannot run."""
    metrics = next(c for c in report["classes"] if c["label"] == label)
    st.subheader(f"{escape(label)}: {metrics.get('search_verdict') or 'no verdict in the audit'} (from the audit)")
    m = st.columns(4)
    for col, key in zip(m, ["text_precision", "example_precision", "centroid_precision", "text_example_agreement"]):
        value = metrics.get(key)
        col.metric(key.replace("_", " "), "n/a" if value is None else f"{value:.2f}")


VERDICT_RULE = (
    "visually coherent when example precision is at least 0.80 and text precision (if any) at least 0.50; "
    "mostly coherent from an example precision of 0.50; below that, not coherent. The agreement between text and "
    "example results is context: it has no pass mark."
)
audit = current_audit()
report = audit.report
index = clip_index(audit)
st.title("Are my examples visually similar?")
uri = st.session_state["uri"]
labels = sorted(index.members)
c1, c2, c3 = st.columns([2, 3, 1])
label = c1.selectbox("Class", labels, key="search_label")
text = c2.text_input("Text query", placeholder=f"e.g. a video of {label.replace('_', ' ')}", key="search_text")
k = c3.number_input("K", 1, 100, 10, key="search_k")
examples = pick_examples(report, label)

try:
    copies = search_copies(audit_stamp(audit), audit)
except AuditFolderError as e:
    st.warning(f"The audit's search copies cannot be read ({escape(str(e))}); searching Milvus instead.")
    copies = None
if copies is None:  # an audit written before the copies: the store's own search, which needs the store's layout
    layout = live(stored_layout, uri, report["dataset"], report["model"])
    if layout is None:
        audit_numbers(report, label)
        st.stop()
    model_id, text_space = layout.model_id, layout.text_space
else:
    model_id, text_space = report["model"], report.get("text_search")
encoder = encoder_now(model_id) if text_space is not None else None
settings = (report.get("thresholds") or {}).get("audit") or {}
prompts = service.class_prompts(settings, label)
question = (
    uri, report["dataset"], report["model"], label, int(k), tuple(c["clip_id"] for c in examples), text,
    tuple(prompts) if encoder else (), settings.get("knn_k"),
)  # fmt: skip
exact = copies is None or service.rescores_exactly(uri, len(audit.clips))
comparison = live(search, *question, exact, audit_stamp(audit), index, encoder, copies)
if comparison is None and copies is not None and exact:  # the store cannot re-score now: the copies alone
    comparison = search(*question, False, audit_stamp(audit), index, encoder, copies)
if comparison is None:
    audit_numbers(report, label)
    st.stop()
result = comparison.consistency

st.subheader(f"{escape(label)}: {result.verdict}", help=VERDICT_RULE)
m = st.columns(4)
shown = [
    (f"text precision@{result.k}", result.text_precision, "text_precision"),
    (f"example precision@{result.k}", result.example_precision, "example_precision"),
    (f"centroid precision@{result.k}", result.centroid_precision, "centroid_precision"),
    ("text / example agreement", result.agreement, "text_example_agreement"),
]
for col, (title, value, key) in zip(m, shown):
    col.metric(title, "n/a" if value is None else f"{value:.2f}", help=tip(report, key))
st.caption(f"The verdict: {VERDICT_RULE}")
if note := sample_note(comparison, settings.get("knn_k")):
    st.caption(note)
if not comparison.exact:
    st.caption(
        "Ranked on the audit's 8-bit copies of the clips' vectors (cosines within ~0.002 of float32; near-ties may "
        "swap): a Milvus server, or a Lite file of at most 10,000 clips, re-scores them with the stored vectors."
    )

by_id = index.by_id
text_ids, example_ids = comparison.text_hits, comparison.example_hits
shared = frozenset(text_ids) & frozenset(example_ids)
play = st.toggle("Play the results (up to 6 per side)", key="search_play")


def results(ids: list[str], scores: dict[str, float], side: str) -> None:
    """Result cards, best first: rank, score, the clip (thumbnail or player) and its caption."""
    records = by_id.many(ids)  # one read of the table, no dict of every clip id
    found = [records[c] for c in ids if c in records]
    if not found:
        st.caption("no results")
        return
    images = {} if play else thumbnails(report, [c["clip_id"] for c in found])
    for start in range(0, len(found[: 6 if play else len(found)]), 3):
        for col, (rank, clip) in zip(st.columns(3), list(enumerate(found, 1))[start : start + 3]):
            with col, st.container(border=True, key=f"result_{side}_{rank}"):
                if play:
                    player(report, clip)
                elif clip["clip_id"] in images:
                    st.image(images[clip["clip_id"]], width="stretch")
                score = scores.get(clip["clip_id"])
                mark = "★ " if clip["clip_id"] in shared else ""
                st.caption(
                    f"{mark}#{rank}"
                    + (f" · score {score:.2f}" if score is not None else "")
                    + "  \n"
                    + clip_caption(clip)
                )


left, right = st.columns(2)
with left:
    st.markdown(f"**Text → video** ({escape(text) if text else 'the label prompts'})")
    note = service.text_search_note(model_id, text_space)
    if note:
        st.info(note)
    elif result.text_precision is not None and result.text_precision < 0.3:
        st.caption(
            f"Few text results are {escape(label)}: try other words, or give the class prompts in the audit config."
        )
    results(text_ids, comparison.scores.get("text", {}), "text")
with right:
    which = f"rows {', '.join(str(c['row']) for c in examples)}" if examples else f"every clip of {label}"
    st.markdown(f"**Examples → video** ({which})")
    results(example_ids, comparison.scores.get("examples", {}), "examples")
st.caption("★ found by both queries · score: cosine similarity to the query")
if result.pulled:
    st.subheader("Examples that pull in other classes")
    st.dataframe(result.pulled, hide_index=True)
    if comparison.pulling > len(result.pulled):
        st.caption(f"{len(result.pulled)} of the {comparison.pulling:,} (a seeded sample: each is a search)")
