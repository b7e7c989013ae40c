"""MilvusStore: the store protocol on Milvus, a Lite file or a server (the only module that imports pymilvus).

Lite and a server are two configurations of this one class: they differ in `limits` (a server answers
k-NN for every clip from its own index) and in how a file lock is released. No torch here.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import pandas as pd
from pymilvus import DataType, MilvusClient, MilvusException

from taxonomy_core import schema as S
from taxonomy_core.store.base import (
    CLIP_COLUMNS,
    ClipMatrix,
    DatasetLayout,
    Hits,
    Parts,
    StoreError,
    StoreLimits,
    unit_rows,
)

log = logging.getLogger(__name__)

DEFAULT_URI = "./auditor.db"
URI_ENV = "AUDITOR_MILVUS_URI"
TOKEN_ENV = "AUDITOR_MILVUS_TOKEN"
REGISTRY = "ta_registry"


class _UnimplementedAllocTimestamp(logging.Filter):
    """Milvus Lite does not implement AllocTimestamp; pymilvus's query iterator probes it, then falls back.

    The in-process gRPC server logs each probe as an error with a traceback: noise, not a problem.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        text = f"{record.getMessage()} {record.exc_info[1] if record.exc_info else ''}"
        return "Method not implemented" not in text and "failed to get mvccTs" not in text


for _name in ("grpc._server", "pymilvus.client.iterator.query_iterator"):
    logging.getLogger(_name).addFilter(_UnimplementedAllocTimestamp())

LITE_LIMITS = StoreLimits()
SERVER_LIMITS = replace(LITE_LIMITS, server_side_neighbours=True)

_LITE_USERS: Counter[str] = Counter()  # open stores per Lite file in this process


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))


def _release_lite(uri: str) -> None:
    """pymilvus's close() leaves Milvus Lite's in-process server holding the file lock until exit."""
    if is_server(uri) or _LITE_USERS[uri] <= 0:
        return
    _LITE_USERS[uri] -= 1
    if _LITE_USERS[uri] == 0:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


def default_uri() -> str:
    return os.environ.get(URI_ENV, DEFAULT_URI)


