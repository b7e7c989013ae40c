"""The service layer the app and the read commands use: open a dataset in the store, ask it questions.

Callers never reach into checks or the context's internals. A Milvus Lite file is opened only for the
moment of each call (an indexing job may hold it otherwise); a server's client is opened once and reused.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from auditor.config import AuditConfig
from auditor.context import AuditContext, TextEncoder
from auditor.search import Consistency, class_consistency, nearest
from taxonomy_core.store import DatasetLayout, Store, StoreError, is_server, open_store

_SERVERS: dict[tuple[str, str | None], Store] = {}


@contextmanager
def store_session(uri: str, token: str | None = None) -> Iterator[Store]:
    """The store for one call: a server's client is kept; a Lite file is released on the way out."""
    if is_server(uri):
        if (uri, token) not in _SERVERS:
            _SERVERS[(uri, token)] = open_store(uri, token)
        yield _SERVERS[(uri, token)]
        return
    store = open_store(uri, token)
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


def thumbnails(uri: str, dataset: str, model: str, clip_ids: list[str]) -> dict[str, bytes]:
    """JPEG bytes per clip id ({} when the dataset is not in the store)."""
    with store_session(uri) as store:
        layout = store.layout(dataset, model)
        found = store.thumbnails(layout, clip_ids) if layout else {}
    return {clip_id: base64.b64decode(b64) for clip_id, b64 in found.items()}


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
    store = open_store(uri, token)
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
        example_hits = result.example_results
        if seeds:
            centre = ctx.vectors[seeds].mean(axis=0)
            example_hits = [i for i, _ in nearest(live, centre / np.linalg.norm(centre), k)]
    ids = ctx.clip_ids
    return QueryComparison(result, [ids[i] for i in result.text_results], [ids[i] for i in example_hits])
