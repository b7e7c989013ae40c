"""The store protocol: the domain verbs the indexer, the auditor and the app use, and the records they pass.

No database client is imported here: `taxonomy_core.store.milvus` is the one implementation, and the only
module of the project that imports pymilvus.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from taxonomy_core import schema as S

Companion = Literal["timeline", "crops"]

# Scalar columns of the clip matrix, in this order.
CLIP_COLUMNS = [
    S.CLIP_ID, S.ROW, S.VIDEO, S.START, S.END, S.LABEL, S.SPLIT, S.DURATION,
    S.FPS, S.WIDTH, S.HEIGHT, S.CODEC, S.BRIGHTNESS, S.EXTRA,
]  # fmt: skip


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
    max_top_k: int = 16384
    write_batch: int = 256
    read_batch: int = 1000
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
    fingerprints: bool = False  # clips carry S.FINGERPRINT (layouts recorded before it existed do not)

    @property
    def clips(self) -> str:
        return S.collection_name(self.dataset, self.model_id, "clips")

    @property
    def timeline(self) -> str:
        return S.collection_name(self.dataset, self.model_id, "timeline")

    @property
    def crops(self) -> str:
        return S.collection_name(self.dataset, self.model_id, "crops")

    def collection(self, which: str) -> str:
        return {"clips": self.clips, "timeline": self.timeline, "crops": self.crops}[which]


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
    text: np.ndarray | None = None  # [P, text_dim]


Hits = list[tuple[str, float]]  # (clip_id, cosine similarity), best first


class Store(Protocol):
    """A dataset's clips and their companions, whatever holds them."""

    uri: str
    limits: StoreLimits

    def close(self) -> None: ...

    # the registry of (dataset, model) pairs
    def layouts(self) -> list[DatasetLayout]: ...
    def layout(self, dataset: str, model_id: str | None = None) -> DatasetLayout | None: ...
    def ensure(self, layout: DatasetLayout) -> None: ...
    def drop(self, layout: DatasetLayout) -> None: ...

    # writes: idempotent upserts keyed by clip id; companions land before their clip row
    def write_clips(
        self, layout: DatasetLayout, clips: list[dict], timeline: Iterable[dict] = (), crops: Iterable[dict] = ()
    ) -> None: ...
    def update_clips(self, layout: DatasetLayout, patches: list[dict]) -> None: ...
    def delete_clips(self, layout: DatasetLayout, clip_ids: list[str]) -> None: ...

    # reads
    def count(self, layout: DatasetLayout, which: str = "clips") -> int: ...
    def clip_records(self, layout: DatasetLayout, fields: list[str]) -> Iterator[dict]: ...
    def clip_matrix(self, layout: DatasetLayout, clip_ids: set[str] | None = None) -> ClipMatrix: ...
    def companions(self, layout: DatasetLayout, which: Companion, clip_ids: list[str]) -> dict[str, Parts]: ...
    def thumbnails(self, layout: DatasetLayout, clip_ids: list[str]) -> dict[str, str]: ...
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
