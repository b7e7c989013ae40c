"""Where the store meets the operator's configuration: which URI a token may go to, what a Lite path may be.

A token set in AUDITOR_MILVUS_TOKEN belongs to the server named by AUDITOR_MILVUS_URI and is sent nowhere else.
A Lite URI must be a store folder Milvus Lite made, or a new name in a writable folder: an existing file or any
other folder (a user's `photos.db/`) is refused before Milvus Lite is started, so nothing is written into it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from taxonomy_core.store.base import StoreError
from taxonomy_core.store.milvus import TOKEN_ENV, URI_ENV, is_server

LITE_MARKS = ("collections", "databases")  # what Milvus Lite creates in its folder


def same_server(a: str, b: str) -> bool:
    """Two server URIs naming one endpoint (scheme, host and port; case and a trailing slash aside)."""
    x, y = urlsplit(a.strip().lower()), urlsplit(b.strip().lower())
    return (x.scheme, x.hostname, x.port, x.path.rstrip("/")) == (y.scheme, y.hostname, y.port, y.path.rstrip("/"))


def configured_token(uri: str) -> str:
    """AUDITOR_MILVUS_TOKEN, only for the server AUDITOR_MILVUS_URI names; "" for any other URI."""
    token, home = os.environ.get(TOKEN_ENV, ""), os.environ.get(URI_ENV, "")
    return token if token and is_server(uri) and is_server(home) and same_server(uri, home) else ""


def check_lite_target(uri: str) -> None:
    """Refuse a Lite path that is not a store: an existing file, a folder Milvus Lite did not make, no parent."""
    path = Path(uri).expanduser()
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise StoreError(
            f"{uri} is an existing file, not a Milvus Lite store; nothing was written to it.\n"
            "Fix: point --uri / AUDITOR_MILVUS_URI at a new name (e.g. ./auditor.db) or at a store made by indexing"
        )
    if path.is_dir():
        try:
            entries = {e.name for e in os.scandir(path)}
        except OSError as e:
            raise StoreError(
                f"cannot read the Milvus Lite store {uri} ({e.strerror}).\nFix: check its permissions"
            ) from e
        if not entries & set(LITE_MARKS):
            raise StoreError(
                f"{uri} is an existing folder that is not a Milvus Lite store; nothing was written into it.\n"
                "Fix: point --uri / AUDITOR_MILVUS_URI at a new name or at a store made by indexing"
            )
        return
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise StoreError(f"cannot create the Milvus Lite store {uri}: {parent} is not a folder.\nFix: create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(
            f"cannot create the Milvus Lite store {uri}: {parent} is read-only.\n"
            "Fix: point --uri / AUDITOR_MILVUS_URI at a writable folder"
        )


HELD = "another process holds this Milvus Lite file"
_NOISY = ("milvus_lite", "pymilvus", "grpc")  # log a failed open with a traceback, then raise their own error


@contextmanager
def quiet_open() -> Iterator[None]:
    """Library loggers keep their tracebacks to themselves while a store opens: the one StoreError says it all."""
    loggers = [logging.getLogger(name) for name in _NOISY]
    before = [(lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:  # errors still reach the store's own handler (it reads a held lock from them), no further
        lg.propagate, lg.level = False, logging.ERROR
    try:
        yield
    finally:
        for lg, (propagate, level) in zip(loggers, before):
            lg.propagate, lg.level = propagate, level


def plain(uri: str, error: StoreError) -> StoreError:
    """The store's error in the user's words: a held lock said as such, not as the library's exception."""
    if "holds this Milvus Lite file" in str(error):
        return StoreError(
            f"cannot open Milvus at {uri}: {HELD} (its lock is taken).\n"
            "Fix: stop that process (the app's job, another `indexer` or `auditor`), wait for it to end, "
            "or use a Milvus server (docker-compose.yml)"
        )
    return error
