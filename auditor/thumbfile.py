"""Every clip's thumbnail (JPEG bytes) beside report.json, so the app shows thumbnails without opening the store.

On a Milvus Lite file each thumbnail read opens the file and loads the clip shards it touches: at 3 x 10^5 clips a
page's first load spent 4-16 s there (docs/benchmarks.md). The audit copies them once, shard by shard (one shard's
thumbnails in memory, ~40 MB at 3 x 10^5), into one file: a header, an index of (offset, length) per clip in the
clip table's order, then the JPEG bytes. The app memory-maps it: a thumbnail is two slices of the page cache.

An index entry of (-1, -1) is a clip the store did not return (the app asks the store for it); a length of 0 is a
clip the store holds no thumbnail for.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from auditor.cliptable import RUN_ID, ClipTableError
from taxonomy_core.atomic import atomic_target

log = logging.getLogger(__name__)

MAGIC = b"TAXTHUMB1\n"
HEADER = 128  # magic, clip count (uint64), run id (ASCII, NUL-padded)
RUN_BYTES = HEADER - len(MAGIC) - 8
MISSING = -1


def thumbs_name(run_id: str) -> str:
    if not RUN_ID.match(str(run_id)):
        raise ClipTableError(f"run id {run_id!r} cannot name a file")
    return f"thumbs.{run_id}.bin"


def _header(run_id: str, n: int) -> bytes:
    return MAGIC + np.uint64(n).tobytes() + run_id.encode("ascii").ljust(RUN_BYTES, b"\0")


def write_thumbnails(store, layout, folder: Path, run_id: str, clip_ids: Sequence[str]) -> Path:
    """Read the clips' thumbnails shard by shard (a bulk read the store holds one shard of at a time) and stream
    them to the file; the index (16 bytes a clip) is the only thing held for all clips."""
    path = Path(folder) / thumbs_name(run_id)
    n = len(clip_ids)
    index = np.full((n, 2), MISSING, np.int64)
    by_shard: dict[int, list[int]] = {}
    for i, clip_id in enumerate(clip_ids):
        by_shard.setdefault(layout.shard_of(clip_id), []).append(i)
    with atomic_target(path) as tmp, open(tmp, "wb") as handle:
        handle.write(_header(run_id, n))
        handle.write(index.tobytes())  # a placeholder, rewritten once every offset is known
        offset = HEADER + index.nbytes
        for shard in sorted(by_shard):
            positions = by_shard.pop(shard)
            found = store.thumbnails(layout, [clip_ids[i] for i in positions])
            for i in positions:
                b64 = found.get(clip_ids[i])
                if b64 is None:
                    continue
                jpeg = _decoded(b64, clip_ids[i])
                handle.write(jpeg)
                index[i] = offset, len(jpeg)
                offset += len(jpeg)
            del found
        handle.seek(HEADER)
        handle.write(index.tobytes())
        handle.flush()
        os.fsync(handle.fileno())
    return path


def _decoded(b64: str, clip_id: str) -> bytes:
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        log.warning("the stored thumbnail of %s is not base64; the app shows none", clip_id)
        return b""


class ThumbnailFile:
    """An audit's thumbnails, by position in its clip table; memory-mapped, never read whole."""

    def __init__(self, path: Path, run_id: str, n: int):
        path = Path(path)
        try:
            data = np.memmap(path, np.uint8, mode="r")
        except (OSError, ValueError) as e:
            raise ClipTableError(f"{path} cannot be read ({e}): re-run `auditor audit`") from e
        if len(data) < HEADER + 16 * n or bytes(data[: len(MAGIC)]) != MAGIC:
            raise ClipTableError(f"{path} is not an audit's thumbnail file: re-run `auditor audit`")
        count = int(np.frombuffer(data[len(MAGIC) : len(MAGIC) + 8], np.uint64)[0])
        run = bytes(data[len(MAGIC) + 8 : HEADER]).rstrip(b"\0").decode("ascii", "replace")
        if count != n or run != run_id:
            raise ClipTableError(
                f"{path} holds {count} thumbnails of run {run!r}, the audit {n} clips of run {run_id!r}: its files "
                "were mixed; re-run `auditor audit`"
            )
        self.path, self.data = path, data
        self.index = np.ndarray((n, 2), np.int64, buffer=data, offset=HEADER)

    def get(self, positions: Sequence[int]) -> dict[int, bytes | None]:
        """JPEG bytes per position (None: the store holds no thumbnail); positions the file lacks are left out."""
        out: dict[int, bytes | None] = {}
        for p in positions:
            start, length = (int(v) for v in self.index[p])
            if start < HEADER or length < 0 or start + length > len(self.data):
                continue  # not in the file (or a damaged entry): the caller asks the store
            out[p] = bytes(self.data[start : start + length]) or None
        return out
