"""What each collection holds: the Milvus schemas of the four kinds of rows and the registry, and the codecs
that pack a clip's vectors and its companions into them."""

from __future__ import annotations

import math

from pymilvus import DataType, MilvusClient

from taxonomy_core import schema as S
from taxonomy_core.store.base import DatasetLayout, StoreLimits
from taxonomy_core.store.codec import RowCodec

REGISTRY = "ta_registry"
WHERE = {"timeline": S.TIME, "crops": S.BOX}  # what places a companion: a step's time, a crop's box
PLACEHOLDER = [1.0, 0.0]  # the value of a vector field Milvus needs and nothing searches


def clip_codec(layout: DatasetLayout) -> RowCodec:
    """A clip's packed copy: its visual vector, then its text-space vector where the layout has one."""
    return RowCodec((layout.dim, layout.text_dim) if layout.text_dim else (layout.dim,))


# Bits a coordinate of a companion takes, by storage version (2: int8). Checks only compare companions with class
# prototypes, label queries and each other: 4 bits move such a cosine by ~0.003 and 2 bits by ~0.01 (codec.py),
# against thresholds of 0.08 (a crop's gain) and 0.15 (a step's drop). Crops are ten a clip, so they take 2.
COMPANION_BITS = {2: {"timeline": 8, "crops": 8}, 3: {"timeline": 4, "crops": 2}}
FEW_BITS_MIN = 256  # narrower vectors keep int8: the error of a cosine grows as 1 / sqrt(width)


def part_codec(layout: DatasetLayout, which: str) -> RowCodec:
    """A timeline step: its time, visual and text vectors. A crop: its box and visual vector only (no check
    reads a crop's text vector, and there are ten crops a clip: they would be the largest part of the store)."""
    if which not in WHERE:
        raise ValueError(f"unknown companion {which!r}; known: timeline, crops")
    narrowest = min(layout.dim, layout.text_dim or layout.dim)
    bits = COMPANION_BITS[layout.storage][which] if narrowest >= FEW_BITS_MIN else 8
    if which == "timeline":
        return RowCodec((layout.dim, layout.text_dim) if layout.text_dim else (layout.dim,), floats=1, bits=bits)
    return RowCodec((layout.dim,), floats=4, bits=bits)


def registry_schema():
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("name", DataType.VARCHAR, max_length=512, is_primary=True)
    schema.add_field("dataset", DataType.VARCHAR, max_length=512)
    schema.add_field("model_id", DataType.VARCHAR, max_length=1024)
    schema.add_field("layout", DataType.JSON)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one vector field
    return schema


def clip_schema(layout: DatasetLayout, lim: StoreLimits):
    """Scalars, the fingerprint, the thumbnail and the packed copy read back in bulk."""
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
    schema.add_field(S.PACKED, DataType.VARCHAR, max_length=packed_chars)
    schema.add_field(S.PLACEHOLDER, DataType.FLOAT_VECTOR, dim=2)  # never searched: Milvus needs one
    return schema


def vector_schema(layout: DatasetLayout, lim: StoreLimits):
    """What Milvus searches: the float32 vectors, and the label a search may be filtered by."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(S.CLIP_ID, DataType.VARCHAR, max_length=64, is_primary=True)
    schema.add_field(S.LABEL, DataType.VARCHAR, max_length=lim.max_label_chars)
    schema.add_field(S.VECTOR, DataType.FLOAT_VECTOR, dim=layout.dim)
    if layout.text_dim:
        schema.add_field(S.TEXT_VECTOR, DataType.FLOAT_VECTOR, dim=layout.text_dim)
    return schema


def part_schema(lim: StoreLimits):
    """One row per clip (or per chunk of a long timeline): its companions packed."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(S.PART_ID, DataType.VARCHAR, max_length=80, is_primary=True)
    schema.add_field(S.CLIP_ID, DataType.VARCHAR, max_length=64)
    schema.add_field(S.INDEX, DataType.INT64)
    schema.add_field(S.PARTS, DataType.INT64)
    schema.add_field(S.PACKED, DataType.VARCHAR, max_length=lim.max_packed_chars)
    schema.add_field(S.PLACEHOLDER, DataType.FLOAT_VECTOR, dim=2)  # never searched: Milvus needs one
    return schema
