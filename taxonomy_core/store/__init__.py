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
from taxonomy_core.store.boundary import check_lite_target, configured_token, plain, quiet_open
from taxonomy_core.store.connection import DEFAULT_URI, TOKEN_ENV, URI_ENV, default_uri, is_server
from taxonomy_core.store.milvus import MilvusStore


def open_store(uri: str | None = None, token: str | None = None) -> Store:
    """The store at `uri` (a Milvus Lite file path or a server URL; default AUDITOR_MILVUS_URI or ./auditor.db).

    Without `token`, AUDITOR_MILVUS_TOKEN is sent only to the server AUDITOR_MILVUS_URI names (`boundary`); a Lite
    path that is an existing file or a folder Milvus Lite did not make is refused before anything is written.
    """
    uri = uri or default_uri()
    if not is_server(uri):
        check_lite_target(uri)
    try:
        with quiet_open():
            return MilvusStore.open(uri, token if token is not None else configured_token(uri))
    except StoreError as e:
        raise plain(uri, e) from e


__all__ = [
    "CLIP_COLUMNS", "DEFAULT_URI", "TOKEN_ENV", "URI_ENV", "ClipMatrix", "DatasetLayout", "Hits", "MilvusStore",
    "Parts", "Store", "StoreError", "StoreLimits", "configured_token", "default_uri", "is_server", "open_store",
    "unit_rows",
]  # fmt: skip
