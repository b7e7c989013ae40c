"""The service layer the app and the read commands use: open a dataset in the store, ask it questions.

Callers never reach into checks or the context's internals. A Milvus Lite file is opened only for the
moment of each call (an indexing job may hold it otherwise: that is `StoreBusy`, not a failure); a
server's client is opened once and reused. Read-only callers never create a Lite file that is not there.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from auditor.config import AuditConfig
from auditor.context import AuditContext, TextEncoder
from auditor.jobs import JobSpec, JobStatus, read_job, running_job, start_audit_job, stop_job
from auditor.media import Cut, DatasetVideos, Segment, VideoRefused, cut_segment
from auditor.search import OVERFETCH, Consistency
from auditor.searchcopies import SearchCopies
from indexer.embedders import DEFAULT_MODEL, OFFLINE_MODEL
from taxonomy_core import schema as S
from taxonomy_core.store import (
    CLIP_COLUMNS,
    DatasetLayout,
    Hits,
    Store,
    StoreError,
    default_uri,
    is_server,
    open_store,
    unit_rows,
)  # fmt: skip

__all__ = [
    "BUSY", "MODEL_CHOICES", "Cut", "DatasetVideos", "JobSpec", "JobStatus", "QueryComparison", "Segment",
    "StoreBusy", "VideoRefused", "absolute_uri", "class_prompts", "dataset_context", "dataset_layout",
    "clip_videos", "find_layout", "open_existing", "read_job", "running_job", "search_class", "segment_video",
    "start_audit_job", "stop_job", "store_session", "stored_manifest", "stored_models", "text_encoder",
    "text_search_note", "thumbnails",
]  # fmt: skip

MODEL_CHOICES = (OFFLINE_MODEL, DEFAULT_MODEL)  # what the app offers to run an audit with
_SERVERS: dict[tuple[str, str | None], Store] = {}
# Milvus Lite answers a search by brute force, ~30 ms a query at 2 x 10^4 clips: the example precision is
# measured on at most SEARCH_SEEDS examples (a seeded sample above), the class query averages CENTROID_SEEDS.
SEARCH_SEEDS = 16
CENTROID_SEEDS = 1000
# Search re-scores this many candidates a result from the audit's 8-bit copies with the store's float32 vectors
# (int8 moves a cosine by ~0.002, so the store's own top-k are among them); a Lite file does it up to
# EXACT_LITE_CLIPS clips (above, its primary-key reads load every vector shard: seconds), a server always.
RESCORED = 4
EXACT_LITE_CLIPS = 10_000
PLAY_LITE_CLIPS = 100_000  # a Lite clip shard is ~15 MB here: a player's read takes well under a second
BUSY = "Milvus is busy (an indexing job holds this file) — retry, or use a server"
# The store's connection advice says this when another process holds a Lite file's lock.
_HELD = "holds this Milvus Lite file"


class StoreBusy(StoreError):
    """Another process (an indexing job) holds the Milvus Lite file for now: retry later, or use a server."""


def open_existing(uri: str | None, token: str | None = None) -> Store:
    """The store at `uri`; a Lite file that is not there is an error (a read never leaves an empty file behind)."""
    uri = uri or default_uri()
    if not is_server(uri) and not Path(uri).exists():
        raise StoreError(
            f"no Milvus Lite file at {uri}: index a dataset into it first (`indexer index` or `auditor audit`), "
            "or pass --uri (env AUDITOR_MILVUS_URI) to the file or server that holds it"
        )
    try:
        return open_store(uri, token)
    except StoreError as e:
        if _HELD in str(e):
            raise StoreBusy(f"{BUSY}: {uri}") from e
        raise


def absolute_uri(uri: str) -> str:
    """A Lite file's absolute path (a job may run elsewhere); a server's URL as it is."""
    return uri if is_server(uri) else str(Path(uri).expanduser().resolve())


@contextmanager
def store_session(uri: str, token: str | None = None) -> Iterator[Store]:
    """The store for one call: a server's client is kept; a Lite file is released on the way out."""
    if is_server(uri):
        if (uri, token) not in _SERVERS:
            _SERVERS[(uri, token)] = open_existing(uri, token)
        yield _SERVERS[(uri, token)]
        return
    store = open_existing(uri, token)
    try:
        yield store
    finally:
        store.close()


