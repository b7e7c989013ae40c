"""VectorStore: the dataset's collections in Milvus (a Lite file or a server), behind one small API.

No torch here: the app opens the store without loading a model.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from pymilvus import DataType, MilvusClient, MilvusException

from taxonomy_core import schema as S

log = logging.getLogger(__name__)

DEFAULT_URI = "./auditor.db"
URI_ENV = "AUDITOR_MILVUS_URI"
TOKEN_ENV = "AUDITOR_MILVUS_TOKEN"
REGISTRY = "ta_registry"
WRITE_BATCH = 256
READ_BATCH = 1000


class StoreError(RuntimeError):
    """Milvus could not be reached or used; the message names the URI and what to do."""


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


@dataclass(frozen=True)
class DatasetLayout:
    """What a (dataset, model) pair stores and how it was made; kept in the registry collection."""

    dataset: str
    model_id: str
    dim: int
    text_dim: int | None = None  # a separate text-aligned vector (ConSE); None when absent
    text_space: str | None = None  # "visual", "semantic" or None (no text search)
    sampling: dict[str, Any] = field(default_factory=dict)
    manifest: str = ""
    manifest_format: str = ""

    @property
    def clips(self) -> str:
        return S.collection_name(self.dataset, self.model_id, "clips")

    @property
    def timeline(self) -> str:
        return S.collection_name(self.dataset, self.model_id, "timeline")

    @property
    def crops(self) -> str:
        return S.collection_name(self.dataset, self.model_id, "crops")


class VectorStore:
    """Wraps an injected MilvusClient; `VectorStore.open(uri)` builds one with readable errors."""

    def __init__(self, client: MilvusClient, uri: str):
        self.client, self.uri = client, uri
        self._loaded: set[str] = set()

    @classmethod
    def open(cls, uri: str | None = None, token: str | None = None) -> VectorStore:
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

    # --- layout -----------------------------------------------------------------------------

    def ensure(self, layout: DatasetLayout) -> None:
        """Create the dataset's collections if missing and record its layout; refuse a dim clash."""
        self._ensure_registry()
        known = self.layout(layout.dataset, layout.model_id)
        if known and (known.dim, known.text_dim) != (layout.dim, layout.text_dim):
            raise StoreError(
                f"{layout.clips} at {self.uri} holds {known.dim}-d vectors but {layout.model_id} makes {layout.dim}-d; "
                f"use another --dataset name or drop it with `indexer drop`"
            )
        self._create(layout.clips, self._clip_schema(layout), layout)
        self._create(layout.timeline, self._part_schema(layout, S.TIME, DataType.DOUBLE), layout)
        self._create(layout.crops, self._part_schema(layout, S.BOX, DataType.JSON), layout)
        record = {
            "name": layout.clips,
            "dataset": layout.dataset,
            "model_id": layout.model_id,
            "layout": asdict(layout),
            "vector": [0.0, 0.0],
        }
        self._call(self.client.upsert, REGISTRY, [record])

    def layout(self, dataset: str, model_id: str | None = None) -> DatasetLayout | None:
        layouts = [l for l in self.layouts() if l.dataset == dataset and (model_id is None or l.model_id == model_id)]
        return layouts[-1] if layouts else None

    def layouts(self) -> list[DatasetLayout]:
        if not self._call(self.client.has_collection, REGISTRY):
            return []
        self._load(REGISTRY)
        rows = self._call(self.client.query, REGISTRY, filter="", output_fields=["layout"], limit=16384)
        return sorted((DatasetLayout(**r["layout"]) for r in rows), key=lambda l: (l.dataset, l.model_id))

    def drop(self, layout: DatasetLayout) -> None:
        for name in (layout.clips, layout.timeline, layout.crops):
            if self._call(self.client.has_collection, name):
                self._call(self.client.drop_collection, name)
        if self._call(self.client.has_collection, REGISTRY):
            self._call(self.client.delete, REGISTRY, filter=filter_eq("name", layout.clips))

    # --- writes -----------------------------------------------------------------------------

    def upsert(self, collection: str, rows: list[dict[str, Any]]) -> None:
        for i in range(0, len(rows), WRITE_BATCH):
            self._call(self.client.upsert, collection, rows[i : i + WRITE_BATCH])

    def update_fields(self, collection: str, rows: list[dict[str, Any]]) -> None:
        """Change scalar fields of existing rows without touching their vectors."""
        for i in range(0, len(rows), WRITE_BATCH):
            self._call(self.client.upsert, collection, rows[i : i + WRITE_BATCH], partial_update=True)

    def delete(self, collection: str, clip_ids: list[str]) -> None:
        for i in range(0, len(clip_ids), READ_BATCH):
            self._call(self.client.delete, collection, filter=filter_in(S.CLIP_ID, clip_ids[i : i + READ_BATCH]))

    # --- reads ------------------------------------------------------------------------------

    def iterate(self, collection: str, fields: list[str], expr: str = "") -> Iterator[dict[str, Any]]:
        """Every row (or those matching `expr`), in pages, without loading a whole collection at once."""
        self._load(collection)
        iterator = self._call(
            self.client.query_iterator, collection, batch_size=READ_BATCH, filter=expr, output_fields=fields
        )
        try:
            while page := self._call(iterator.next):
                yield from page
        finally:
            iterator.close()

    def get(self, collection: str, clip_ids: list[str], fields: list[str]) -> list[dict[str, Any]]:
        self._load(collection)
        out: list[dict[str, Any]] = []
        for i in range(0, len(clip_ids), READ_BATCH):
            out += self._call(
                self.client.query,
                collection,
                filter=filter_in(S.CLIP_ID, clip_ids[i : i + READ_BATCH]),
                output_fields=fields,
            )
        return out

    def count(self, collection: str) -> int:
        self._load(collection)
        return int(self._call(self.client.query, collection, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def search(
        self,
        collection: str,
        vectors: list[list[float]],
        field_name: str,
        limit: int,
        expr: str = "",
        fields: list[str] | None = None,
    ) -> list[list[dict[str, Any]]]:
        self._load(collection)
        return self._call(
            self.client.search,
            collection,
            data=vectors,
            anns_field=field_name,
            limit=limit,
            filter=expr,
            output_fields=fields or [],
        )

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
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(S.CLIP_ID, DataType.VARCHAR, max_length=64, is_primary=True)
        schema.add_field(S.ROW, DataType.INT64)
        schema.add_field(S.VIDEO, DataType.VARCHAR, max_length=4096)
        schema.add_field(S.START, DataType.DOUBLE)
        schema.add_field(S.END, DataType.DOUBLE)
        schema.add_field(S.LABEL, DataType.VARCHAR, max_length=1024)
        schema.add_field(S.SPLIT, DataType.VARCHAR, max_length=256)
        schema.add_field(S.MODEL_ID, DataType.VARCHAR, max_length=1024)
        schema.add_field(S.DURATION, DataType.DOUBLE)
        schema.add_field(S.FPS, DataType.DOUBLE)
        schema.add_field(S.WIDTH, DataType.INT64)
        schema.add_field(S.HEIGHT, DataType.INT64)
        schema.add_field(S.CODEC, DataType.VARCHAR, max_length=64)
        schema.add_field(S.BRIGHTNESS, DataType.DOUBLE)
        schema.add_field(S.EXTRA, DataType.JSON)
        schema.add_field(S.THUMBNAIL, DataType.VARCHAR, max_length=65535)
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
        fix = "another process (the app, or a running job) holds this Milvus Lite file; stop it, or use a Milvus server (docker-compose.yml)"
    elif is_server(uri):
        fix = "start the server (`docker compose up -d` with this repo's docker-compose.yml) or check --uri / --token"
    else:
        fix = "check that the folder exists and is writable, or point --uri / AUDITOR_MILVUS_URI elsewhere"
    return f"cannot open Milvus at {uri}: {text}\nFix: {fix}"
