"""AuditContext: the clips, their vectors and labels, and what every check shares (centroids, k-NN)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from auditor.config import AuditConfig
from auditor.copies import find_copies
from auditor.knn import Neighbours, neighbours, sample_recall
from auditor.probe import Probe, fit_probe
from taxonomy_core import schema as S
from taxonomy_core.store import CLIP_COLUMNS, ClipMatrix, DatasetLayout, Store, unit_rows

__all__ = ["CLIP_COLUMNS", "AuditContext", "ReferenceFootage", "clip_record", "unit_rows"]
TextEncoder = Callable[[list[str]], np.ndarray]
BLOCK = 8192  # rows per block where a whole-matrix temporary would double the memory


def clip_record(clip) -> dict:
    """A clip's identity as the report names it (row, id, label, split, video, bounds), from a clips-table tuple."""
    return {
        "row": int(getattr(clip, S.ROW)),
        "clip_id": getattr(clip, S.CLIP_ID),
        "label": getattr(clip, S.LABEL),
        "split": getattr(clip, S.SPLIT),
        "video": getattr(clip, S.VIDEO),
        "start": float(getattr(clip, S.START)),
        "end": float(getattr(clip, S.END)),
    }


@dataclass
class ReferenceFootage:
    """Unlabelled footage from where the model will run, indexed like the dataset under its own name."""

    clips: pd.DataFrame
    vectors: np.ndarray
    dataset: str
    source: str
    not_indexed: list[dict] = field(default_factory=list)  # {row, video, reason}
    layout: DatasetLayout | None = None  # where its thumbnails are

    def __post_init__(self):
        self.clips = self.clips.reset_index(drop=True)
        self.vectors = unit_rows(self.vectors)


