"""MilvusStore: the store protocol on Milvus, a Lite file or a server (the only module that imports pymilvus).

Lite and a server are two configurations of this one class; they differ in `limits`: a server answers k-NN for
every clip from its own index, builds a vector index and keeps one collection per kind of row; a Lite file (a
pure-Python engine that holds every collection it opens in memory) searches by brute force, splits every kind
of row into shards by clip id and closes and reopens the file to free what a pass over all clips has read.
No torch here.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymilvus import DataType, MilvusClient, MilvusException
from pymilvus.client import entity_helper

from taxonomy_core import schema as S
from taxonomy_core.store.base import (
    CLIP_COLUMNS,
    STORAGE_VERSION,
    ClipMatrix,
    DatasetLayout,
    Hits,
    Parts,
    StoreError,
    StoreLimits,
    unit_rows,
)
from taxonomy_core.store.codec import RowCodec, fit_thumbnail, to_text

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

# pymilvus 3.0's row-based insert checks a VARCHAR value by iterating its characters (one isinstance and one len
# per character, and never the string's own length): 70% of the time of writing packed rows. Milvus checks
# lengths itself, and so do `_pack_clips` and `_per_row`; the check is switched off where pymilvus has it.
if hasattr(entity_helper, "CHECK_STR_ARRAY"):
    entity_helper.CHECK_STR_ARRAY = False

LITE_LIMITS = StoreLimits()
SERVER_LIMITS = replace(LITE_LIMITS, server_side_neighbours=True, vector_index="AUTOINDEX", shards=1)
COSINE = {"metric_type": "COSINE"}

_LITE_USERS: Counter[str] = Counter()  # open stores per Lite file in this process


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))


def _return_arrow_memory(uri: str) -> None:
    """Milvus Lite reads Parquet inside this process with transient memory several times a file's size; Arrow's
    allocator keeps what was freed for Arrow alone. Give it back to the system, where numpy can use it."""
    if not is_server(uri):
        import pyarrow

        pyarrow.default_memory_pool().release_unused()


def _row_bytes(row: dict) -> int:
    """Roughly what a row takes in Milvus Lite's memory: its text, 4 bytes a float, 8 a number."""
    return sum(len(v) if isinstance(v, str) else 4 * len(v) if isinstance(v, list) else 8 for v in row.values())