def quote(value: Any) -> str:
    """A Milvus expression literal. Every value spliced into a filter goes through here."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def filter_in(field_name: str, values: Iterable[Any]) -> str:
    return f"{field_name} in [{', '.join(quote(v) for v in values)}]"


def filter_eq(field_name: str, value: Any) -> str:
    return f"{field_name} == {quote(value)}"


class MilvusStore:
    """The store protocol on an injected MilvusClient; `MilvusStore.open(uri)` builds one with readable errors."""

    def __init__(self, client: MilvusClient, uri: str):
        self.client, self.uri = client, uri
        self.limits = SERVER_LIMITS if is_server(uri) else LITE_LIMITS
        self._loaded: set[str] = set()
        # A server defaults to Bounded consistency: a row written a moment ago could be missing from a read.
        self._read = {"consistency_level": "Strong"}

    @classmethod
    def open(cls, uri: str | None = None, token: str | None = None) -> MilvusStore:
        uri = uri or default_uri()
        token = token if token is not None else os.environ.get(TOKEN_ENV, "")
        if not is_server(uri):
            _LITE_USERS[uri] += 1
        lite_log = _Captured()
        logging.getLogger("milvus_lite").addHandler(lite_log)
        try:
            client = MilvusClient(uri=uri, token=token, timeout=10)
        except Exception as e:  # pymilvus and milvus-lite raise many unrelated types here
            _release_lite(uri)
            raise StoreError(_connect_advice(uri, e, lite_log.texts)) from e
        finally:
            logging.getLogger("milvus_lite").removeHandler(lite_log)
        return cls(client, uri)

    def close(self) -> None:
        """Close the client; for a Lite file, give the file back once this process's last store closes."""
        self.client.close()
        _release_lite(self.uri)

    # --- the registry -----------------------------------------------------------------------

    def ensure(self, layout: DatasetLayout) -> None:
        """Create the dataset's collections if missing and record its layout; refuse a dim clash."""
        self._ensure_registry()
        known = self.layout(layout.dataset, layout.model_id)
        if known and (known.dim, known.text_dim) != (layout.dim, layout.text_dim):
            raise StoreError(
                f"{layout.clips} at {self.uri} holds {known.dim}-d vectors but {layout.model_id} makes "
                f"{layout.dim}-d; use another --dataset name or drop it with `indexer drop`"
            )
        self._create(layout.clips, self._clip_schema(layout), layout)
        self._create(layout.timeline, self._part_schema(layout, S.TIME, DataType.DOUBLE), layout)
        self._create(layout.crops, self._part_schema(layout, S.BOX, DataType.JSON), layout)
        record = {
            "name": layout.clips, "dataset": layout.dataset, "model_id": layout.model_id,
            "layout": asdict(layout), "vector": [0.0, 0.0],
        }  # fmt: skip
        self._call(self.client.upsert, REGISTRY, [record])

    def layout(self, dataset: str, model_id: str | None = None) -> DatasetLayout | None:
        found = [x for x in self.layouts() if x.dataset == dataset and model_id in (None, x.model_id)]
        return found[-1] if found else None

    def layouts(self) -> list[DatasetLayout]:
        if not self._call(self.client.has_collection, REGISTRY):
            return []
        self._load(REGISTRY)
        rows = self._call(self.client.query, REGISTRY, filter="", output_fields=["layout"], limit=16384, **self._read)
        return sorted((DatasetLayout(**r["layout"]) for r in rows), key=lambda x: (x.dataset, x.model_id))

    def drop(self, layout: DatasetLayout) -> None:
        for name in (layout.clips, layout.timeline, layout.crops):
            if self._call(self.client.has_collection, name):
                self._call(self.client.drop_collection, name)
        if self._call(self.client.has_collection, REGISTRY):
            self._call(self.client.delete, REGISTRY, filter=filter_eq("name", layout.clips))

    # --- writes -----------------------------------------------------------------------------

    def write_clips(
        self, layout: DatasetLayout, clips: list[dict], timeline: Iterable[dict] = (), crops: Iterable[dict] = ()
    ) -> None:
        """Companions first, then the clip rows: a clip row present means its clip is complete."""
        self._upsert(layout.timeline, list(timeline))
        self._upsert(layout.crops, list(crops))
        if not layout.fingerprints:  # a dataset indexed before fingerprints existed has no such field
            clips = [{k: v for k, v in c.items() if k != S.FINGERPRINT} for c in clips]
        self._upsert(layout.clips, clips)

    def update_clips(self, layout: DatasetLayout, patches: list[dict]) -> None:
        """Change scalar fields of stored clips without touching their vectors."""
        for i in range(0, len(patches), self.limits.write_batch):
            batch = patches[i : i + self.limits.write_batch]
            self._call(self.client.upsert, layout.clips, batch, partial_update=True)

    def delete_clips(self, layout: DatasetLayout, clip_ids: list[str]) -> None:
        """A clip and its companions; the clip row goes first so a half-done delete never looks complete."""
        for collection in (layout.clips, layout.timeline, layout.crops):
            for i in range(0, len(clip_ids), self.limits.read_batch):
                expr = filter_in(S.CLIP_ID, clip_ids[i : i + self.limits.read_batch])
                self._call(self.client.delete, collection, filter=expr)

    def _upsert(self, collection: str, rows: list[dict]) -> None:
        for i in range(0, len(rows), self.limits.write_batch):
            self._call(self.client.upsert, collection, rows[i : i + self.limits.write_batch])

    # --- reads ------------------------------------------------------------------------------

    def count(self, layout: DatasetLayout, which: str = "clips") -> int:
        collection = layout.collection(which)
        self._load(collection)
        rows = self._call(self.client.query, collection, filter="", output_fields=["count(*)"], **self._read)
        return int(rows[0]["count(*)"])

    def clip_records(self, layout: DatasetLayout, fields: list[str]) -> Iterator[dict]:
        """Some fields of every stored clip, in pages, without loading the collection at once."""
        return self._iterate(layout.clips, fields)

    def clip_matrix(self, layout: DatasetLayout, clip_ids: set[str] | None = None) -> ClipMatrix:
        """Scalars and unit vectors of every clip (or of `clip_ids`), ordered by manifest row."""
        columns = CLIP_COLUMNS + ([S.FINGERPRINT] if layout.fingerprints else [])
        fields = columns + [S.VECTOR] + ([S.TEXT_VECTOR] if layout.text_dim else [])
        records = [r for r in self._iterate(layout.clips, fields) if clip_ids is None or r[S.CLIP_ID] in clip_ids]
        records.sort(key=lambda r: r[S.ROW])
        vectors = np.array([r.pop(S.VECTOR) for r in records], dtype=np.float32).reshape(len(records), layout.dim)
        text = None
        if layout.text_dim:
            text = unit_rows(np.array([r.pop(S.TEXT_VECTOR) for r in records]).reshape(len(records), layout.text_dim))
        table = pd.DataFrame.from_records(records, columns=columns)
        table[S.SPLIT] = table[S.SPLIT].replace("", None)
        return ClipMatrix(table, unit_rows(vectors), text)

    def companions(self, layout: DatasetLayout, which: str, clip_ids: list[str]) -> dict[str, Parts]:
        """Timeline steps or crops of some clips, grouped per clip and ordered by index."""
        where = S.TIME if which == "timeline" else S.BOX
        fields = [S.CLIP_ID, S.INDEX, where, S.VECTOR] + ([S.TEXT_VECTOR] if layout.text_dim else [])
        grouped: dict[str, list[dict]] = {}
        for row in self._get(layout.collection(which), clip_ids, fields):
            grouped.setdefault(row[S.CLIP_ID], []).append(row)
        out = {}
        for clip_id, rows in grouped.items():
            rows.sort(key=lambda r: r[S.INDEX])
            text = unit_rows(np.array([r[S.TEXT_VECTOR] for r in rows])) if layout.text_dim else None
            where_values = np.array([r[where] for r in rows], dtype=np.float32)
            out[clip_id] = Parts(where_values, unit_rows(np.array([r[S.VECTOR] for r in rows])), text)
        return out

    def thumbnails(self, layout: DatasetLayout, clip_ids: list[str]) -> dict[str, str]:
        """Base64 JPEG per clip id."""
        return {r[S.CLIP_ID]: r[S.THUMBNAIL] for r in self._get(layout.clips, clip_ids, [S.CLIP_ID, S.THUMBNAIL])}

    def search(
        self, layout: DatasetLayout, queries: np.ndarray, k: int, *, text: bool = False, label: str | None = None
    ) -> list[Hits]:
        """The k most similar clips per query (in the text space with `text`), optionally of one label."""
        field_name = S.TEXT_VECTOR if text and layout.text_dim else S.VECTOR
        expr = filter_eq(S.LABEL, label) if label is not None else ""
        results = self._search(layout.clips, queries, field_name, min(k, self.limits.max_top_k), expr=expr)
        return [[(h[S.CLIP_ID], float(h["distance"])) for h in hits] for hits in results]

    def neighbours(self, layout: DatasetLayout, matrix: ClipMatrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each clip's k nearest other clips of `matrix` (positions and cosines), from Milvus's own index."""
        n = len(matrix.table)
        k = min(k, n - 1)
        position = {c: i for i, c in enumerate(matrix.table[S.CLIP_ID])}
        stale = max(0, self.count(layout) - n)  # stored clips outside this matrix may come back too
        limit = min(self.limits.max_top_k, k + 1 + stale)
        idx = np.zeros((n, k), dtype=np.int64)
        sim = np.full((n, k), -1.0, dtype=np.float32)
        for start in range(0, n, self.limits.read_batch):
            batch = matrix.vectors[start : start + self.limits.read_batch]
            for offset, hits in enumerate(self._search(layout.clips, batch, S.VECTOR, limit)):
                i = start + offset
                found = [(position[h[S.CLIP_ID]], h["distance"]) for h in hits if position.get(h[S.CLIP_ID], i) != i]
                found = found[:k]
                idx[i, : len(found)] = [j for j, _ in found]
                sim[i, : len(found)] = [s for _, s in found]
        return idx, sim

    def pairs_above(
        self, layout: DatasetLayout, matrix: ClipMatrix, similarity: float, k: int
    ) -> list[tuple[int, int, float]]:
        """(i, j, cosine) with i < j for every pair of clips at least `similarity` alike (range search, k per clip)."""
        position = {c: i for i, c in enumerate(matrix.table[S.CLIP_ID])}
        params = {"params": {"radius": similarity, "range_filter": 1.0 + 1e-6}}
        found: dict[tuple[int, int], float] = {}
        for start in range(0, len(position), self.limits.read_batch):
            batch = matrix.vectors[start : start + self.limits.read_batch]
            for offset, hits in enumerate(self._search(layout.clips, batch, S.VECTOR, k + 1, params=params)):
                for h in hits:
                    j = position.get(h[S.CLIP_ID])
                    if j is not None and j != start + offset:
                        found[tuple(sorted((start + offset, j)))] = float(h["distance"])
        return [(a, b, s) for (a, b), s in sorted(found.items())]

    def _iterate(self, collection: str, fields: list[str]) -> Iterator[dict]:
        self._load(collection)
        iterator = self._call(
            self.client.query_iterator, collection, batch_size=self.limits.read_batch, filter="",
            output_fields=fields, **self._read,
        )  # fmt: skip
        try:
            while page := self._call(iterator.next):
                yield from page
        finally:
            iterator.close()

    def _get(self, collection: str, clip_ids: list[str], fields: list[str]) -> list[dict]:
        self._load(collection)
        out: list[dict] = []
        for i in range(0, len(clip_ids), self.limits.read_batch):
            expr = filter_in(S.CLIP_ID, clip_ids[i : i + self.limits.read_batch])
            out += self._call(self.client.query, collection, filter=expr, output_fields=fields, **self._read)
        return out

    def _search(self, collection: str, queries: np.ndarray, field_name: str, limit: int, expr: str = "", params=None):
        self._load(collection)
        data = np.asarray(queries, dtype=np.float32).reshape(len(queries), -1).tolist()
        return self._call(
            self.client.search, collection, data=data, anns_field=field_name, limit=limit, filter=expr,
            output_fields=[S.CLIP_ID], search_params=params or {}, **self._read,
        )  # fmt: skip

    # --- internals --------------------------------------------------------------------------

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MilvusException as e:
            raise StoreError(f"Milvus at {self.uri} failed in {getattr(fn, '__name__', fn)}: {e.message}") from e

    def _load(self, collection: str) -> None:
        if collection not in self._loaded:
            if not self._call(self.client.has_collection, collection):
                raise StoreError(f"no collection {collection} at {self.uri}; index the dataset first (`indexer index`)")
            self._call(self.client.load_collection, collection)
            self._loaded.add(collection)

    def _ensure_registry(self) -> None:
        if self._call(self.client.has_collection, REGISTRY):
            return
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("name", DataType.VARCHAR, max_length=512, is_primary=True)
        schema.add_field("dataset", DataType.VARCHAR, max_length=512)
        schema.add_field("model_id", DataType.VARCHAR, max_length=1024)
        schema.add_field("layout", DataType.JSON)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one vector field
        self._create_with_index(REGISTRY, schema, ["vector"])

    def _create(self, name: str, schema, layout: DatasetLayout) -> None:
        if not self._call(self.client.has_collection, name):
            vectors = [S.VECTOR] + ([S.TEXT_VECTOR] if layout.text_dim else [])
            self._create_with_index(name, schema, vectors)

    def _create_with_index(self, name: str, schema, vector_fields: list[str]) -> None:
        index = self.client.prepare_index_params()
        for vector_field in vector_fields:
            index.add_index(vector_field, index_type="AUTOINDEX", metric_type="COSINE")
        self._call(self.client.create_collection, name, schema=schema, index_params=index)
        self._loaded.add(name)

    @staticmethod
    def _add_vectors(schema, layout: DatasetLayout) -> None:
        schema.add_field(S.VECTOR, DataType.FLOAT_VECTOR, dim=layout.dim)
        if layout.text_dim:
            schema.add_field(S.TEXT_VECTOR, DataType.FLOAT_VECTOR, dim=layout.text_dim)

    def _clip_schema(self, layout: DatasetLayout):
        lim = self.limits
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(S.CLIP_ID, DataType.VARCHAR, max_length=64, is_primary=True)
        schema.add_field(S.ROW, DataType.INT64)
        schema.add_field(S.VIDEO, DataType.VARCHAR, max_length=lim.max_video_chars)
        schema.add_field(S.START, DataType.DOUBLE)
        schema.add_field(S.END, DataType.DOUBLE)
        schema.add_field(S.LABEL, DataType.VARCHAR, max_length=lim.max_label_chars)
        schema.add_field(S.SPLIT, DataType.VARCHAR, max_length=lim.max_split_chars)
        schema.add_field(S.MODEL_ID, DataType.VARCHAR, max_length=1024)
        schema.add_field(S.DURATION, DataType.DOUBLE)
        schema.add_field(S.FPS, DataType.DOUBLE)
        schema.add_field(S.WIDTH, DataType.INT64)
        schema.add_field(S.HEIGHT, DataType.INT64)
        schema.add_field(S.CODEC, DataType.VARCHAR, max_length=64)
        schema.add_field(S.BRIGHTNESS, DataType.DOUBLE)
        schema.add_field(S.EXTRA, DataType.JSON)
        schema.add_field(S.THUMBNAIL, DataType.VARCHAR, max_length=lim.max_thumbnail_chars)
        if layout.fingerprints:
            schema.add_field(S.FINGERPRINT, DataType.VARCHAR, max_length=lim.max_fingerprint_chars)
        self._add_vectors(schema, layout)
        return schema

    def _part_schema(self, layout: DatasetLayout, where: str, where_type: DataType):
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(S.PART_ID, DataType.VARCHAR, max_length=80, is_primary=True)
        schema.add_field(S.CLIP_ID, DataType.VARCHAR, max_length=64)
        schema.add_field(S.INDEX, DataType.INT64)
        schema.add_field(where, where_type)
        self._add_vectors(schema, layout)
        return schema


class _Captured(logging.Handler):
    """Milvus Lite logs the real cause of a failed open (a held lock) instead of chaining it."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(f"{record.getMessage()} {record.exc_info[1] if record.exc_info else ''}")


def _connect_advice(uri: str, error: BaseException, logged: list[str]) -> str:
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
