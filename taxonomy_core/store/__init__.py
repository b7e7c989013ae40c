"""The vector store: the dataset's collections in Milvus (a Lite file or a server)."""

from taxonomy_core.store.milvus import (  # noqa: F401
    DEFAULT_URI,
    TOKEN_ENV,
    URI_ENV,
    DatasetLayout,
    StoreError,
    VectorStore,
    default_uri,
    filter_eq,
    filter_in,
    is_server,
    quote,
)
