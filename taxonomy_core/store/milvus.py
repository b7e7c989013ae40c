"""MilvusStore: the store protocol on Milvus, a Lite file or a server (pymilvus is imported in this package only).

Lite and a server are two configurations of this one class; they differ in `limits`: a server answers k-NN for
every clip from its own index, builds a vector index and keeps one collection per kind of row; a Lite file (a
pure-Python engine that holds every collection it opens in memory) searches by brute force, splits every kind
of row into shards by clip id and closes and reopens the file to free what a pass over all clips has read.
The verbs live by concern: `writes`, `reads`; what each collection holds in `schemas`; opening in `connection`.
No torch here.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from pymilvus import MilvusClient, MilvusException

from taxonomy_core import schema as S
from taxonomy_core.store.base import READABLE_VERSIONS, STORAGE_VERSION, DatasetLayout, StoreError, StoreLimits
from taxonomy_core.store.codec import RowCodec
from taxonomy_core.store.connection import (  # noqa: F401  (re-exported: where callers found them before)
    DEFAULT_URI,
    LITE_USERS,
    TOKEN_ENV,
    URI_ENV,
    connect,
    default_uri,
    is_server,
    release_lite,
    reopen_lite,
    return_arrow_memory,
)
from taxonomy_core.store.filters import filter_eq, filter_in, quote  # noqa: F401
from taxonomy_core.store.reads import Reads
from taxonomy_core.store.schemas import REGISTRY, clip_schema, part_schema, registry_schema, vector_schema
from taxonomy_core.store.writes import Writes

LITE_LIMITS = StoreLimits()
SERVER_LIMITS = replace(LITE_LIMITS, server_side_neighbours=True, vector_index="AUTOINDEX", shards=1, staged_bytes=0)


def _folder_bytes(path: Path) -> int:
    """What a Lite collection takes on disk: about what it takes in memory once open."""
    return sum(f.stat().st_size for f in path.rglob("*.parquet")) if path.is_dir() else 0


class MilvusStore(Reads, Writes):
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
        self._staged: dict[tuple[str, int], dict[str, list[dict]]] = {}  # (clips collection, shard) -> rows by kind
        self._staged_bytes = 0
        self._dataset_bytes: dict[str, int] = {}  # a dataset's files and rows written since, by clips collection
        self._layouts: dict[str, DatasetLayout] = {}  # as registered, by clips collection
        # A server defaults to Bounded consistency: a row written a moment ago could be missing from a read.
        self._read = {"consistency_level": "Strong"}

    @classmethod
    def open(cls, uri: str | None = None, token: str | None = None) -> MilvusStore:
        uri = uri or default_uri()
        token = token or ""  # open_store decides which token this URI may get (boundary.configured_token)
        return cls(connect(uri, token), uri)

    def release(self) -> None:
        """Give back what earlier reads loaded: on Lite, close and reopen the file (a server pages by itself)."""
        self.flush()
        if self._loaded:
            self._evict()

    def close(self) -> None:
        """Write what is staged, close the client; for a Lite file, give the file back once this process's last
        store closes."""
        try:
            self.flush()
        finally:
            self.client.close()
            release_lite(self.uri)

    # --- the registry -----------------------------------------------------------------------

    def ensure(self, layout: DatasetLayout, clips: int | None = None) -> None:
        """Create the dataset's collections if missing and record its layout; refuse a dim or storage clash.

        `clips`: how many clips the caller is about to write, where it knows (the indexer does). A new dataset of
        at most `limits.one_shard_clips` keeps one collection a kind; a one-collection dataset that these would
        take past it is first spread over `limits.shards` (`_spread`). None: `limits.shards` from the start.
        """
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
        many = self.limits.shards
        if known and clips is not None and known.shards < many:
            if self.count(known) + clips > self.limits.one_shard_clips:
                known = self._spread(known)
        if known:
            storage, shards = known.storage, known.shards  # a dataset stays in the layout it was written in
        else:
            storage, shards = STORAGE_VERSION, 1 if clips is not None and clips <= self.limits.one_shard_clips else many
        layout = replace(layout, storage=storage, shards=shards)
        self._drop_leftovers(layout)
        for which, schema, vector_fields in self._kinds(layout):
            for name in layout.shard_names(which):
                self._create(name, schema, vector_fields)
        self._record(layout)

    def _names_either_way(self, layout: DatasetLayout) -> list[str]:
        """The dataset's collection names in one collection a kind and in `limits.shards`."""
        return list(dict.fromkeys(replace(layout, shards=1).collections() + layout.collections()
                                  + replace(layout, shards=self.limits.shards).collections()))  # fmt: skip

    def _drop_leftovers(self, layout: DatasetLayout) -> None:
        """On Lite (one process at a time): collections under the dataset's names that its layout does not use, left
        by a spread that was killed (`_spread`) or by an older dataset of that name; none is ever read, and a new
        dataset must not find their rows."""
        if is_server(self.uri):
            return
        existing = set(self._call(self.client.list_collections))
        used = set(layout.collections())
        for name in self._names_either_way(layout):
            if name in existing and name not in used:
                self._drop_collection(name)

    def _drop_collection(self, name: str) -> None:
        if self._call(self.client.has_collection, name):
            self._call(self.client.drop_collection, name)
        self._loaded.pop(name, None)

    def _kinds(self, layout: DatasetLayout) -> list[tuple[str, object, list[str]]]:
        """Each kind of row's collections: (kind, schema, vector fields)."""
        searchable = [S.VECTOR] + ([S.TEXT_VECTOR] if layout.text_dim else [])
        return [
            ("clips", clip_schema(layout, self.limits), [S.PLACEHOLDER]),
            ("vectors", vector_schema(layout, self.limits), searchable),
            ("timeline", part_schema(self.limits), [S.PLACEHOLDER]),
            ("crops", part_schema(self.limits), [S.PLACEHOLDER]),
        ]

    def _record(self, layout: DatasetLayout) -> None:
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
        for name in self._names_either_way(known):  # a spread's half (`_spread`) goes too
            self._drop_collection(name)
        if self._call(self.client.has_collection, REGISTRY):
            self._call(self.client.delete, REGISTRY, filter=filter_eq("name", layout.clips))
        self._layouts.pop(layout.clips, None)

    # --- internals --------------------------------------------------------------------------

    def _call(self, fn, *args, **kwargs):
        if self._staged:  # anything else asked of the store sees (and comes after) every write before it
            held = self.client
            self.flush()
            if getattr(fn, "__self__", None) is held and held is not self.client:  # the flush reopened the file
                fn = getattr(self.client, fn.__name__)
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
        size = self._disk_bytes(collection)
        if sum(self._loaded.values()) + size > self.limits.resident_bytes:
            self._evict()
        if not self._call(self.client.has_collection, collection):
            raise StoreError(f"no collection {collection} at {self.uri}; index the dataset first (`indexer index`)")
        self._call(self.client.load_collection, collection)
        self._loaded[collection] = size
        return_arrow_memory(self.uri)

    def _disk_bytes(self, collection: str) -> int:
        """A Lite collection's files (about what it takes in memory once open); 0 on a server."""
        return 0 if is_server(self.uri) else _folder_bytes(Path(self.uri) / "collections" / collection)

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
        if is_server(self.uri) or LITE_USERS[self.uri] != 1:
            return
        self._loaded.clear()
        self.client = reopen_lite(self.client, self.uri)

    def _check_storage(self, layout: DatasetLayout) -> None:
        if layout.storage not in READABLE_VERSIONS:
            raise StoreError(
                f"{layout.dataset} ({layout.model_id}) at {self.uri} is stored in layout {layout.storage}; this "
                f"version reads layouts {', '.join(map(str, READABLE_VERSIONS))} (packed copies, one companion row per "
                "clip, shards).\n"
                f"Fix: re-index it: `indexer drop {layout.dataset} --model {layout.model_id}`, then "
                "`indexer index MANIFEST` again (or index into a new --dataset name)"
            )

    def _ensure_registry(self) -> None:
        if not self._call(self.client.has_collection, REGISTRY):
            self._create(REGISTRY, registry_schema(), ["vector"])

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

    def _by_shard(self, layout: DatasetLayout, items: list, key=lambda item: item) -> dict[int, list]:
        by_shard: dict[int, list] = {}
        for item in items:
            by_shard.setdefault(layout.shard_of(key(item)), []).append(item)
        return by_shard

    def _per_row(self, codec: RowCodec) -> int:
        per_row = (self.limits.max_packed_chars // 4 * 3) // codec.row_bytes
        if per_row < 1:
            raise StoreError(f"one packed part takes {codec.row_bytes} bytes, more than a VARCHAR holds at {self.uri}")
        return per_row