@dataclass
class AuditContext:
    """Everything a check reads. Built from the store (`from_store`) or from arrays (tests, benchmarks).

    `text_vectors` lives in the text-search space when it differs from `vectors` (ConSE);
    `text_encoder` embeds queries into that space (or into `vectors`' space for CLIP).
    Positions index `clips` and `vectors`; findings name manifest rows (`clips[row]`), results clip ids.
    """

    clips: pd.DataFrame
    vectors: np.ndarray
    config: AuditConfig = field(default_factory=AuditConfig)
    text_vectors: np.ndarray | None = None
    text_encoder: TextEncoder | None = None
    layout: DatasetLayout | None = None
    store: Store | None = None
    reference: ReferenceFootage | None = None

    def __post_init__(self):
        self._pairs: dict[float, list[tuple[int, int, float]]] = {}
        self.frame_matches: dict[tuple[int, int], float] = {}  # pair -> share of frames matched (fingerprints)
        self.frame_bits: dict[tuple[int, int], float] = {}  # pair -> mean Hamming bits between matched frames
        self.copy_reasons: dict[tuple[int, int], str] = {}  # pair -> how it was judged (auditor.copies)
        self._probes: dict[int, Probe | None] = {}
        self._probe_everywhere: tuple[np.ndarray, np.ndarray] | None = None
        self.clips = self.clips.reset_index(drop=True)
        self.vectors = _unit(self.vectors)
        if self.text_vectors is not None:
            self.text_vectors = _unit(self.text_vectors)

    @classmethod
    def from_store(
        cls, store: Store, layout: DatasetLayout, clip_ids: set[str] | None = None, **kwargs
    ) -> AuditContext:
        """Load the clips of one (dataset, model); `clip_ids` keeps only those in the current manifest."""
        matrix = store.clip_matrix(layout, clip_ids)
        from auditor.checks import give_back_memory  # the read's pages and shard buffers, back to the system

        give_back_memory()
        return cls(matrix.table, matrix.vectors, text_vectors=matrix.text_vectors, layout=layout, store=store, **kwargs)

    # --- identities -----------------------------------------------------------------------

    @cached_property
    def clip_ids(self) -> np.ndarray:
        return self.clips[S.CLIP_ID].to_numpy(dtype=object)

    @cached_property
    def rows(self) -> np.ndarray:
        """Each position's manifest row (what findings name)."""
        return self.clips[S.ROW].to_numpy(dtype=np.int64)

    @cached_property
    def position(self) -> dict[str, int]:
        return {clip_id: i for i, clip_id in enumerate(self.clip_ids)}

    def clip(self, i: int) -> dict[str, Any]:
        """Clip i's manifest fields (row, label, video, start, end) without pandas' cost per row (~75 µs, which
        per-clip checks paid hundreds of thousands of times)."""
        return {name: column[i] for name, column in self._fields.items()}

    @cached_property
    def _fields(self) -> dict[str, np.ndarray]:
        return {name: self.clips[name].to_numpy() for name in (S.ROW, S.LABEL, S.VIDEO, S.START, S.END)}

    @property
    def has_companions(self) -> bool:
        return self.store is not None and self.layout is not None

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

    def loo_prototypes(self, rows: slice | np.ndarray) -> np.ndarray:
        """Each clip's class centroid without the clip itself (its own class judged fairly), for some clips.

        Made when asked, never for every clip at once: that matrix is as large as the vectors (1.5 GB at 3 x 10^5
        clips of 1280 dimensions), and each row costs microseconds from the class sums.
        """
        own = self.class_sums[self.codes[rows]] - self.vectors[rows]
        alone = self.counts[self.codes[rows]] <= 1
        own[alone] = self.vectors[rows][alone]
        return unit_rows(own)

    def loo_prototype(self, i: int) -> np.ndarray:
        return self.loo_prototypes(slice(i, i + 1))[0]

    @cached_property
    def own_similarity(self) -> np.ndarray:
        """Leave-one-out cosine of each clip to its own class centroid (in blocks: the float64 sums of all clips at
        once would take twice the vectors' memory again)."""
        out = np.empty(len(self.vectors), np.float32)
        for start in range(0, len(out), BLOCK):
            rows = slice(start, start + BLOCK)
            out[rows] = np.einsum("nd,nd->n", self.vectors[rows], self.loo_prototypes(rows))
        return out

    @cached_property
    def centroid_similarity(self) -> np.ndarray:
        """[N, C] cosine of each clip to each class centroid; the own class entry is leave-one-out."""
        sims = self.vectors @ self.centroids.T
        sims[np.arange(len(self.codes)), self.codes] = self.own_similarity
        return sims

    @cached_property
    def class_spreads(self) -> np.ndarray:
        """[C] robust std (1.4826 MAD) of each class's leave-one-out cosines to its centroid: the model's own scale,
        against which margins are judged (CLIP's cosines sit far higher and closer together than a CNN's)."""
        out = np.zeros(len(self.classes))
        for c in range(len(self.classes)):
            values = self.own_similarity[self.codes == c]
            if len(values) >= 3:
                out[c] = 1.4826 * np.median(np.abs(values - np.median(values)))
        return out

    def nearest_class(self, i: int, vector: np.ndarray) -> str:
        """The class whose centroid is nearest to `vector` (a part of clip i: its core, its best crop), the clip's own
        class judged without the clip."""
        sims = self.centroids @ vector
        sims[self.codes[i]] = self.loo_prototype(i) @ vector
        return self.classes[int(np.argmax(sims))]

    @cached_property
    def neighbour_graph(self) -> Neighbours:
        """Each clip's k nearest others, computed once for every check and the map, with how and how well.

        From the store's own index where it declares that faster (a Milvus server or cluster), else in memory
        (exact for small sets, clustered above); an approximate answer carries its recall@k against exact.
        """
        k = self.config.knn_k
        if not (self.has_companions and self.store.limits.server_side_neighbours):
            return replace(neighbours(self.vectors, k, seed=self.config.seed), requested_k=k)
        t0 = time.perf_counter()
        idx, sim = self.store.neighbours(self.layout, ClipMatrix(self.clips, self.vectors, self.text_vectors), k)
        sample = np.random.default_rng(self.config.seed).choice(len(idx), min(len(idx), 500), replace=False)
        recall = sample_recall(self.vectors, idx, sample)
        return Neighbours(idx, sim, "milvus", recall, time.perf_counter() - t0, requested_k=k)

    @cached_property
    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions, cosines) [N, k] of each clip's nearest others, best first (see `neighbour_graph`)."""
        return self.neighbour_graph.idx, self.neighbour_graph.sim

    def copy_pairs(self, similarity: float) -> list[tuple[int, int, float]]:
        """(i, j, cosine), i < j, for clips showing the same footage (auditor.copies), shared by checks."""
        if similarity not in self._pairs:
            found = find_copies(self, similarity)
            self._pairs[similarity] = found.pairs
            self.frame_matches.update(found.frames)
            self.frame_bits.update(found.bits)
            self.copy_reasons.update(found.reason)
        return self._pairs[similarity]

    @cached_property
    def neighbour_labels(self) -> np.ndarray:
        return self.codes[self.neighbours[0]]

    def probe(self, folds: int = 5) -> Probe | None:
        """The cross-validated linear probe, fitted once per fold count and shared by the checks that read it."""
        if folds not in self._probes:
            self._probes[folds] = fit_probe(self.vectors, self.labels, folds, self.config.seed)
        return self._probes[folds]

    def probe_everywhere(self) -> tuple[np.ndarray, np.ndarray]:
        """The probe's held-out probabilities for every clip (Probe.every_clip), made once."""
        if self._probe_everywhere is None:
            self._probe_everywhere = self.probe().every_clip(len(self.codes))
        return self._probe_everywhere

    # --- companions -----------------------------------------------------------------------

    def each_with_parts(self, *which: str):
        """(position, {which: Parts}) for every clip that has all the asked-for companions.

        In the order the store reads them best (a Lite file: shard by shard, so only one shard is in memory),
        not in position order: results are keyed by clip, findings sorted by the report.
        """
        for page in self.store.companion_pages(self.layout, which, self.clip_ids.tolist()):
            for clip_id, parts in page.items():
                if all(w in parts for w in which):
                    yield self.position[clip_id], parts

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


def _unit(x: np.ndarray) -> np.ndarray:
    """Unit rows as float32, without a copy when they already are (a store's clip matrix is)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        return unit_rows(x)
    # squared norms a block at a time (np.linalg.norm makes an [N, dim] temporary: +5 GB for 10^6 x 1280)
    blocks = [np.einsum("nd,nd->n", x[s : s + 65536], x[s : s + 65536]) for s in range(0, len(x), 65536)]
    squares = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return x if np.all((np.abs(squares - 1) < 2e-4) | (squares == 0)) else unit_rows(x)