def find_layout(store: Store, dataset: str, model: str | None = None) -> DatasetLayout:
    """The (dataset, model) pair, or an error naming what the store does hold."""
    layout = store.layout(dataset, model)
    if layout is None:
        known = ", ".join(f"{x.dataset} ({x.model_id})" for x in store.layouts()) or "none"
        which = f" with model {model!r}" if model else ""
        raise StoreError(f"no dataset {dataset!r}{which} at {store.uri}; indexed: {known}")
    return layout


def dataset_layout(uri: str, dataset: str, model: str) -> DatasetLayout:
    """How the store holds the dataset (its model, text space): the registry alone, no clip is read."""
    with store_session(uri) as store:
        return find_layout(store, dataset, model)


def stored_models(uri: str, dataset: str) -> list[str]:
    with store_session(uri) as store:
        return [x.model_id for x in store.layouts() if x.dataset == dataset]


def stored_manifest(uri: str, dataset: str, model: str) -> str | None:
    """The manifest the store says the dataset was indexed from (a report's own claim is not trusted)."""
    with store_session(uri) as store:
        layout = store.layout(dataset, model)
    return layout.manifest if layout else None


def text_search_note(model_id: str, text_space: str | None) -> str | None:
    """What a curator should know about the model's text search before trusting its results."""
    if text_space is None:
        return f"`{model_id}` has no text tower: text-to-video search is unavailable for this space."
    if text_space == "semantic":
        return (
            f"`{model_id}` searches text through the names of ImageNet's 1000 classes (ConSE): words outside them "
            "find little, so a weak text result says more about the model than about your labels. "
            "Judge the class by the example results, or audit with a CLIP model."
        )
    return None


def thumbnails(uri: str, dataset: str, model: str, clip_ids: list[str]) -> dict[str, bytes]:
    """JPEG bytes per clip id ({} when the dataset is not in the store)."""
    with store_session(uri) as store:
        layout = store.layout(dataset, model)
        found = store.thumbnails(layout, clip_ids) if layout else {}
    return {clip_id: base64.b64decode(b64) for clip_id, b64 in found.items()}


def clip_videos(uri: str, dataset: str, model: str, clip_ids: list[str]) -> DatasetVideos:
    """Some stored clips' video files and bounds, as the store lists them, and the folders of those files: all the
    app may play of them (their rows are read, not every clip's: a pass over 10^5 rows takes seconds on Lite)."""
    with store_session(uri) as store:
        layout = find_layout(store, dataset, model)
        records = store.clip_fields(layout, clip_ids, [S.VIDEO, S.START, S.END])
    return DatasetVideos.of({c: Segment(r[S.VIDEO], float(r[S.START]), float(r[S.END])) for c, r in records.items()})


def segment_video(videos: DatasetVideos, clip_id: str) -> Cut:
    """The clip's segment, cut exactly, if the store lists the clip and its file lies in the dataset's folders."""
    path, segment = videos.path(clip_id)
    return cut_segment(path, segment.start, segment.end)


def text_encoder(model_id: str, device: str = "auto") -> TextEncoder | None:
    """The model's text encoder, or None when it has no text tower (loads torch: call it lazily)."""
    from indexer.embedders import load_embedder

    embedder = load_embedder(model_id, device)
    return embedder.embed_texts if embedder.text_space else None


@contextmanager
def dataset_context(uri: str | None, token: str | None, dataset: str, model: str | None, device: str = "auto"):
    """The stored dataset with its text model, attached to the store until the block ends (the read commands)."""
    store = open_existing(uri, token)
    try:
        layout = find_layout(store, dataset, model)
        encoder = text_encoder(layout.model_id, device) if layout.text_space else None
        yield AuditContext.from_store(store, layout, text_encoder=encoder)
    finally:
        store.close()


