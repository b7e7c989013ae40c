"""The service layer the app and the read commands use: open a dataset in the store, ask it questions.

Callers never reach into checks or the context's internals. A Milvus Lite file is opened only for the
moment of each call (an indexing job may hold it otherwise: that is `StoreBusy`, not a failure); a
server's client is opened once and reused. Read-only callers never create a Lite file that is not there.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from auditor.config import AuditConfig
from auditor.context import AuditContext, TextEncoder
from auditor.jobs import JobSpec, JobStatus, read_job, running_job, start_audit_job, stop_job
from auditor.media import Cut, DatasetVideos, Segment, VideoRefused, cut_segment
from auditor.search import Consistency, class_consistency, nearest
from indexer.embedders import DEFAULT_MODEL, OFFLINE_MODEL
from taxonomy_core import schema as S
from taxonomy_core.store import DatasetLayout, Store, StoreError, default_uri, is_server, open_store

__all__ = [
    "BUSY", "MODEL_CHOICES", "Cut", "DatasetVideos", "JobSpec", "JobStatus", "QueryComparison", "Segment",
    "StoreBusy", "VideoRefused", "absolute_uri", "compare_queries", "dataset_context", "dataset_videos",
    "find_layout", "load_context", "open_existing", "read_job", "running_job", "segment_video", "start_audit_job",
    "stop_job", "store_session", "stored_manifest", "stored_models", "text_encoder", "text_search_note", "thumbnails",
]  # fmt: skip

MODEL_CHOICES = (OFFLINE_MODEL, DEFAULT_MODEL)  # what the app offers to run an audit with
_SERVERS: dict[tuple[str, str | None], Store] = {}
BUSY = "Milvus is busy (an indexing job holds this file) — retry, or use a server"
# The store's connection advice says this when another process holds a Lite file's lock.
_HELD = "holds this Milvus Lite file"


class StoreBusy(StoreError):
    """Another process (an indexing job) holds the Milvus Lite file for now: retry later, or use a server."""


def open_existing(uri: str | None, token: str | None = None) -> Store:
    """The store at `uri`; a Lite file that is not there is an error (a read never leaves an empty file behind)."""
    uri = uri or default_uri()
    if not is_server(uri) and not Path(uri).exists():
        raise StoreError(
            f"no Milvus Lite file at {uri}: index a dataset into it first (`indexer index` or `auditor audit`), "
            "or pass --uri (env AUDITOR_MILVUS_URI) to the file or server that holds it"
        )
    try:
        return open_store(uri, token)
    except StoreError as e:
        if _HELD in str(e):
            raise StoreBusy(f"{BUSY}: {uri}") from e
        raise


def absolute_uri(uri: str) -> str:
    """A Lite file's absolute path (a job may run elsewhere); a server's URL as it is."""
    return uri if is_server(uri) else str(Path(uri).expanduser().resolve())


@contextmanager
def store_session(uri: str, token: str | None = None) -> Iterator[Store]:
    """The store for one call: a server's client is kept; a Lite file is released on the way out."""
    if is_server(uri):
        if (uri, token) not in _SERVERS:
            _SERVERS[(uri, token)] = open_existing(uri, token)
        yield _SERVERS[(uri, token)]
        return
    store = open_existing(uri, token)
    try:
        yield store
    finally:
        store.close()


def find_layout(store: Store, dataset: str, model: str | None = None) -> DatasetLayout:
    """The (dataset, model) pair, or an error naming what the store does hold."""
    layout = store.layout(dataset, model)
    if layout is None:
        known = ", ".join(f"{x.dataset} ({x.model_id})" for x in store.layouts()) or "none"
        which = f" with model {model!r}" if model else ""
        raise StoreError(f"no dataset {dataset!r}{which} at {store.uri}; indexed: {known}")
    return layout


def stored_models(uri: str, dataset: str) -> list[str]:
    with store_session(uri) as store:
        return [x.model_id for x in store.layouts() if x.dataset == dataset]


def stored_manifest(uri: str, dataset: str, model: str) -> str | None:
    """The manifest the store says the dataset was indexed from (a report's own claim is not trusted)."""
    with store_session(uri) as store:
        layout = store.layout(dataset, model)
    return layout.manifest if layout else None


