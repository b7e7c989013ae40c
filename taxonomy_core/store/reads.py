"""The read verbs of MilvusStore: the clip matrix in bulk, companions by clip, thumbnails, searches."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from taxonomy_core import schema as S
from taxonomy_core.store.base import CLIP_COLUMNS, ClipMatrix, DatasetLayout, Hits, Parts, unit_rows
from taxonomy_core.store.filters import filter_eq, filter_in
from taxonomy_core.store.schemas import WHERE, clip_codec, part_codec

COSINE = {"metric_type": "COSINE"}


class Reads:
    """Mixed into MilvusStore, which provides the client, its limits and the shared internals."""

    def count(self, layout: DatasetLayout, which: str = "clips") -> int:
        """Clips stored; for "timeline" or "crops", the clips that have them."""
        layout = self._registered(layout, check=False)
        expr = f"{S.INDEX} == 0" if which in WHERE else ""
        return sum(self._rows_in(collection, expr) for collection in layout.shard_names(which))

    def clip_records(self, layout: DatasetLayout, fields: list[str]) -> Iterator[dict]:
        """Some fields of every stored clip, in pages, one shard at a time."""
        layout = self._registered(layout, check=False)
        for collection in layout.shard_names("clips"):
            for page in self._pages(collection, fields):
                yield from page
            self._evict()

    def clip_matrix(self, layout: DatasetLayout, clip_ids: set[str] | None = None) -> ClipMatrix:
        """Scalars and unit vectors of every clip (or of `clip_ids`), ordered by manifest row.

        Read from the packed int8 copy, shard by shard, a page decoded straight into float32 matrices sized for
        every clip (in read order), then put in row order in place: memory peaks at the matrices plus one shard's
        pages, with no packed copy of every clip, list of per-clip records or second matrix on the way.
        """
        layout = self._registered(layout)
        codec = clip_codec(layout)
        capacity = len(clip_ids) if clip_ids is not None else self.count(layout)
        vectors = [np.empty((capacity, w), np.float32) for w in codec.widths]
        columns: dict[str, list] = {name: [] for name in CLIP_COLUMNS}
        n = 0
        for collection in layout.shard_names("clips"):
            for page in self._pages(collection, CLIP_COLUMNS + [S.PACKED]):
                kept = [r for r in page if clip_ids is None or r[S.CLIP_ID] in clip_ids]
                if not kept:
                    continue
                if n + len(kept) > len(vectors[0]):  # rows written since the count
                    vectors = [np.concatenate([v, np.empty((len(kept), v.shape[1]), np.float32)]) for v in vectors]
                for out, decoded in zip(vectors, codec.unpack(codec.rows_in([r[S.PACKED] for r in kept])[0])[0]):
                    out[n : n + len(kept)] = unit_rows(decoded)
                n += len(kept)
                for name, values in columns.items():
                    values += [r[name] for r in kept]
            self._evict()
        order = np.argsort(np.asarray(columns[S.ROW], np.int64), kind="stable")
        vectors = [permute_rows(v[:n] if n > 0.9 * len(v) else v[:n].copy(), order) for v in vectors]
        table = pd.DataFrame({name: _ordered(values, order) for name, values in columns.items()}, columns=CLIP_COLUMNS)
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

    def clip_fields(self, layout: DatasetLayout, clip_ids: list[str], fields: list[str]) -> dict[str, dict]:
        """Some scalar fields of some clips, by clip id: primary-key reads of the shards they are in, not a scan."""
        layout = self._registered(layout, check=False)
        out = {}
        for shard, ids in self._by_shard(layout, clip_ids).items():
            for row in self._get(layout.shard_names("clips")[shard], S.CLIP_ID, ids, [S.CLIP_ID, *fields]):
                out[row[S.CLIP_ID]] = row
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
        # int8 decodes to a scaled copy: made unit again. Fewer bits decode to unbiased estimates of unit vectors,
        # which renormalising would bias (codec.MSE).
        unit = unit_rows if codec.bits == 8 else (lambda x: x)
        where = where[:, 0] if which == "timeline" else where
        out, start = {}, 0
        for clip_id, group in itertools.groupby(zip(rows, counts), key=lambda pair: pair[0][S.CLIP_ID]):
            n = sum(count for _, count in group)
            part = slice(start, start + n)
            text = unit(vectors[1][part]) if len(vectors) > 1 else None
            out[clip_id] = Parts(where[part], unit(vectors[0][part]), text)
            start += n
        return out

    def _rows_in(self, collection: str, expr: str = "") -> int:
        """Rows in one collection (matching `expr`); loads it: call it where it is about to be read anyway."""
        self._load(collection)
        rows = self._call(self.client.query, collection, filter=expr, output_fields=["count(*)"], **self._read)
        return int(rows[0]["count(*)"])

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


def permute_rows(matrix: np.ndarray, order: np.ndarray) -> np.ndarray:
    """`matrix[order]` made in place (one row held aside while each cycle of the permutation is followed), for a
    matrix too large to hold twice; returns `matrix`."""
    order, done = order.tolist(), bytearray(len(order))
    for start, first in enumerate(order):
        if done[start] or first == start:
            continue
        held, at = matrix[start].copy(), start
        while True:
            done[at] = 1
            source = order[at]
            if source == start:
                matrix[at] = held
                break
            matrix[at] = matrix[source]
            at = source
    return matrix


def _ordered(values: list, order: np.ndarray) -> np.ndarray:
    """A column's values in `order`: numbers as numpy arrays, anything else (text, JSON) as object arrays."""
    numbers = bool(values) and isinstance(values[0], (int, float)) and not isinstance(values[0], bool)
    column = np.asarray(values) if numbers else np.fromiter(values, dtype=object, count=len(values))
    return column[order]
