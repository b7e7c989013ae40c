"""Text-to-video and example-to-video queries, and the "are my hurdles visually similar" verdict."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from auditor.knn import blocked_top_k
from taxonomy_core import schema as S

OVERFETCH = 3  # stale clips (rows that left the manifest) may sit in the collection


def nearest(ctx, vector: np.ndarray, k: int, text: bool = False, exclude: int | None = None) -> list[tuple[int, float]]:
    """Top-k clips of the context for a query vector: through Milvus when the context has a store."""
    [ranked] = nearest_many(ctx, vector[None, :], k + 1, text=text)
    return [(i, s) for i, s in ranked if i != exclude][:k]


def nearest_many(ctx, vectors: np.ndarray, k: int, text: bool = False) -> list[list[tuple[int, float]]]:
    """Top-k clips for each query vector, in one request.

    Through the store where its own index answers faster than memory (a Milvus server: `server_side_neighbours`),
    else over the context's vectors in blocks: Milvus Lite searches by brute force too, and loading its float32
    copy of every vector for a search costs as much memory again as the context holds (1.4 GB at 3 x 10^5 clips).
    """
    if ctx.has_companions and ctx.store.limits.server_side_neighbours:
        found = ctx.store.search(ctx.layout, vectors, k * OVERFETCH, text=text)
        return [[(ctx.position[c], s) for c, s in hits if c in ctx.position][:k] for hits in found]
    space = ctx.text_space() if text else ctx.vectors
    return top_k(space, np.asarray(vectors, np.float32).reshape(len(vectors), -1), k)


def top_k(space: np.ndarray, queries: np.ndarray, k: int, block: int = 65536) -> list[list[tuple[int, float]]]:
    """Exact top-k rows of `space` by inner product for each query, best first (ties by position), scanning `space`
    in blocks (the scores of every row for every query at once would be N x Q floats)."""
    idx, sim = blocked_top_k(lambda a, b: queries @ space[a:b].T, len(space), len(queries), k, block)
    return [[(int(i), float(s)) for i, s in zip(row_i, row_s)] for row_i, row_s in zip(idx, sim)]


def centroid_of(ctx, positions: np.ndarray) -> np.ndarray:
    centroid = ctx.vectors[positions].mean(axis=0)
    return centroid / np.linalg.norm(centroid)


def class_queries(ctx, labels: list[str], k: int) -> dict[str, tuple[list[int] | None, list[int]]]:
    """Every class's text-query and centroid top-k clips, in two batched searches."""
    texts = [label for label in labels if ctx.label_queries.get(label) is not None]
    text_found = (
        nearest_many(ctx, np.stack([ctx.label_queries[label] for label in texts]), k, text=True) if texts else []
    )
    by_text = {label: [i for i, _ in hits] for label, hits in zip(texts, text_found)}
    centroids = np.stack([centroid_of(ctx, ctx.members(label)) for label in labels])
    by_centroid = [[i for i, _ in hits] for hits in nearest_many(ctx, centroids, k)]
    return {label: (by_text.get(label), hits) for label, hits in zip(labels, by_centroid)}


@dataclass
class Consistency:
    """How one class answers text and example queries: the numbers behind the verdict."""

    label: str
    k: int
    text_precision: float | None
    example_precision: float
    centroid_precision: float
    agreement: float | None
    pulled: list[dict] = field(default_factory=list)  # members whose neighbours are mostly other classes
    text_results: list[int] = field(default_factory=list)
    example_results: list[int] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        p = self.example_precision
        if p >= 0.8 and (self.text_precision is None or self.text_precision >= 0.5):
            return "visually coherent"
        if p >= 0.5:
            return "mostly coherent, with clips that look like other classes"
        return "not visually coherent: its examples retrieve other classes"


def class_consistency(
    ctx,
    label: str,
    k: int,
    query: np.ndarray | None = None,
    examples: list[int] | None = None,
    found: tuple[list[int] | None, list[int]] | None = None,
) -> Consistency:
    """Text query (the label's prompts, or `query`) vs example queries (`examples`, default all members).

    `found`: the text query's and the members' centroid's top clips, already searched (`class_queries` and
    `nearest_many` do every class in two requests).
    """
    members = ctx.members(label)
    k = max(1, min(k, len(members)))
    seeds = np.array(examples if examples is not None else members)
    if found is None:
        query = query if query is not None else ctx.label_queries.get(label)
        text_hits = [i for i, _ in nearest(ctx, query, k, text=True)] if query is not None else []
        centroid_hits = [i for i, _ in nearest(ctx, centroid_of(ctx, seeds), k)]
    else:
        text_hits, centroid_hits = (found[0] or [])[:k], found[1][:k]
    neighbours = ctx.neighbours[0][seeds, :k]
    same = ctx.labels[neighbours] == label
    pulled = []
    for seed, row_same, row_neigh in zip(seeds, same, neighbours):
        if row_same.mean() < 0.5:
            others = ctx.labels[row_neigh[~row_same]]
            values, counts = np.unique(others, return_counts=True)
            pulled.append(
                {
                    "row": int(ctx.clips[S.ROW].iloc[seed]),
                    "pulls_in": str(values[np.argmax(counts)]),
                    "precision": float(row_same.mean()),
                }
            )
    return Consistency(
        label=label,
        k=k,
        text_precision=float(np.mean(ctx.labels[text_hits] == label)) if text_hits else None,
        example_precision=float(same.mean()),
        centroid_precision=float(np.mean(ctx.labels[centroid_hits] == label)),
        agreement=len(set(text_hits) & set(centroid_hits)) / len(set(text_hits) | set(centroid_hits))
        if text_hits
        else None,
        pulled=pulled,
        text_results=text_hits,
        example_results=centroid_hits,
    )