def text_search_note(model_id: str, text_space: str | None) -> str | None:
    """What a curator should know about the model's text search before trusting its results."""
    if text_space is None:
        return f"`{model_id}` has no text tower: text-to-video search is unavailable for this space."
    if text_space == "semantic":
        return (
            f"`{model_id}` searches text through the names of ImageNet's 1000 classes (ConSE): words outside them "
            "find little, so a weak text result says more about the model than about your labels. "
            "Judge the class by the example results, or audit with a CLIP model."
        )
    return None


def thumbnails(uri: str, dataset: str, model: str, clip_ids: list[str]) -> dict[str, bytes]:
    """JPEG bytes per clip id ({} when the dataset is not in the store)."""
    with store_session(uri) as store:
        layout = store.layout(dataset, model)
        found = store.thumbnails(layout, clip_ids) if layout else {}
    return {clip_id: base64.b64decode(b64) for clip_id, b64 in found.items()}


def dataset_videos(uri: str, dataset: str, model: str) -> DatasetVideos:
    """Every stored clip's video file and bounds, as the store lists them: all the app may play."""
    with store_session(uri) as store:
        layout = find_layout(store, dataset, model)
        records = store.clip_records(layout, [S.CLIP_ID, S.VIDEO, S.START, S.END])
        segments = {r[S.CLIP_ID]: Segment(r[S.VIDEO], float(r[S.START]), float(r[S.END])) for r in records}
    return DatasetVideos.of(segments)


def segment_video(videos: DatasetVideos, clip_id: str) -> Cut:
    """The clip's segment, cut exactly, if the store lists the clip and its file lies in the dataset's folders."""
    path, segment = videos.path(clip_id)
    return cut_segment(path, segment.start, segment.end)


def text_encoder(model_id: str, device: str = "auto") -> TextEncoder | None:
    """The model's text encoder, or None when it has no text tower (loads torch: call it lazily)."""
    from indexer.embedders import load_embedder

    embedder = load_embedder(model_id, device)
    return embedder.embed_texts if embedder.text_space else None


def load_context(uri: str, dataset: str, model: str | None, config: AuditConfig = AuditConfig()) -> AuditContext:
    """The stored dataset's clips and vectors with neighbours computed, detached from the store (cacheable)."""
    with store_session(uri) as store:
        ctx = AuditContext.from_store(store, find_layout(store, dataset, model), config=config)
        ctx.neighbours  # noqa: B018  computed once here, while the store is open
    ctx.store = None
    return ctx


@contextmanager
def dataset_context(uri: str | None, token: str | None, dataset: str, model: str | None, device: str = "auto"):
    """The stored dataset with its text model, attached to the store until the block ends (the read commands)."""
    store = open_existing(uri, token)
    try:
        layout = find_layout(store, dataset, model)
        encoder = text_encoder(layout.model_id, device) if layout.text_space else None
        yield AuditContext.from_store(store, layout, text_encoder=encoder)
    finally:
        store.close()


@dataclass
class QueryComparison:
    """Text-to-video and example-to-video results for one class, and the verdict behind them."""

    consistency: Consistency
    text_hits: list[str]  # clip ids, best first
    example_hits: list[str]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # "text" / "examples" -> clip id -> cosine


def compare_queries(
    ctx: AuditContext,
    uri: str,
    label: str,
    k: int,
    *,
    text: str | None = None,
    examples: list[str] | None = None,
    encoder: TextEncoder | None = None,
) -> QueryComparison:
    """ "Are my LABEL clips visually similar?": the label (or `text`) as a query against the class's examples."""
    with store_session(uri) as store:
        live = copy.copy(ctx)  # shares the computed neighbours; the store is attached for this call only
        live.store, live.text_encoder = store, encoder
        query = encoder([text])[0] if text and encoder else None
        seeds = [ctx.position[c] for c in examples or []] or None
        result = class_consistency(live, label, k, query=query, examples=seeds)
        centre = ctx.vectors[seeds or ctx.members(label)].mean(axis=0)
        example_scored = nearest(live, centre / np.linalg.norm(centre), k)
        example_hits = [i for i, _ in example_scored] if seeds else result.example_results
        asked = query if query is not None else live.label_queries.get(label)
        text_scored = nearest(live, asked, k, text=True) if asked is not None and result.text_results else []
    ids = ctx.clip_ids
    scores = {"text": {ids[i]: s for i, s in text_scored}, "examples": {ids[i]: s for i, s in example_scored}}
    return QueryComparison(result, [ids[i] for i in result.text_results], [ids[i] for i in example_hits], scores)