@dataclass
class QueryComparison:
    """Text-to-video and example-to-video results for one class, and the verdict behind them."""

    consistency: Consistency
    text_hits: list[str]  # clip ids, best first
    example_hits: list[str]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # "text" / "examples" -> clip id -> cosine
    seeds: int = 0  # the examples the query stands for
    measured: int = 0  # of them, those whose own neighbours were searched (a seeded sample above SEARCH_SEEDS)
    averaged: int = 0  # of them, those averaged into the class query (a seeded sample above CENTROID_SEEDS)
    pulling: int = 0  # of them, those whose neighbours are mostly other classes (SEARCH_SEEDS of them in pulled)
    exact: bool = True  # ranked on the store's float32 vectors; False: on the audit's 8-bit copies alone


def class_prompts(settings: dict, label: str) -> list[str]:
    """The text queries the audit asked for a class, from the settings it recorded (report["thresholds"]["audit"])."""
    config = AuditConfig(
        prompt_templates=tuple(settings.get("prompt_templates") or AuditConfig.prompt_templates),
        prompts=dict(settings.get("prompts") or {}),
    )
    return AuditContext(pd.DataFrame(columns=CLIP_COLUMNS), np.zeros((0, 1), np.float32), config=config).prompts(label)


def search_class(
    uri: str,
    dataset: str,
    model: str,
    label: str,
    k: int,
    *,
    clips: Mapping[str, dict],
    members: Sequence[str],
    examples: Sequence[str] = (),
    text: str | None = None,
    prompts: Sequence[str] = (),
    encoder: TextEncoder | None = None,
    audit_k: int | None = None,
    copies: SearchCopies | None = None,
    exact: bool = True,
) -> QueryComparison:
    """ "Are my LABEL clips visually similar?", asked of the store's own index (only the hits are read), or of the
    audit's search copies (`copies`: every clip scanned from the audit folder, no store), whose best candidates the
    store re-scores with its float32 vectors when `exact` (then the ranking is the store's own).

    `clips` are the audit's clip records by id (a stored clip outside them is stale and skipped); `members` the
    class's clip ids. The examples (default: every member) query through their centroid; their own neighbours
    give the example precision. At `audit_k`, the k of the audit's neighbour graph, each clip's recorded
    `knn_agreement` is exactly that, for every example; at another k their neighbours are searched, for each of
    them or a seeded sample of SEARCH_SEEDS. Only examples that pull in other classes are searched at `audit_k`.
    """
    k = max(1, min(k, len(members)))
    seeds = list(examples) or list(members)
    recorded = _field(clips, "knn_agreement", seeds) if k == audit_k else {}
    if recorded and all(recorded.get(c) is not None for c in seeds):
        measured = _sample([c for c in seeds if recorded[c] < 0.5], SEARCH_SEEDS)
    else:
        recorded, measured = {}, _sample(seeds, SEARCH_SEEDS)
    averaged = _sample(seeds, CENTROID_SEEDS)
    limit = (k + 1) * OVERFETCH
    query = _text_query(encoder, text, prompts)
    if copies is None:
        asked, centroid_hits, seed_hits, text_hits = _store_hits(uri, dataset, model, measured, averaged, query, limit)
    else:
        asked, centroid_hits, seed_hits, text_hits = _copies_hits(
            uri, dataset, model, copies, measured, averaged, query, limit, exact
        )
    clips = _records(clips, [*asked, *(c for hits in [centroid_hits, text_hits, *seed_hits] for c, _ in hits)])
    centroid_hits, text_hits = _top(clips, centroid_hits, k), _top(clips, text_hits, k)
    neighbours = {
        seed: [clips[c]["label"] for c, _ in _top(clips, hits, k, seed)] for seed, hits in zip(asked, seed_hits)
    }
    precision = recorded or {
        seed: float(np.mean([x == label for x in found])) for seed, found in neighbours.items() if found
    }
    text_ids, centroid_ids = [c for c, _ in text_hits], [c for c, _ in centroid_hits]
    consistency = Consistency(
        label=label,
        k=k,
        text_precision=_share(clips, text_ids, label) if text_ids else None,
        example_precision=_example_precision(precision, neighbours, label, bool(recorded)),
        centroid_precision=_share(clips, centroid_ids, label),
        agreement=len(set(text_ids) & set(centroid_ids)) / len(set(text_ids) | set(centroid_ids)) if text_ids else None,
        pulled=[_pulled(clips[seed]["row"], found, label, precision[seed]) for seed, found in neighbours.items()
                if precision.get(seed, 1.0) < 0.5],
    )  # fmt: skip
    scores = {"text": dict(text_hits), "examples": dict(centroid_hits)}
    pulling = sum(x < 0.5 for x in precision.values())
    counted = len(recorded) or len(asked)
    ranked_exactly = copies is None or exact
    return QueryComparison(
        consistency, text_ids, centroid_ids, scores, len(seeds), counted, len(averaged), pulling, ranked_exactly
    )


