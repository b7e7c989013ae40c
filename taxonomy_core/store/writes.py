"""The write verbs of MilvusStore: clips with their companions (packed here), scalar patches, deletes."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import replace

import numpy as np
from pymilvus.client import entity_helper

from taxonomy_core import schema as S
from taxonomy_core.store.base import DatasetLayout, StoreError
from taxonomy_core.store.codec import fit_thumbnail, to_text
from taxonomy_core.store.filters import filter_in
from taxonomy_core.store.schemas import PLACEHOLDER, WHERE, clip_codec, part_codec

# pymilvus 3.0's row-based insert checks a VARCHAR value by iterating its characters (one isinstance and one len
# per character, and never the string's own length): 70% of the time of writing packed rows. Milvus checks
# lengths itself, and so do `_pack_clips` and `_per_row`; the check is switched off where pymilvus has it.
if hasattr(entity_helper, "CHECK_STR_ARRAY"):
    entity_helper.CHECK_STR_ARRAY = False


KINDS = ("timeline", "crops", "vectors", "clips")  # the order a clip's rows land in: its clip row last


class Writes:
    """Mixed into MilvusStore, which provides the client, its limits and the shared internals."""

    def write_clips(
        self, layout: DatasetLayout, clips: list[dict], timeline: Iterable[dict] = (), crops: Iterable[dict] = ()
    ) -> None:
        """Companions and vectors first, then the clip rows: a clip row present means its clip is complete.

        Rows come as the indexer makes them (float lists, one row per timeline step or crop); they are packed
        here: int8 copies of the vectors, one companion row per clip (or per chunk of a long timeline).
        """
        layout = self._registered(layout)
        clip_rows, vector_rows = self._pack_clips(layout, clips)
        kinds = [
            ("timeline", self._pack_parts(layout, "timeline", list(timeline))),
            ("crops", self._pack_parts(layout, "crops", list(crops))),
            ("vectors", vector_rows),
            ("clips", clip_rows),
        ]
        adding = sum(row_bytes(r) for _, rows in kinds for r in rows)
        if self._staging(layout, adding):
            self._stage(layout, kinds, adding)
            return
        for which, rows in kinds:
            for shard, part in self._by_shard(layout, rows, key=lambda r: r[S.CLIP_ID]).items():
                self._upsert(layout.shard_names(which)[shard], part)
            self._written += sum(row_bytes(r) for r in rows)
        if self._written > self.limits.resident_bytes:  # Lite keeps what it flushed in memory too
            self._evict()

    def flush(self) -> None:
        """Write the staged rows shard by shard, companions before clip rows, closing the Lite file whenever
        what it holds open passes `resident_bytes`: about that much of the store in memory at a time, not all
        of it. Every other call to the store flushes first."""
        staged, self._staged, self._staged_bytes = sorted(self._staged.items()), {}, 0
        refused: list[tuple[StoreError, int]] = []  # a shard Milvus refuses does not keep the others out
        for (clips, shard), kinds in staged:
            layout = self._layouts[clips]
            try:
                for which in KINDS:
                    self._upsert(layout.shard_names(which)[shard], kinds.get(which, []))
            except StoreError as e:
                refused.append((e, len(kinds.get("clips", []))))
                continue
            self._written += sum(row_bytes(r) for rows in kinds.values() for r in rows)
            self._written += sum(self._disk_bytes(layout.shard_names(which)[shard]) for which in KINDS)
            if self._written > self.limits.resident_bytes:  # this shard, and any before it, stay open until then
                self._evict()
        if refused:
            lost = sum(n for _, n in refused)
            raise StoreError(
                f"{refused[0][0]}\n{lost} clips accepted for writing were not written (their clip rows are absent, "
                f"so a rerun writes them again); the other {len(staged) - len(refused)} of {len(staged)} shards were"
            ) from refused[0][0]

    def _staging(self, layout: DatasetLayout, adding: int) -> bool:
        """Stage on a Lite file once the dataset passes `resident_bytes` (below that, every shard fits in memory
        at once and each write is durable when it returns, as a resumed job expects of a small one)."""
        if not (self.limits.staged_bytes and layout.shards > 1):
            return False
        if layout.clips not in self._dataset_bytes:
            self._dataset_bytes[layout.clips] = sum(self._disk_bytes(name) for name in layout.collections())
        self._dataset_bytes[layout.clips] += adding
        return bool(self._staged) or self._dataset_bytes[layout.clips] > self.limits.resident_bytes

    def _stage(self, layout: DatasetLayout, kinds: list[tuple[str, list[dict]]], nbytes: int) -> None:
        """Hold packed rows (`nbytes` of them) by shard until `staged_bytes` wait, then write them all (`flush`)."""
        for which, rows in kinds:
            for shard, part in self._by_shard(layout, rows, key=lambda r: r[S.CLIP_ID]).items():
                self._staged.setdefault((layout.clips, shard), {}).setdefault(which, []).extend(part)
        self._staged_bytes += nbytes
        if self._staged_bytes > self.limits.staged_bytes:
            self.flush()

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

    def _spread(self, known: DatasetLayout) -> DatasetLayout:
        """A one-collection dataset's rows moved into `limits.shards` collections a kind, once it grows past
        `StoreLimits.one_shard_clips`: each kind copied page by page, then the registry names the new layout, then
        the old collections go. Killed part way, the registry still names the old collections, whole: the next job
        moves them again, and `ensure` or `drop` removes the half-made ones (or, killed after the registry, the old
        ones)."""
        grown, kinds = replace(known, shards=self.limits.shards), self._kinds(known)
        for which, schema, vector_fields in kinds:
            [old], new = known.shard_names(which), grown.shard_names(which)
            for name in new:
                self._drop_collection(name)  # left by a move that was killed
                self._create(name, schema, vector_fields)
            for page in self._pages(old, [field.name for field in schema.fields]):
                for shard, part in self._by_shard(grown, page, key=lambda r: r[S.CLIP_ID]).items():
                    self._upsert(new[shard], part)
        self._record(grown)
        for which, _, _ in kinds:
            [old] = known.shard_names(which)
            self._drop_collection(old)
        self._evict()  # Lite holds every collection it wrote in memory: let the copies go
        return grown

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


def row_bytes(row: dict) -> int:
    """Roughly what a row takes in Milvus Lite's memory: its text, 4 bytes a float (a list or an array), 8 a number."""
    return sum(
        len(v) if isinstance(v, str) else 4 * len(v) if isinstance(v, list | np.ndarray) else 8 for v in row.values()
    )
