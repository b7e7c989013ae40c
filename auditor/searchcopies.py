"""The audit's clip vectors on 8 bits, beside report.json, memory-mapped by the app's Search page.

Milvus Lite searches by brute force inside the process that opens the file: at 3 x 10^5 clips one query loads
~1.6 GB of vector shards and takes 18-34 s (docs/benchmarks.md). The audit already holds every clip's unit vector;
it writes them once as int8 with a scale a row (1,672 bytes a clip at 1280 + 384 dimensions), and the app scans
them from the page cache in blocks (~0.5 s at 3 x 10^5 on 2 cores), no store and no context needed. Cosines are
within ~0.002 of the audit's own vectors; where the store answers cheaply the app re-scores the best candidates
with the store's float32 vectors (`auditor.service.search_class`), so small audits rank exactly as the store does.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from auditor.cliptable import RUN_ID, ClipTableError
from auditor.knn import blocked_top_k
from taxonomy_core.atomic import atomic_target
from taxonomy_core.store import Hits
from taxonomy_core.store.codec import dequantize, one_blas_thread, quantize

BLOCK = 16_384  # rows decoded to float32 at a time (~80 MB at 1280 dimensions)
CHUNK = 1024  # rows decoded and multiplied at once, in cache (a product with a few queries is bound by memory)
SCANNERS = 2  # threads scanning blocks
WRITE_BLOCK = 4096


def copies_name(run_id: str) -> str:
    if not RUN_ID.match(str(run_id)):
        raise ClipTableError(f"run id {run_id!r} cannot name a file")
    return f"vectors.{run_id}.npy"


def _dtype(dim: int, text_dim: int | None) -> np.dtype:
    fields = [("scale", "<f4"), ("vector", "i1", (dim,))]
    if text_dim:
        fields += [("text_scale", "<f4"), ("text_vector", "i1", (text_dim,))]
    return np.dtype(fields)


def write_copies(folder: Path, run_id: str, vectors: np.ndarray, text_vectors: np.ndarray | None = None) -> Path:
    """One structured .npy (scale, vector[, text_scale, text_vector] a row), in the context's order; written whole,
    a block at a time through a plain file (a memory-mapped output would count every written page as resident)."""
    path = Path(folder) / copies_name(run_id)
    n, dim = vectors.shape
    text_dim = text_vectors.shape[1] if text_vectors is not None else None
    dtype = _dtype(dim, text_dim)
    with atomic_target(path) as tmp, open(tmp, "wb") as handle:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n,)}
        np.lib.format.write_array_header_1_0(handle, header)
        for start in range(0, n, WRITE_BLOCK):
            part = slice(start, start + WRITE_BLOCK)
            rows = np.empty(len(vectors[part]), dtype)
            rows["vector"], rows["scale"] = quantize(np.asarray(vectors[part], np.float32))
            if text_vectors is not None:
                rows["text_vector"], rows["text_scale"] = quantize(np.asarray(text_vectors[part], np.float32))
            handle.write(rows.tobytes())
        handle.flush()
        os.fsync(handle.fileno())
    return path


class SearchCopies:
    """The 8-bit copies of an audit's clips, searched by brute force; `clip_ids` in the file's order."""

    def __init__(self, path: Path, clip_ids: Sequence[str]):
        try:
            self.data = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ClipTableError(f"{path} cannot be read ({e}): re-run `auditor audit`") from e
        names = self.data.dtype.names or ()
        if "vector" not in names or "scale" not in names or self.data.ndim != 1:
            raise ClipTableError(f"{path} is not an audit's search copies: re-run `auditor audit`")
        if len(self.data) != len(clip_ids):
            raise ClipTableError(
                f"{path} holds {len(self.data)} clips, the audit {len(clip_ids)}: its files were mixed; re-run "
                "`auditor audit`"
            )
        self.path, self.ids = Path(path), np.asarray(clip_ids, dtype=object)
        self.has_text = "text_vector" in names

    def positions_of(self, clip_ids: Sequence[str]) -> list[int]:
        """Where these clips are in the file (each must be there): one vectorised pass over the ids, not a dict of
        every id (0.3 s at 10^6 clips, on the Search page's first load)."""
        unique = list(dict.fromkeys(clip_ids))
        found = pc.index_in(self._arrow_ids, value_set=pa.array(unique, pa.string()))
        rows = np.flatnonzero(found.is_valid().to_numpy(zero_copy_only=False))
        slots = found.take(pa.array(rows)).to_numpy(zero_copy_only=False) if len(rows) else []
        at = {unique[int(k)]: int(r) for k, r in zip(slots, rows)}
        missing = [c for c in unique if c not in at]
        if missing:
            raise KeyError(f"{len(missing)} clip(s) not in the search copies, e.g. {missing[0]}")
        return [at[c] for c in clip_ids]

    @cached_property
    def _arrow_ids(self) -> pa.Array:
        return pa.array(self.ids, pa.string())

    def _space(self, text: bool) -> tuple[np.ndarray, np.ndarray]:
        if text and self.has_text:
            return self.data["text_vector"], self.data["text_scale"]
        return self.data["vector"], self.data["scale"]

    def vectors(self, positions: Sequence[int], text: bool = False) -> np.ndarray:
        """Decoded vectors (float32) of some clips."""
        codes, scale = self._space(text)
        idx = np.asarray(positions, dtype=np.int64)
        return dequantize(codes[idx], scale[idx])

    def search(self, queries: np.ndarray, k: int, *, text: bool = False) -> list[Hits]:
        """The k clips with the highest dot product per query (cosines: the copies are of unit vectors).

        Blocks are scored in SCANNERS threads (numpy's cast and BLAS release the GIL) on one BLAS thread each,
        CHUNK rows at a time decoded into a buffer each thread keeps (in cache; the product is rows x queries).
        At 10^6 clips x 1280 dimensions and 17 queries: 1.3-1.8 s before, 0.6 s (2 cores, idle)."""
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        codes, scale = self._space(text)
        buffers = threading.local()

        def score(start: int, stop: int) -> np.ndarray:
            if not hasattr(buffers, "rows"):
                buffers.rows = np.empty((CHUNK, codes.shape[1]), np.float32)
            out = np.empty((stop - start, len(queries)), np.float32)  # rows x queries: BLAS's faster shape
            for at in range(start, stop, CHUNK):
                end = min(at + CHUNK, stop)
                rows = buffers.rows[: end - at]
                rows[:] = codes[at:end]
                np.matmul(rows, queries.T, out=out[at - start : end - start])
            return out.T * scale[start:stop]

        with one_blas_thread():  # the scanners are the threads: BLAS threads inside each oversubscribe 2 cores
            where, top = blocked_top_k(score, len(codes), len(queries), k, BLOCK, SCANNERS)
        return [[(self.ids[j], float(s)) for j, s in zip(w, sc)] for w, sc in zip(where, top)]