Found = tuple[list[str], Hits, list[Hits], Hits]  # the seeds searched; hits of the centroid, each seed, the text


def _store_hits(uri, dataset, model, measured, averaged, query, limit: int) -> Found:
    """The examples' float32 vectors and the store's own search (a Lite file scans every vector shard)."""
    with store_session(uri) as store:
        layout = find_layout(store, dataset, model)
        found = store.exact_vectors(layout, list(dict.fromkeys(measured + averaged)))
        vectors = {c: v[S.VECTOR] for c, v in found.items()}
        asked = [c for c in measured if c in vectors]
        centre = unit_rows(np.mean([vectors[c] for c in averaged if c in vectors], axis=0))
        centroid_hits, *seed_hits = store.search(layout, np.stack([centre] + [vectors[c] for c in asked]), limit)
        text_hits = store.search(layout, query[None], limit, text=True)[0] if query is not None else []
    return asked, centroid_hits, seed_hits, text_hits


def _copies_hits(uri, dataset, model, copies: SearchCopies, measured, averaged, query, limit: int, exact) -> Found:
    """Candidates from the audit's 8-bit copies; with `exact`, the examples' and the candidates' float32 vectors
    from the store (primary-key reads), which rank them as the store's own search would."""
    if not exact:
        wanted = list(dict.fromkeys(measured + averaged))
        vectors = dict(zip(wanted, unit_rows(copies.vectors(copies.positions_of(wanted)))))
        queries, asked = _queries(vectors, measured, averaged)
        centroid_hits, *seed_hits = copies.search(queries, limit)
        text_hits = copies.search(query, limit, text=True)[0] if query is not None else []
        return asked, centroid_hits, seed_hits, text_hits
    with store_session(uri) as store:
        layout = find_layout(store, dataset, model)
        found = store.exact_vectors(layout, list(dict.fromkeys(measured + averaged)))
        queries, asked = _queries({c: v[S.VECTOR] for c, v in found.items()}, measured, averaged)
        candidates = copies.search(queries, limit * RESCORED)
        text_candidates = copies.search(query, limit * RESCORED, text=True)[0] if query is not None else []
        ids = list(dict.fromkeys(c for hits in [*candidates, text_candidates] for c, _ in hits))
        exact_vectors = store.exact_vectors(layout, ids)
    text_field = S.TEXT_VECTOR if layout.text_dim else S.VECTOR
    hits = [_rescored(exact_vectors, S.VECTOR, q, found, limit) for q, found in zip(queries, candidates)]
    text_hits = [] if query is None else _rescored(exact_vectors, text_field, unit_rows(query), text_candidates, limit)
    return asked, hits[0], hits[1:], text_hits


