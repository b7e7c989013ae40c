"""The store protocol: the domain verbs the indexer, the auditor and the app use, and the records they pass.

No database client is imported here: `taxonomy_core.store.milvus` is the one implementation, and the only
module of the project that imports pymilvus.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from taxonomy_core import schema as S

Companion = Literal["timeline", "crops"]

# Scalar columns of the clip matrix, in this order.
CLIP_COLUMNS = [
    S.CLIP_ID, S.ROW, S.VIDEO, S.START, S.END, S.LABEL, S.SPLIT, S.DURATION,
    S.FPS, S.WIDTH, S.HEIGHT, S.CODEC, S.BRIGHTNESS, S.EXTRA, S.FINGERPRINT,
]  # fmt: skip

# What a store writes and reads; a layout records the version it was written in (see DatasetLayout.storage).
# 1: float32 vectors in every row. 2: the searchable float32 vectors apart from the clip rows, which add an int8
# packed copy and a fingerprint; companions packed per clip, int8, crops without text vectors; thumbnails within a
# budget; every kind sharded by clip id on Lite. 3: companions rotated and coded on 4 bits (timeline) and 2 bits
# (crops) a coordinate; thumbnails within a smaller budget (see StoreLimits.thumbnail_chars). Layout 2 is still read.
STORAGE_VERSION = 3
READABLE_VERSIONS = (2, 3)


class StoreError(RuntimeError):
    """The store could not be reached or used; the message names the URI and what to do."""


@dataclass(frozen=True)
class StoreLimits:
    """What one store configuration accepts and does well; validation and callers read these, never guess."""

    max_label_chars: int = 1024
    max_split_chars: int = 256
    max_video_chars: int = 4096
    max_thumbnail_chars: int = 65535
    max_fingerprint_chars: int = 2048
    max_packed_chars: int = 65535  # a VARCHAR's ceiling: a clip's companions take as many rows as they need
    thumbnail_chars: int = 2048  # larger thumbnails are re-encoded smaller on the way in (~1.8 KB, 96 px mostly)
    max_top_k: int = 16384
    write_batch: int = 256
    read_batch: int = 1000  # rows per query by primary key
    scan_batch: int = 4000  # rows per page of a whole-collection read
    shards: int = 16  # for new datasets; see DatasetLayout.shards (at 10^5 clips a crops shard is ~110 MB)
    # A new dataset whose first job brings at most this many clips keeps one collection a kind (~180 MB of crops at
    # most): creating, writing into and closing 65 collections cost a job of 160 clips ~1 s of its ~1.5 s in the
    # store. A later job that would take it past this spreads its rows over `shards` first (`Writes._spread`).
    one_shard_clips: int = 10_000
    resident_bytes: int = 1 << 30  # Lite: collections kept open at most (their files' size), else closed first
    # Lite, once a dataset passes resident_bytes: packed rows held back by write_clips, then written one shard at
    # a time with the file closed between shards (a Lite collection, once written, stays in memory with all its
    # rows: writing every batch into every shard held the whole store, 21 GB at 7.3 x 10^5 clips). What is held
    # back is lost if the process is killed (a rerun writes it again). 0: every write goes straight in (a server).
    staged_bytes: int = 1 << 30
    # None: no vector index (Milvus Lite searches its segments by brute force; an index would keep another copy
    # of every vector on disk and in memory); else the index type a server builds.
    vector_index: str | None = None
    # True where the store's own index answers k-NN for every clip faster than shipping vectors back
    # (a Milvus server or cluster); False for Milvus Lite, a pure-Python engine.
    server_side_neighbours: bool = False


@dataclass(frozen=True)
class DatasetLayout:
    """What a (dataset, model) pair stores and how it was made; kept in the store's registry."""

    dataset: str
    model_id: str
    dim: int
    text_dim: int | None = None  # a separate text-aligned vector (ConSE); None when absent
    text_space: str | None = None  # "visual", "semantic" or None (no text search)
    sampling: dict[str, Any] = field(default_factory=dict)
    manifest: str = ""
    manifest_format: str = ""
    # How the store lays the rows out (set by the store when it registers the dataset; not part of equality).
    storage: int = field(default=STORAGE_VERSION, compare=False)  # an older layout must be re-indexed
    # Every kind of row split over this many collections by clip id: a Lite file holds each collection it has
    # opened in memory, and loads a file with transient memory several times its size, so on Lite no collection
    # may grow large (1 on a server, which pages its segments itself).
    shards: int = field(default=1, compare=False)

    @property
    def clips(self) -> str:
        return S.collection_name(self.dataset, self.model_id, "clips")

    @property
    def vectors(self) -> str:
        return S.collection_name(self.dataset, self.model_id, "vectors")

    @property
    def timeline(self) -> str:
        return S.collection_name(self.dataset, self.model_id, "timeline")

    @property
    def crops(self) -> str:
        return S.collection_name(self.dataset, self.model_id, "crops")

    def collection(self, which: str) -> str:
        return {"clips": self.clips, "vectors": self.vectors, "timeline": self.timeline, "crops": self.crops}[which]

    def shard_names(self, which: str) -> list[str]:
        """The collections holding one kind of row ("clips", "vectors", "timeline", "crops"), by shard."""
        base = self.collection(which)
        return [base] if self.shards == 1 else [f"{base}_{k}" for k in range(self.shards)]

    def shard_of(self, clip_id: str) -> int:
        """Which shard holds a clip's rows (a stable hash of its id)."""
        digest = hashlib.blake2b(clip_id.encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big") % self.shards

    def collections(self) -> list[str]:
        kinds = ("clips", "timeline", "crops") if self.storage < 2 else ("clips", "vectors", "timeline", "crops")
        return [name for which in kinds for name in self.shard_names(which)]


@dataclass
class ClipMatrix:
    """Every clip's scalar fields (a table, one row per clip) and its unit vectors, in the same order."""

    table: pd.DataFrame
    vectors: np.ndarray  # [N, dim] float32
    text_vectors: np.ndarray | None = None  # [N, text_dim] when the layout has a separate text space


@dataclass
class Parts:
    """One clip's timeline steps or crops, ordered by index: where each is (time or box) and its vectors."""

    where: np.ndarray  # [P] seconds, or [P, 4] relative boxes
    vectors: np.ndarray  # [P, dim]
    text: np.ndarray | None = None  # [P, text_dim] for timeline steps; crops keep no text vectors


Hits = list[tuple[str, float]]  # (clip_id, cosine similarity), best first


class Store(Protocol):
    """A dataset's clips and their companions, whatever holds them."""

    uri: str
    limits: StoreLimits

    def close(self) -> None: ...
    def release(self) -> None: ...  # give back memory held for earlier reads (between the audit's stages)

    # the registry of (dataset, model) pairs
    def layouts(self) -> list[DatasetLayout]: ...
    def layout(self, dataset: str, model_id: str | None = None) -> DatasetLayout | None: ...
    def ensure(self, layout: DatasetLayout, clips: int | None = None) -> None: ...  # clips: about to be written
    def drop(self, layout: DatasetLayout) -> None: ...

    # writes: idempotent upserts keyed by clip id; companions land before their clip row
    def write_clips(
        self, layout: DatasetLayout, clips: list[dict], timeline: Iterable[dict] = (), crops: Iterable[dict] = ()
    ) -> None: ...
    def update_clips(self, layout: DatasetLayout, patches: list[dict]) -> None: ...
    def delete_clips(self, layout: DatasetLayout, clip_ids: list[str]) -> None: ...
    def flush(self) -> None: ...  # write what write_clips held back (any other call, release and close flush too)

    # reads
    def count(self, layout: DatasetLayout, which: str = "clips") -> int: ...
    def clip_records(self, layout: DatasetLayout, fields: list[str]) -> Iterator[dict]: ...
    def clip_matrix(self, layout: DatasetLayout, clip_ids: set[str] | None = None) -> ClipMatrix: ...
    def companions(self, layout: DatasetLayout, which: Companion, clip_ids: list[str]) -> dict[str, Parts]: ...
    def companion_pages(
        self, layout: DatasetLayout, which: Sequence[Companion], clip_ids: list[str]
    ) -> Iterator[dict[str, dict[str, Parts]]]: ...  # {clip_id: {which: Parts}} a page at a time, in read order
    def thumbnails(self, layout: DatasetLayout, clip_ids: list[str]) -> dict[str, str]: ...
    def clip_fields(self, layout: DatasetLayout, clip_ids: list[str], fields: list[str]) -> dict[str, dict]: ...
    def exact_vectors(self, layout: DatasetLayout, clip_ids: list[str]) -> dict[str, dict[str, np.ndarray]]: ...
    def search(
        self, layout: DatasetLayout, queries: np.ndarray, k: int, *, text: bool = False, label: str | None = None
    ) -> list[Hits]: ...
    def neighbours(self, layout: DatasetLayout, matrix: ClipMatrix, k: int) -> tuple[np.ndarray, np.ndarray]: ...
    def pairs_above(
        self, layout: DatasetLayout, matrix: ClipMatrix, similarity: float, k: int
    ) -> list[tuple[int, int, float]]: ...


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)
