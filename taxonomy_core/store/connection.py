"""Opening a Milvus client: which URI means what, Lite file ownership in this process, and readable errors.

A Lite file is served by an in-process server that holds a lock on the file until this process gives it back;
`LITE_USERS` counts the stores open on each file so the last one to close gives it back. No torch here.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter

from pymilvus import MilvusClient

from taxonomy_core.store.base import StoreError

log = logging.getLogger(__name__)

DEFAULT_URI = "./auditor.db"
URI_ENV = "AUDITOR_MILVUS_URI"
TOKEN_ENV = "AUDITOR_MILVUS_TOKEN"
# pymilvus pings every 10 s even while idle; gRPC servers with default settings (Milvus Lite's, in-process or
# `milvus-lite server`) answer the third idle ping with GOAWAY "too_many_pings", and the next call on that
# channel fails as UNAVAILABLE. Ping only during calls, no more often than such a server accepts.
GRPC_OPTIONS = {"grpc.keepalive_permit_without_calls": False, "grpc.keepalive_time_ms": 300_000}

LITE_USERS: Counter[str] = Counter()  # open stores per Lite file in this process


class _UnimplementedAllocTimestamp(logging.Filter):
    """Milvus Lite does not implement AllocTimestamp; pymilvus's query iterator probes it, then falls back.

    The in-process gRPC server logs each probe as an error with a traceback: noise, not a problem.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        text = f"{record.getMessage()} {record.exc_info[1] if record.exc_info else ''}"
        return "Method not implemented" not in text and "failed to get mvccTs" not in text


for _name in ("grpc._server", "pymilvus.client.iterator.query_iterator"):
    logging.getLogger(_name).addFilter(_UnimplementedAllocTimestamp())


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))


def default_uri() -> str:
    return os.environ.get(URI_ENV, DEFAULT_URI)


def connect(uri: str, token: str) -> MilvusClient:
    """A client on `uri`, counted as one more user of a Lite file; a failure names the URI and the fix."""
    if not is_server(uri):
        LITE_USERS[uri] += 1
        compact_lite_files()
    lite_log = _Captured()
    logging.getLogger("milvus_lite").addHandler(lite_log)
    try:
        return MilvusClient(uri=uri, token=token, timeout=10, grpc_options=GRPC_OPTIONS)
    except Exception as e:  # pymilvus and milvus-lite raise many unrelated types here
        release_lite(uri)
        raise StoreError(connect_advice(uri, e, lite_log.texts)) from e
    finally:
        logging.getLogger("milvus_lite").removeHandler(lite_log)


def compact_lite_files() -> None:
    """Milvus Lite writes its Parquet data files with pyarrow's defaults: Snappy, which cannot shrink base64 text,
    and a dictionary page per column, which float vectors never repeat enough to use (6.2 bytes a float32 on
    disk). Ask it for zstd (base64 back to about its bytes), no dictionaries and byte-stream-split floats (float32
    vectors ~15 % smaller): 40 -> 27 KB a clip before any change of what is stored (docs/benchmarks.md). Files
    written either way read the same; this changes how files this process writes are compressed, nothing else."""
    try:
        from milvus_lite.storage import data_file
    except ImportError:  # another Milvus Lite than 3.x: its own defaults stay
        log.info("Milvus Lite has no storage.data_file module; its Parquet defaults stay")
        return
    if not isinstance(getattr(data_file, "pq", None), _CompactParquet) and hasattr(data_file, "pq"):
        data_file.pq = _CompactParquet(data_file.pq)


class _CompactParquet:
    """pyarrow.parquet as Milvus Lite's data-file module sees it, with write_table's options set."""

    def __init__(self, pq):
        self._pq = pq

    def __getattr__(self, name):
        return getattr(self._pq, name)

    def write_table(self, table, where, **options):
        import pyarrow as pa

        floats = [
            f"{f.name}.list.element"
            for f in table.schema
            if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type)
            if pa.types.is_floating(f.type.value_type)
        ]
        options = {"compression": "zstd", "use_dictionary": False, "use_byte_stream_split": floats or False, **options}
        return self._pq.write_table(table, where, **options)


def reopen_lite(client: MilvusClient, uri: str) -> MilvusClient:
    """Close a Lite file and open it again, which frees every collection it loaded; waits up to 30 s for a
    process that took the file in between (the app, for one query)."""
    from milvus_lite.server_manager import server_manager_instance

    client.close()
    server_manager_instance.release_server(uri)
    return_arrow_memory(uri)
    deadline = time.monotonic() + 30
    while True:
        try:
            return MilvusClient(uri=uri, timeout=10, grpc_options=GRPC_OPTIONS)
        except Exception as e:  # another process holds the file for a moment
            if time.monotonic() > deadline:
                raise StoreError(connect_advice(uri, e, [])) from e
            time.sleep(0.5)


def release_lite(uri: str) -> None:
    """pymilvus's close() leaves Milvus Lite's in-process server holding the file lock until exit."""
    if is_server(uri) or LITE_USERS[uri] <= 0:
        return
    LITE_USERS[uri] -= 1
    if LITE_USERS[uri] == 0:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


def return_arrow_memory(uri: str) -> None:
    """Milvus Lite reads Parquet inside this process with transient memory several times a file's size; Arrow's
    allocator keeps what was freed for Arrow alone. Give it back to the system, where numpy can use it."""
    if not is_server(uri):
        import pyarrow

        pyarrow.default_memory_pool().release_unused()


class _Captured(logging.Handler):
    """Milvus Lite logs the real cause of a failed open (a held lock) instead of chaining it."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(f"{record.getMessage()} {record.exc_info[1] if record.exc_info else ''}")


def connect_advice(uri: str, error: BaseException, logged: list[str]) -> str:
    chain = []
    while error is not None and len(chain) < 8:
        chain.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    text = chain[-1]
    if any("lock" in link.lower() for link in chain + logged):
        fix = (
            "another process (the app, or a running job) holds this Milvus Lite file; "
            "stop it, or use a Milvus server (docker-compose.yml)"
        )
    elif is_server(uri):
        fix = "start the server (`docker compose up -d` with this repo's docker-compose.yml) or check --uri / --token"
    else:
        fix = "check that the folder exists and is writable, or point --uri / AUDITOR_MILVUS_URI elsewhere"
    return f"cannot open Milvus at {uri}: {text}\nFix: {fix}"
