"""Compact vector rows: int8 codes with one float32 scale per vector, packed with their floats into base64 text.

Milvus Lite returns a FLOAT_VECTOR through Python float lists (~0.6 ms per 1280-d row) and stores it as float32;
a VARCHAR of packed int8 reads back ~10x faster and takes a quarter of the bytes. Per-vector symmetric int8
(Milvus's own SQ8 idea) moves a cosine between unit vectors by about 1e-3: far below any threshold a check uses.
No database client here: the store decides what goes where, this module only turns arrays into text and back.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np


def quantize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 codes and the float32 scale of each row (a zero row keeps scale 0)."""
    x = np.asarray(x, dtype=np.float32)
    scale = np.abs(x).max(axis=-1) / 127.0
    codes = np.rint(x / np.where(scale > 0, scale, 1.0)[..., None])
    return np.clip(codes, -127, 127).astype(np.int8), scale.astype(np.float32)


def dequantize(codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return codes.astype(np.float32) * scale[..., None]


@dataclass(frozen=True)
class RowCodec:
    """One packed row: `floats` float32 values (times, boxes), then one int8 vector per width, each with its scale.

    The row's bytes are [floats][scales][codes of width 0][codes of width 1]...; a batch of rows with the same
    shape decodes in one `np.frombuffer` over the joined bytes.
    """

    widths: tuple[int, ...]  # vector widths, e.g. (visual dim, text dim)
    floats: int = 0  # leading float32 values per row

    @property
    def row_bytes(self) -> int:
        return 4 * (self.floats + len(self.widths)) + sum(self.widths)

    def pack(self, vectors: list[np.ndarray], floats: np.ndarray | None = None) -> np.ndarray:
        """[n, row_bytes] uint8 from the arrays (each [n, width]; floats [n, self.floats])."""
        n = len(vectors[0])
        quantized = [quantize(v) for v in vectors]
        head = [np.asarray(floats, dtype=np.float32).reshape(n, self.floats)] if self.floats else []
        head.append(np.stack([scale for _, scale in quantized], axis=1))
        parts = [np.ascontiguousarray(h).view(np.uint8) for h in head] + [c.view(np.uint8) for c, _ in quantized]
        return np.concatenate(parts, axis=1)

    def unpack(self, raw: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """The float32 vectors (one [n, width] array per width) and the leading floats [n, self.floats]."""
        raw = raw.reshape(-1, self.row_bytes)
        floats = raw[:, : 4 * self.floats].copy().view(np.float32)
        at = 4 * self.floats
        scales = raw[:, at : at + 4 * len(self.widths)].copy().view(np.float32)
        at += 4 * len(self.widths)
        vectors = []
        for k, width in enumerate(self.widths):
            vectors.append(dequantize(raw[:, at : at + width].view(np.int8), scales[:, k]))
            at += width
        return vectors, floats

    def rows_in(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """The packed rows of several texts joined ([total, row_bytes] uint8) and how many rows each text held."""
        blobs = [base64.b64decode(t) for t in texts]
        counts = [len(b) // self.row_bytes for b in blobs]
        if any(len(b) != c * self.row_bytes for b, c in zip(blobs, counts)):
            raise ValueError(f"a packed text does not hold whole rows of {self.row_bytes} bytes")
        return np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(-1, self.row_bytes), counts


def to_text(raw: np.ndarray) -> str:
    """Rows of packed bytes as one base64 text (what a VARCHAR holds)."""
    return base64.b64encode(np.ascontiguousarray(raw).tobytes()).decode("ascii")


def fit_thumbnail(b64: str, max_chars: int) -> str:
    """A base64 JPEG of at most `max_chars`: smaller ones pass as they are, larger ones are re-encoded smaller."""
    if len(b64) <= max_chars:
        return b64
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")
    for size, quality in ((128, 75), (112, 70), (96, 65), (64, 60), (32, 50)):
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        text = base64.b64encode(buffer.getvalue()).decode("ascii")
        if len(text) <= max_chars:
            return text
    return ""  # not even 32 px fits: better no thumbnail than a failed write