def _queries(vectors: Mapping[str, np.ndarray], measured, averaged) -> tuple[np.ndarray, list[str]]:
    """The centroid of the averaged examples, then each measured example that has a vector; unit rows."""
    asked = [c for c in measured if c in vectors]
    centre = np.mean([vectors[c] for c in averaged if c in vectors], axis=0)
    return unit_rows(np.stack([centre] + [vectors[c] for c in asked])), asked


def _rescored(vectors: Mapping[str, dict], field_name: str, query: np.ndarray, candidates: Hits, limit: int) -> Hits:
    ids = [c for c, _ in candidates if c in vectors]
    if not ids:
        return []
    scores = unit_rows(np.stack([vectors[c][field_name] for c in ids])) @ query
    return sorted(zip(ids, scores.tolist()), key=lambda h: -h[1])[:limit]


def plays_at_once(uri: str, clips: int) -> bool:
    """Whether a page plays a finding's clips as it opens: a player reads its clip's stored row, which on a Lite file
    of many clips loads the whole shard holding it (at 10^6 clips ~1 s a clip); there, thumbnails until asked."""
    return is_server(uri) or clips <= PLAY_LITE_CLIPS


def rescores_exactly(uri: str, clips: int) -> bool:
    """Whether Search asks the store for float32 vectors to rank the copies' candidates (cheap on a server)."""
    return is_server(uri) or clips <= EXACT_LITE_CLIPS


def _example_precision(precision: dict[str, float], neighbours: dict[str, list[str]], label: str, recorded: bool):
    """The share of the examples' neighbours in the class: the mean of the recorded shares (each over the audit's k
    neighbours), or over every neighbour found (a clip near the end of a tiny class has fewer)."""
    if recorded:
        return float(np.mean(list(precision.values())))
    same = [x == label for found in neighbours.values() for x in found]
    return float(np.mean(same)) if same else 0.0


def _sample(ids: list[str], most: int) -> list[str]:
    """All of `ids`, or a seeded sample of `most` of them in their order (the same sample every time)."""
    if len(ids) <= most:
        return ids
    return [ids[i] for i in sorted(np.random.default_rng(0).choice(len(ids), most, replace=False))]


def _text_query(encoder: TextEncoder | None, text: str | None, prompts: Sequence[str]) -> np.ndarray | None:
    """The typed text, else the mean of the class's prompts, in the text space; None without a text model."""
    if encoder is None or not (text or prompts):
        return None
    return unit_rows(np.asarray(encoder([text] if text else list(prompts))).mean(axis=0))


def _records(clips: Mapping[str, dict], ids: list[str]) -> dict[str, dict]:
    """The records of those of `ids` that are clips of the audit: in one read where `clips` can (the app's clip
    table, which would otherwise make a record, or a dict of every clip id, a lookup at a time)."""
    many = getattr(clips, "many", None)
    return many(ids) if many else {c: clips[c] for c in dict.fromkeys(ids) if c in clips}


def _field(clips: Mapping[str, dict], name: str, ids: list[str]) -> dict[str, Any]:
    """One field of each of `ids` (None where a record has none), from its column where `clips` can."""
    column = getattr(clips, "field", None)
    return column(name, ids) if column else {c: clips[c].get(name) for c in ids}


def _top(clips: Mapping[str, dict], hits: Hits, k: int, skip: str | None = None) -> Hits:
    """The k best hits that are clips of the audit (not stale rows), without `skip` (the query's own clip)."""
    return [(c, s) for c, s in hits if c in clips and c != skip][:k]


def _share(clips: Mapping[str, dict], ids: list[str], label: str) -> float:
    return float(np.mean([clips[c]["label"] == label for c in ids]))


def _pulled(row: int, neighbours: list[str], label: str, precision: float) -> dict:
    """An example whose neighbours are mostly another class, and the class it pulls in most (ties: by name)."""
    values, counts = np.unique([x for x in neighbours if x != label] or ["?"], return_counts=True)
    return {"row": int(row), "pulls_in": str(values[np.argmax(counts)]), "precision": float(precision)}
