"""The vector store: a protocol of domain verbs (`base`) and its Milvus implementation (`milvus`, with its
verbs in `reads` and `writes`, its collections in `schemas`, opening a client in `connection`)."""

from taxonomy_core.store.base import (
    CLIP_COLUMNS,
    ClipMatrix,
    DatasetLayout,
    Hits,
    Parts,
    Store,
    StoreError,
    StoreLimits,
    unit_rows,
)
from taxonomy_core.store.connection import DEFAULT_URI, TOKEN_ENV, URI_ENV, default_uri, is_server
from taxonomy_core.store.milvus import MilvusStore


def open_store(uri: str | None = None, token: str | None = None) -> Store:
    """The store at `uri` (a Milvus Lite file path or a server URL; default AUDITOR_MILVUS_URI or ./auditor.db)."""
    return MilvusStore.open(uri, token)


__all__ = [
    "CLIP_COLUMNS", "DEFAULT_URI", "TOKEN_ENV", "URI_ENV", "ClipMatrix", "DatasetLayout", "Hits", "MilvusStore",
    "Parts", "Store", "StoreError", "StoreLimits", "default_uri", "is_server", "open_store", "unit_rows",
]  # fmt: skip
