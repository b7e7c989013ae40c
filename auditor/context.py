"""AuditContext: the clips, their vectors and labels, and what every check shares (centroids, k-NN)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from auditor.config import AuditConfig
from auditor.knn import knn
from taxonomy_core import schema as S
from taxonomy_core.store import DatasetLayout, VectorStore

CLIP_COLUMNS = [
    S.CLIP_ID,
    S.ROW,
    S.VIDEO,
    S.START,
    S.END,
    S.LABEL,
    S.SPLIT,
    S.DURATION,
    S.FPS,
    S.WIDTH,
    S.HEIGHT,
    S.CODEC,
    S.BRIGHTNESS,
    S.EXTRA,
]
TextEncoder = Callable[[list[str]], np.ndarray]


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


@dataclass
class AuditContext:
    """Everything a check reads. Built from Milvus (`from_store`) or from arrays (tests, benchmarks).

    `text_vectors` lives in the text-search space when it differs from `vectors` (ConSE);
    `text_encoder` embeds queries into that space (or into `vectors`' space for CLIP).
    """

    clips: pd.DataFrame
    vectors: np.ndarray
    config: AuditConfig = field(default_factory=AuditConfig)
    text_vectors: np.ndarray | None = None
    text_encoder: TextEncoder | None = None
    layout: DatasetLayout | None = None
    store: VectorStore | None = None

    def __post_init__(self):
        self.clips = self.clips.reset_index(drop=True)
        self.vectors = unit_rows(np.asarray(self.vectors, dtype=np.float32))
        if self.text_vectors is not None:
            self.text_vectors = unit_rows(np.asarray(self.text_vectors, dtype=np.float32))

    @classmethod
    def from_store(
        cls, store: VectorStore, layout: DatasetLayout, clip_ids: set[str] | None = None, **kwargs
    ) -> AuditContext:
        """Load the clips of one (dataset, model); `clip_ids` keeps only those in the current manifest."""
        fields_ = CLIP_COLUMNS + [S.VECTOR] + ([S.TEXT_VECTOR] if layout.text_dim else [])
        records = [r for r in store.iterate(layout.clips, fields_) if clip_ids is None or r[S.CLIP_ID] in clip_ids]
        records.sort(key=lambda r: r[S.ROW])
        vectors = np.array([r.pop(S.VECTOR) for r in records], dtype=np.float32).reshape(len(records), layout.dim)
        text = None
        if layout.text_dim:
            text = np.array([r.pop(S.TEXT_VECTOR) for r in records], dtype=np.float32).reshape(
                len(records), layout.text_dim
            )
        clips = pd.DataFrame.from_records(records, columns=CLIP_COLUMNS)
        clips[S.SPLIT] = clips[S.SPLIT].replace("", None)
        return cls(clips, vectors, text_vectors=text, layout=layout, store=store, **kwargs)

    # --- labels ---------------------------------------------------------------------------

    @cached_property
    def labels(self) -> np.ndarray:
        return self.clips[S.LABEL].to_numpy(dtype=object)

    @cached_property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    @cached_property
    def codes(self) -> np.ndarray:
        """Each clip's class as an index into `classes`."""
        lookup = {label: i for i, label in enumerate(self.classes)}
        return np.array([lookup[label] for label in self.labels], dtype=np.int64)

    @cached_property
    def counts(self) -> np.ndarray:
        return np.bincount(self.codes, minlength=len(self.classes))

    def members(self, label: str) -> np.ndarray:
        return np.flatnonzero(self.labels == label)

    # --- geometry -------------------------------------------------------------------------

    @cached_property
    def class_sums(self) -> np.ndarray:
        sums = np.zeros((len(self.classes), self.vectors.shape[1]), dtype=np.float64)
        np.add.at(sums, self.codes, self.vectors)
        return sums

    @cached_property
    def centroids(self) -> np.ndarray:
        return unit_rows(self.class_sums)

    @cached_property
    def loo_prototypes(self) -> np.ndarray:
        """Each clip's class centroid without the clip itself (its own class judged fairly)."""
        own = self.class_sums[self.codes] - self.vectors
        alone = self.counts[self.codes] <= 1
        own[alone] = self.vectors[alone]
        return unit_rows(own)

    @cached_property
    def own_similarity(self) -> np.ndarray:
        """Leave-one-out cosine of each clip to its own class centroid."""
        return np.einsum("nd,nd->n", self.vectors, self.loo_prototypes)

    @cached_property
    def centroid_similarity(self) -> np.ndarray:
        """[N, C] cosine of each clip to each class centroid; the own class entry is leave-one-out."""
        sims = self.vectors @ self.centroids.T
        sims[np.arange(len(self.codes)), self.codes] = self.own_similarity
        return sims

    @cached_property
    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        return knn(self.vectors, self.config.knn_k)

    @cached_property
    def neighbour_labels(self) -> np.ndarray:
        return self.codes[self.neighbours[0]]

    # --- companions -----------------------------------------------------------------------

    def parts(self, which: str, clip_ids: list[str]) -> dict[str, dict[str, np.ndarray]]:
        """Timeline steps or crops of some clips, grouped per clip and ordered by index."""
        if self.store is None or self.layout is None:
            return {}
        collection = self.layout.timeline if which == "timeline" else self.layout.crops
        where = S.TIME if which == "timeline" else S.BOX
        fields_ = [S.CLIP_ID, S.INDEX, where, S.VECTOR] + ([S.TEXT_VECTOR] if self.layout.text_dim else [])
        grouped: dict[str, list[dict]] = {}
        for row in self.store.get(collection, clip_ids, fields_):
            grouped.setdefault(row[S.CLIP_ID], []).append(row)
        out = {}
        for clip_id, rows in grouped.items():
            rows.sort(key=lambda r: r[S.INDEX])
            out[clip_id] = {
                "where": np.array([r[where] for r in rows], dtype=np.float32),
                "vectors": unit_rows(np.array([r[S.VECTOR] for r in rows], dtype=np.float32)),
                "text": unit_rows(np.array([r[S.TEXT_VECTOR] for r in rows], dtype=np.float32))
                if self.layout.text_dim
                else None,
            }
        return out

    def each_with_parts(self, *which: str, chunk: int = 512):
        """(position, {which: parts}) for every clip that has all the asked-for companions, in pages."""
        ids = self.clips[S.CLIP_ID].tolist()
        for start in range(0, len(ids), chunk):
            page = ids[start : start + chunk]
            fetched = {w: self.parts(w, page) for w in which}
            for i, clip_id in enumerate(page, start):
                if all(clip_id in fetched[w] for w in which):
                    yield i, {w: fetched[w][clip_id] for w in which}

    def text_space(self) -> np.ndarray:
        """Clip vectors in the space text queries live in."""
        return self.text_vectors if self.text_vectors is not None else self.vectors

    # --- text queries ---------------------------------------------------------------------

    def prompts(self, label: str) -> list[str]:
        """The config's per-class prompts, else the templates over the label (underscores read as spaces)."""
        if label in self.config.prompts:
            return list(self.config.prompts[label])
        readable = label.replace("_", " ").strip()
        return [t.format(label=readable) for t in self.config.prompt_templates]

    @cached_property
    def label_queries(self) -> dict[str, np.ndarray]:
        """One text-query vector per class (the mean of its prompts), or {} without a text model."""
        if self.text_encoder is None:
            return {}
        prompts = [self.prompts(label) for label in self.classes]
        flat = self.text_encoder([p for group in prompts for p in group])
        bounds = np.cumsum([0] + [len(g) for g in prompts])
        return {label: unit_rows(flat[a:b].mean(axis=0)) for label, a, b in zip(self.classes, bounds[:-1], bounds[1:])}

    @cached_property
    def position(self) -> dict[str, int]:
        return {clip_id: i for i, clip_id in enumerate(self.clips[S.CLIP_ID])}