def _folder_bytes(path: Path) -> int:
    """What a Lite collection takes on disk: about what it takes in memory once open."""
    return sum(f.stat().st_size for f in path.rglob("*.parquet")) if path.is_dir() else 0


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
    """The store protocol on an injected MilvusClient; `MilvusStore.open(uri)` builds one with readable errors.

    Four kinds of rows per dataset, each in `layout.shards` collections split by clip id: "clips" (scalars, the
    fingerprint, the thumbnail and an int8 packed copy of the vectors, read in bulk), "vectors" (the searchable
    float32 vectors and the label they are filtered by), "timeline" and "crops" (packed per clip).
    """

    def __init__(self, client: MilvusClient, uri: str):
        self.client, self.uri = client, uri
        self.limits = SERVER_LIMITS if is_server(uri) else LITE_LIMITS
        self._loaded: dict[str, int] = {}  # open collections and their size on disk (Lite; 0 on a server)
        self._written = 0  # bytes written since the Lite file was last closed
        self._layouts: dict[str, DatasetLayout] = {}  # as registered, by clips collection
        # A server defaults to Bounded consistency: a row written a moment ago could be missing from a read.
        self._read = {"consistency_level": "Strong"}

    @classmethod
    def open(cls, uri: str | None = None, token: str | None = None) -> MilvusStore:
        uri = uri or default_uri()
        token = token or ""  # open_store decides which token this URI may get (boundary.configured_token)
        if not is_server(uri):
            _LITE_USERS[uri] += 1
        lite_log = _Captured()
        logging.getLogger("milvus_lite").addHandler(lite_log)
        try:
            client = MilvusClient(uri=uri, token=token, timeout=10, grpc_options=GRPC_OPTIONS)
        except Exception as e:  # pymilvus and milvus-lite raise many unrelated types here
            _release_lite(uri)
            raise StoreError(_connect_advice(uri, e, lite_log.texts)) from e
        finally:
            logging.getLogger("milvus_lite").removeHandler(lite_log)
        return cls(client, uri)

    def release(self) -> None:
        """Give back what earlier reads loaded: on Lite, close and reopen the file (a server pages by itself)."""
        if self._loaded:
            self._evict()

    def close(self) -> None:
        """Close the client; for a Lite file, give the file back once this process's last store closes."""
        self.client.close()
        _release_lite(self.uri)

    # --- the registry -----------------------------------------------------------------------

    def ensure(self, layout: DatasetLayout) -> None:
        """Create the dataset's collections if missing and record its layout; refuse a dim or storage clash."""
        self._ensure_registry()
        known = self.layout(layout.dataset, layout.model_id)
        clash = next((x for x in self.layouts() if x.clips == layout.clips and x.dataset != layout.dataset), None)
        if clash:  # two names folded into one collection name: never let the later replace the earlier
            raise StoreError(
                f"the dataset name {layout.dataset!r} maps to the collections of dataset {clash.dataset!r} at "
                f"{self.uri}; nothing was written.\nFix: index it under another --dataset name"
            )
        if known:
            self._check_storage(known)
        if known and (known.dim, known.text_dim) != (layout.dim, layout.text_dim):
            raise StoreError(
                f"{layout.clips} at {self.uri} holds {known.dim}-d vectors but {layout.model_id} makes "
                f"{layout.dim}-d; use another --dataset name or drop it with `indexer drop`"
            )
        layout = replace(layout, storage=STORAGE_VERSION, shards=known.shards if known else self.limits.shards)
        searchable = [S.VECTOR] + ([S.TEXT_VECTOR] if layout.text_dim else [])
        for which, schema, vector_fields in [
            ("clips", self._clip_schema(layout), [S.PLACEHOLDER]),
            ("vectors", self._vector_schema(layout), searchable),
            ("timeline", self._part_schema(), [S.PLACEHOLDER]),
            ("crops", self._part_schema(), [S.PLACEHOLDER]),
        ]:
            for name in layout.shard_names(which):
                self._create(name, schema, vector_fields)
        record = {
            "name": layout.clips, "dataset": layout.dataset, "model_id": layout.model_id,
            "layout": asdict(layout), "vector": [0.0, 0.0],
        }  # fmt: skip
        self._call(self.client.upsert, REGISTRY, [record])
        self._layouts[layout.clips] = layout

    def layout(self, dataset: str, model_id: str | None = None) -> DatasetLayout | None:
        found = [x for x in self.layouts() if x.dataset == dataset and model_id in (None, x.model_id)]
        return found[-1] if found else None

    def layouts(self) -> list[DatasetLayout]:
        """Every recorded (dataset, model); a record without a storage version was written in layout 1."""
        if not self._call(self.client.has_collection, REGISTRY):
            return []
        self._load(REGISTRY)
        rows = self._call(self.client.query, REGISTRY, filter="", output_fields=["layout"], limit=16384, **self._read)
        layouts = (DatasetLayout(**{"storage": 1, **r["layout"]}) for r in rows)
        return sorted(layouts, key=lambda x: (x.dataset, x.model_id))

    def drop(self, layout: DatasetLayout) -> None:
        known = self.layout(layout.dataset, layout.model_id) or layout
        for name in known.collections():
            if self._call(self.client.has_collection, name):
                self._call(self.client.drop_collection, name)
            self._loaded.pop(name, None)
        if self._call(self.client.has_collection, REGISTRY):
            self._call(self.client.delete, REGISTRY, filter=filter_eq("name", layout.clips))
        self._layouts.pop(layout.clips, None)

    # --- writes -----------------------------------------------------------------------------

    def write_clips(
        self, layout: DatasetLayout, clips: list[dict], timeline: Iterable[dict] = (), crops: Iterable[dict] = ()
    ) -> None:
        """Companions and vectors first, then the clip rows: a clip row present means its clip is complete.

        Rows come as the indexer makes them (float lists, one row per timeline step or crop); they are packed
        here: int8 copies of the vectors, one companion row per clip (or per chunk of a long timeline).
        """
        layout = self._registered(layout)
        clip_rows, vector_rows = self._pack_clips(layout, clips)
        for which, rows in [
            ("timeline", self._pack_parts(layout, "timeline", list(timeline))),
            ("crops", self._pack_parts(layout, "crops", list(crops))),
            ("vectors", vector_rows),
            ("clips", clip_rows),
        ]:
            for shard, part in self._by_shard(layout, rows, key=lambda r: r[S.CLIP_ID]).items():
                self._upsert(layout.shard_names(which)[shard], part)
            self._written += sum(_row_bytes(r) for r in rows)
        if self._written > self.limits.resident_bytes:  # Lite keeps what it flushed in memory too
            self._evict()

    def update_clips(self, layout: DatasetLayout, patches: list[dict]) -> None:
        """Change scalar fields of stored clips without touching their vectors (a label in both its rows)."""
        if any({S.VECTOR, S.TEXT_VECTOR, S.PACKED} & patch.keys() for patch in patches):
            raise ValueError("update_clips changes scalar fields only; write a clip with new vectors by write_clips")
        layout = self._registered(layout)
        for shard, part in self._by_shard(layout, patches, key=lambda p: p[S.CLIP_ID]).items():
            labels = [{S.CLIP_ID: p[S.CLIP_ID], S.LABEL: p[S.LABEL]} for p in part if S.LABEL in p]
            for which, rows in (("vectors", labels), ("clips", part)):
                for i in range(0, len(rows), self.limits.write_batch):
                    batch = rows[i : i + self.limits.write_batch]
                    self._call(self.client.upsert, layout.shard_names(which)[shard], batch, partial_update=True)

    def delete_clips(self, layout: DatasetLayout, clip_ids: list[str]) -> None:
        """A clip and its companions; the clip row goes first so a half-done delete never looks complete."""
        for collection in self._registered(layout).collections():
            for i in range(0, len(clip_ids), self.limits.read_batch):
                expr = filter_in(S.CLIP_ID, clip_ids[i : i + self.limits.read_batch])
                self._call(self.client.delete, collection, filter=expr)

    def _upsert(self, collection: str, rows: list[dict]) -> None:
        for i in range(0, len(rows), self.limits.write_batch):
            self._call(self.client.upsert, collection, rows[i : i + self.limits.write_batch])

    def _pack_clips(self, layout: DatasetLayout, clips: list[dict]) -> tuple[list[dict], list[dict]]:
        """Clip rows (scalars, fingerprint, thumbnail within budget, int8 packed copy) and their searchable rows."""
        if not clips:
            return [], []
        fields = [S.VECTOR] + ([S.TEXT_VECTOR] if layout.text_dim else [])
        vectors = [np.asarray([c[f] for c in clips], dtype=np.float32) for f in fields]
        packed = clip_codec(layout).pack(vectors)
        budget = self.limits.thumbnail_chars
        clip_rows = [
            {**{k: v for k, v in c.items() if k not in fields}, S.PACKED: to_text(raw),
             S.FINGERPRINT: c.get(S.FINGERPRINT) or "", S.THUMBNAIL: fit_thumbnail(c.get(S.THUMBNAIL) or "", budget),
             S.PLACEHOLDER: PLACEHOLDER}
            for c, raw in zip(clips, packed)
        ]  # fmt: skip
        vector_rows = [{S.CLIP_ID: c[S.CLIP_ID], S.LABEL: c[S.LABEL], **{f: c[f] for f in fields}} for c in clips]
        return clip_rows, vector_rows

    def _pack_parts(self, layout: DatasetLayout, which: str, parts: list[dict]) -> list[dict]:
        """One row per clip (per chunk of `per_row` parts): where each part is and its int8 vectors, in index order."""
        if not parts:
            return []
        codec, where = part_codec(layout, which), WHERE[which]
        parts = sorted(parts, key=lambda p: (p[S.CLIP_ID], p[S.INDEX]))
        vectors = [np.asarray([p[S.VECTOR] for p in parts], dtype=np.float32)]
        if len(codec.widths) > 1:
            vectors.append(np.asarray([p[S.TEXT_VECTOR] for p in parts], dtype=np.float32))
        packed = codec.pack(vectors, np.asarray([p[where] for p in parts], dtype=np.float32))
        per_row, rows, start = self._per_row(codec), [], 0
        for clip_id, group in itertools.groupby(parts, key=lambda p: p[S.CLIP_ID]):
            total = len(list(group))
            for chunk, first in enumerate(range(0, total, per_row)):
                raw = packed[start + first : start + min(first + per_row, total)]
                rows.append({S.PART_ID: f"{clip_id}:{chunk:03d}", S.CLIP_ID: clip_id, S.INDEX: first,
                             S.PARTS: total, S.PACKED: to_text(raw), S.PLACEHOLDER: PLACEHOLDER})  # fmt: skip
            start += total
        return rows

    def _per_row(self, codec: RowCodec) -> int:
        per_row = (self.limits.max_packed_chars // 4 * 3) // codec.row_bytes
        if per_row < 1:
            raise StoreError(f"one packed part takes {codec.row_bytes} bytes, more than a VARCHAR holds at {self.uri}")
        return per_row

    # --- reads ------------------------------------------------------------------------------

    def count(self, layout: DatasetLayout, which: str = "clips") -> int:
        """Clips stored; for "timeline" or "crops", the clips that have them."""
        layout = self._registered(layout, check=False)
        total = 0
        for collection in layout.shard_names(which):
            self._load(collection)
            expr = f"{S.INDEX} == 0" if which in WHERE else ""
            rows = self._call(self.client.query, collection, filter=expr, output_fields=["count(*)"], **self._read)
            total += int(rows[0]["count(*)"])
        return total

    def clip_records(self, layout: DatasetLayout, fields: list[str]) -> Iterator[dict]:
        """Some fields of every stored clip, in pages, one shard at a time."""
        layout = self._registered(layout, check=False)
        for collection in layout.shard_names("clips"):
            for page in self._pages(collection, fields):
                yield from page
            self._evict()

    def clip_matrix(self, layout: DatasetLayout, clip_ids: set[str] | None = None) -> ClipMatrix:
        """Scalars and unit vectors of every clip (or of `clip_ids`), ordered by manifest row.

        Read from the packed int8 copy, shard by shard: each page keeps its bytes (1 per dimension) and the
        float32 matrix is made once at the end, so memory peaks at the matrix plus a quarter of it.
        """
        layout = self._registered(layout)
        codec = clip_codec(layout)
        records, raws = [], []
        for collection in layout.shard_names("clips"):
            for page in self._pages(collection, CLIP_COLUMNS + [S.PACKED]):
                kept = [r for r in page if clip_ids is None or r[S.CLIP_ID] in clip_ids]
                if kept:
                    raws.append(codec.rows_in([r.pop(S.PACKED) for r in kept])[0])
                    records += kept
            self._evict()
        raw = np.concatenate(raws) if raws else np.zeros((0, codec.row_bytes), np.uint8)
        order = np.argsort([r[S.ROW] for r in records], kind="stable")
        vectors = [np.empty((len(order), w), np.float32) for w in codec.widths]
        for start in range(0, len(order), self.limits.scan_batch):
            chunk = order[start : start + self.limits.scan_batch]
            for out, decoded in zip(vectors, codec.unpack(raw[chunk])[0]):
                out[start : start + len(chunk)] = unit_rows(decoded)
        table = pd.DataFrame.from_records([records[i] for i in order], columns=CLIP_COLUMNS)
        table[S.SPLIT] = table[S.SPLIT].replace("", None)
        return ClipMatrix(table, vectors[0], vectors[1] if layout.text_dim else None)

    def companions(self, layout: DatasetLayout, which: str, clip_ids: list[str]) -> dict[str, Parts]:
        """Timeline steps or crops of some clips, ordered by index: primary-key reads of their packed rows."""
        layout = self._registered(layout)
        out: dict[str, Parts] = {}
        for shard, ids in self._by_shard(layout, clip_ids).items():
            out |= self._parts_in(layout, which, layout.shard_names(which)[shard], ids)
        return out

    def companion_pages(
        self, layout: DatasetLayout, which: Sequence[str], clip_ids: list[str]
    ) -> Iterator[dict[str, dict[str, Parts]]]:
        """{clip_id: {which: Parts}} for every clip, a page at a time, shard by shard.

        A Lite file holds every collection it has opened in memory: after each shard the file is closed and
        reopened, so a pass over all clips needs one shard's companions in memory, not all of them.
        """
        layout = self._registered(layout)
        for shard, ids in sorted(self._by_shard(layout, clip_ids).items()):
            for start in range(0, len(ids), self.limits.read_batch):
                page = ids[start : start + self.limits.read_batch]
                got = {w: self._parts_in(layout, w, layout.shard_names(w)[shard], page) for w in which}
                yield {c: {w: got[w][c] for w in which if c in got[w]} for c in page}
            self._evict()

    def thumbnails(self, layout: DatasetLayout, clip_ids: list[str]) -> dict[str, str]:
        """Base64 JPEG per clip id. A bulk read (the report's) holds one clip shard in memory at a time."""
        layout = self._registered(layout, check=False)
        bulk = len(clip_ids) > self.limits.read_batch
        out = {}
        for shard, ids in self._by_shard(layout, clip_ids).items():
            if bulk:
                self.release()
            rows = self._get(layout.shard_names("clips")[shard], S.CLIP_ID, ids, [S.CLIP_ID, S.THUMBNAIL])
            out |= {r[S.CLIP_ID]: r[S.THUMBNAIL] for r in rows}
        if bulk:
            self.release()
        return out

    def exact_vectors(self, layout: DatasetLayout, clip_ids: list[str]) -> dict[str, dict[str, np.ndarray]]:
        """The float32 vectors as written (the searchable copy), per clip id: slow on Lite, for a few clips."""
        layout = self._registered(layout)
        fields = [S.CLIP_ID, S.VECTOR] + ([S.TEXT_VECTOR] if layout.text_dim else [])
        out = {}
        for shard, ids in self._by_shard(layout, clip_ids).items():
            for row in self._get(layout.shard_names("vectors")[shard], S.CLIP_ID, ids, fields):
                out[row[S.CLIP_ID]] = {k: np.asarray(row[k], np.float32) for k in fields[1:]}
        return out

    def search(
        self, layout: DatasetLayout, queries: np.ndarray, k: int, *, text: bool = False, label: str | None = None
    ) -> list[Hits]:
        """The k most similar clips per query (in the text space with `text`), optionally of one label."""
        layout = self._registered(layout)
        field_name = S.TEXT_VECTOR if text and layout.text_dim else S.VECTOR
        expr = filter_eq(S.LABEL, label) if label is not None else ""
        return self._search(layout, queries, field_name, min(k, self.limits.max_top_k), expr=expr)

    def neighbours(self, layout: DatasetLayout, matrix: ClipMatrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each clip's k nearest other clips of `matrix` (positions and cosines), from Milvus's own index."""
        layout = self._registered(layout)
        n = len(matrix.table)
        k = min(k, n - 1)
        position = {c: i for i, c in enumerate(matrix.table[S.CLIP_ID])}
        stale = max(0, self.count(layout) - n)  # stored clips outside this matrix may come back too
        limit = min(self.limits.max_top_k, k + 1 + stale)
        idx = np.zeros((n, k), dtype=np.int64)
        sim = np.full((n, k), -1.0, dtype=np.float32)
        for start in range(0, n, self.limits.read_batch):
            batch = matrix.vectors[start : start + self.limits.read_batch]
            for offset, hits in enumerate(self._search(layout, batch, S.VECTOR, limit)):
                i = start + offset
                found = [(position[c], s) for c, s in hits if position.get(c, i) != i][:k]
                idx[i, : len(found)] = [j for j, _ in found]
                sim[i, : len(found)] = [s for _, s in found]
        return idx, sim

    def pairs_above(
        self, layout: DatasetLayout, matrix: ClipMatrix, similarity: float, k: int
    ) -> list[tuple[int, int, float]]:
        """(i, j, cosine) with i < j for every pair of clips at least `similarity` alike (range search, k per clip)."""
        layout = self._registered(layout)
        position = {c: i for i, c in enumerate(matrix.table[S.CLIP_ID])}
        params = {"params": {"radius": similarity, "range_filter": 1.0 + 1e-6}}
        found: dict[tuple[int, int], float] = {}
        for start in range(0, len(position), self.limits.read_batch):
            batch = matrix.vectors[start : start + self.limits.read_batch]
            for offset, hits in enumerate(self._search(layout, batch, S.VECTOR, k + 1, params=params)):
                for clip_id, s in hits:
                    j = position.get(clip_id)
                    if j is not None and j != start + offset:
                        found[tuple(sorted((start + offset, j)))] = s
        return [(a, b, s) for (a, b), s in sorted(found.items())]

    def _by_shard(self, layout: DatasetLayout, items: list, key=lambda item: item) -> dict[int, list]:
        by_shard: dict[int, list] = {}
        for item in items:
            by_shard.setdefault(layout.shard_of(key(item)), []).append(item)
        return by_shard

    def _parts_in(self, layout: DatasetLayout, which: str, collection: str, clip_ids: list[str]) -> dict[str, Parts]:
        codec = part_codec(layout, which)
        per_row, fields = self._per_row(codec), [S.CLIP_ID, S.INDEX, S.PARTS, S.PACKED]
        rows = self._get(collection, S.PART_ID, [f"{c}:000" for c in clip_ids], fields)
        more = [f"{r[S.CLIP_ID]}:{k:03d}" for r in rows for k in range(1, math.ceil(r[S.PARTS] / per_row))]
        rows = sorted(rows + self._get(collection, S.PART_ID, more, fields), key=lambda r: (r[S.CLIP_ID], r[S.INDEX]))
        if not rows:
            return {}
        raw, counts = codec.rows_in([r[S.PACKED] for r in rows])
        vectors, where = codec.unpack(raw)
        where = where[:, 0] if which == "timeline" else where
        out, start = {}, 0
        for clip_id, group in itertools.groupby(zip(rows, counts), key=lambda pair: pair[0][S.CLIP_ID]):
            n = sum(count for _, count in group)
            part = slice(start, start + n)
            text = unit_rows(vectors[1][part]) if len(vectors) > 1 else None
            out[clip_id] = Parts(where[part], unit_rows(vectors[0][part]), text)
            start += n
        return out

    def _pages(self, collection: str, fields: list[str]) -> Iterator[list[dict]]:
        self._load(collection)
        iterator = self._call(
            self.client.query_iterator, collection, batch_size=self.limits.scan_batch, filter="",
            output_fields=fields, **self._read,
        )  # fmt: skip
        try:
            while page := self._call(iterator.next):
                yield page
        finally:
            iterator.close()

    def _get(self, collection: str, key: str, values: list[str], fields: list[str]) -> list[dict]:
        """Rows whose `key` is one of `values`; fast where `key` is the primary key (an unindexed field scans)."""
        if not values:
            return []
        self._load(collection)
        out: list[dict] = []
        for i in range(0, len(values), self.limits.read_batch):
            expr = filter_in(key, values[i : i + self.limits.read_batch])
            out += self._call(self.client.query, collection, filter=expr, output_fields=fields, **self._read)
        return out

    def _search(self, layout: DatasetLayout, queries: np.ndarray, field_name: str, limit: int, expr="", params=None):
        """Hits per query over every shard of the searchable vectors, best first."""
        data = np.asarray(queries, dtype=np.float32).reshape(len(queries), -1).tolist()
        merged: list[Hits] = [[] for _ in data]
        for collection in layout.shard_names("vectors"):
            self._load(collection)
            results = self._call(
                self.client.search, collection, data=data, anns_field=field_name, limit=limit, filter=expr,
                output_fields=[S.CLIP_ID], search_params={**COSINE, **(params or {})}, **self._read,
            )  # fmt: skip
            for hits, found in zip(merged, results):
                hits += [(h[S.CLIP_ID], float(h["distance"])) for h in found]
        return [sorted(hits, key=lambda h: -h[1])[:limit] for hits in merged]

    # --- internals --------------------------------------------------------------------------

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MilvusException as e:
            gone = "connect" in e.message.lower() or "unavailable" in e.message.lower()
            fix = "\nFix: start the server again and rerun the same command: it resumes, what was written is kept"
            raise StoreError(
                f"Milvus at {self.uri} failed in {getattr(fn, '__name__', fn)}: {e.message}" + (fix if gone else "")
            ) from e

    def _load(self, collection: str) -> None:
        """Open a collection for reads; on Lite, first close the file if what is open would pass the budget."""
        if collection in self._loaded:
            return
        size = 0 if is_server(self.uri) else _folder_bytes(Path(self.uri) / "collections" / collection)
        if sum(self._loaded.values()) + size > self.limits.resident_bytes:
            self._evict()
        if not self._call(self.client.has_collection, collection):
            raise StoreError(f"no collection {collection} at {self.uri}; index the dataset first (`indexer index`)")
        self._call(self.client.load_collection, collection)
        self._loaded[collection] = size
        _return_arrow_memory(self.uri)

    def _registered(self, layout: DatasetLayout, check: bool = True) -> DatasetLayout:
        """The layout as the registry records it (its storage version and shards), whatever the caller built."""
        if layout.clips not in self._layouts:
            known = self.layout(layout.dataset, layout.model_id)
            if known is None:
                raise StoreError(f"no dataset {layout.dataset!r} ({layout.model_id}) at {self.uri}; index it first")
            self._layouts[layout.clips] = known
        known = self._layouts[layout.clips]
        if check:
            self._check_storage(known)
        return known

    def _evict(self) -> None:
        """Milvus Lite keeps every collection it has opened in memory until its file is closed: close and reopen
        it (only when this is the process's one store on the file; the reopen waits for a moment's holder)."""
        self._written = 0
        if is_server(self.uri) or _LITE_USERS[self.uri] != 1:
            return
        from milvus_lite.server_manager import server_manager_instance

        self.client.close()
        server_manager_instance.release_server(self.uri)
        self._loaded.clear()
        _return_arrow_memory(self.uri)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client = MilvusClient(uri=self.uri, timeout=10, grpc_options=GRPC_OPTIONS)
                return
            except Exception as e:  # another process took the file in between (the app, for one query)
                if time.monotonic() > deadline:
                    raise StoreError(_connect_advice(self.uri, e, [])) from e
                time.sleep(0.5)

    def _check_storage(self, layout: DatasetLayout) -> None:
        if layout.storage != STORAGE_VERSION:
            raise StoreError(
                f"{layout.dataset} ({layout.model_id}) at {self.uri} is stored in layout {layout.storage}; this "
                f"version reads layout {STORAGE_VERSION} (packed int8 copies, one companion row per clip, shards).\n"
                f"Fix: re-index it: `indexer drop {layout.dataset} --model {layout.model_id}`, then "
                "`indexer index MANIFEST` again (or index into a new --dataset name)"
            )

    def _ensure_registry(self) -> None:
        if self._call(self.client.has_collection, REGISTRY):
            return
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("name", DataType.VARCHAR, max_length=512, is_primary=True)
        schema.add_field("dataset", DataType.VARCHAR, max_length=512)
        schema.add_field("model_id", DataType.VARCHAR, max_length=1024)
        schema.add_field("layout", DataType.JSON)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one vector field
        self._create(REGISTRY, schema, ["vector"])

    def _create(self, name: str, schema, vector_fields: list[str]) -> None:
        """A collection with the configured vector index (none on Lite, which then searches by brute force)."""
        if self._call(self.client.has_collection, name):
            return
        index = None
        if self.limits.vector_index:
            index = self.client.prepare_index_params()
            for vector_field in vector_fields:
                index.add_index(vector_field, index_type=self.limits.vector_index, metric_type="COSINE")
        self._call(self.client.create_collection, name, schema=schema, index_params=index)

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
        schema.add_field(S.FINGERPRINT, DataType.VARCHAR, max_length=lim.max_fingerprint_chars)
        packed_chars = 4 * math.ceil(clip_codec(layout).row_bytes / 3)
        schema.add_field(S.PACKED, DataType.VARCHAR, max_length=packed_chars)  # read back in bulk
        schema.add_field(S.PLACEHOLDER, DataType.FLOAT_VECTOR, dim=2)  # never searched: Milvus needs one
        return schema

    def _vector_schema(self, layout: DatasetLayout):
        """What Milvus searches: the float32 vectors, and the label a search may be filtered by."""
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(S.CLIP_ID, DataType.VARCHAR, max_length=64, is_primary=True)
        schema.add_field(S.LABEL, DataType.VARCHAR, max_length=self.limits.max_label_chars)
        schema.add_field(S.VECTOR, DataType.FLOAT_VECTOR, dim=layout.dim)
        if layout.text_dim:
            schema.add_field(S.TEXT_VECTOR, DataType.FLOAT_VECTOR, dim=layout.text_dim)
        return schema

    def _part_schema(self):
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(S.PART_ID, DataType.VARCHAR, max_length=80, is_primary=True)
        schema.add_field(S.CLIP_ID, DataType.VARCHAR, max_length=64)
        schema.add_field(S.INDEX, DataType.INT64)
        schema.add_field(S.PARTS, DataType.INT64)
        schema.add_field(S.PACKED, DataType.VARCHAR, max_length=self.limits.max_packed_chars)
        schema.add_field(S.PLACEHOLDER, DataType.FLOAT_VECTOR, dim=2)  # never searched: Milvus needs one
        return schema


WHERE = {"timeline": S.TIME, "crops": S.BOX}
# pymilvus pings every 10 s even while idle; gRPC servers with default settings (Milvus Lite's, in-process or
# `milvus-lite server`) answer the third idle ping with GOAWAY "too_many_pings", and the next call on that
# channel fails as UNAVAILABLE. Ping only during calls, no more often than such a server accepts.
GRPC_OPTIONS = {"grpc.keepalive_permit_without_calls": False, "grpc.keepalive_time_ms": 300_000}
PLACEHOLDER = [1.0, 0.0]


def clip_codec(layout: DatasetLayout) -> RowCodec:
    """A clip's packed copy: its visual vector, then its text-space vector where the layout has one."""
    return RowCodec((layout.dim, layout.text_dim) if layout.text_dim else (layout.dim,))


def part_codec(layout: DatasetLayout, which: str) -> RowCodec:
    """A timeline step: its time, visual and text vectors. A crop: its box and visual vector only (no check
    reads a crop's text vector, and there are ten crops a clip: they would be the largest part of the store)."""
    if which == "timeline":
        return RowCodec((layout.dim, layout.text_dim) if layout.text_dim else (layout.dim,), floats=1)
    if which == "crops":
        return RowCodec((layout.dim,), floats=4)
    raise ValueError(f"unknown companion {which!r}; known: timeline, crops")


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
