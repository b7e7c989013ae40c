"""Compact vector rows: int8, 4-bit or 2-bit codes with one float32 scale per vector, packed with their floats
into base64 text.

Milvus Lite returns a FLOAT_VECTOR through Python float lists (~0.6 ms per 1280-d row) and stores it as float32;
a VARCHAR of packed int8 reads back ~10x faster and takes a quarter of the bytes. Per-vector symmetric int8
(Milvus's own SQ8 idea) moves a cosine between unit vectors by about 1e-3: far below any threshold a check uses.
Fewer bits (companions, which checks only compare with class prototypes, queries and each other) first turn the
vector by a fixed random rotation, so every coordinate is near-Gaussian whatever the model, then code each
coordinate on the Lloyd-Max levels of a unit Gaussian scaled by the vector's RMS: a cosine with a fixed unit
vector moves by about sqrt(mse / d): 0.003 at 4 bits, 0.01 at 2 bits for d = 1280.
No database client here: the store decides what goes where, this module only turns arrays into text and back.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass

import numpy as np

# Lloyd-Max reconstruction levels of a unit Gaussian (Max, 1960), by bits per coordinate.
_HALF_LEVELS = {
    2: [0.4528, 1.5104],
    4: [0.1284, 0.3881, 0.6568, 0.9424, 1.2562, 1.6181, 2.0690, 2.7326],
}
LEVELS = {bits: np.array([-v for v in half[::-1]] + half, dtype=np.float32) for bits, half in _HALF_LEVELS.items()}
# Their mean squared error on a unit Gaussian: a decoded vector is divided by 1 - MSE, so that its dot product with
# any fixed vector is an unbiased estimate (Lloyd-Max levels shrink towards 0; renormalising would not undo it).
MSE = {2: 0.1175, 4: 0.009497}
GRID = 256  # steps per standard deviation of the look-up table that finds a coordinate's level (over +-4)
ROTATION_BLOCK = 128  # two rounds of a permutation and block-diagonal orthogonal blocks: O(d * 256) per vector


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
    """One packed row: `floats` float32 values (times, boxes), then one coded vector per width, each with its scale.

    The row's bytes are [floats][scales][codes of width 0][codes of width 1]...; a batch of rows with the same
    shape decodes in one `np.frombuffer` over the joined bytes. `bits` 8: symmetric int8, scale = max / 127;
    4 or 2: rotated, Gaussian levels, scale = RMS (see the module's docstring).
    """

    widths: tuple[int, ...]  # vector widths, e.g. (visual dim, text dim)
    floats: int = 0  # leading float32 values per row
    bits: int = 8

    def __post_init__(self):
        if self.bits not in (8, *LEVELS):
            raise ValueError(f"a RowCodec codes 8, 4 or 2 bits a coordinate, not {self.bits}")

    @property
    def code_bytes(self) -> tuple[int, ...]:
        if self.bits == 8:
            return self.widths
        return tuple(-(-width // ROTATION_BLOCK) * ROTATION_BLOCK * self.bits // 8 for width in self.widths)

    @property
    def row_bytes(self) -> int:
        return 4 * (self.floats + len(self.widths)) + sum(self.code_bytes)

    def pack(self, vectors: list[np.ndarray], floats: np.ndarray | None = None) -> np.ndarray:
        """[n, row_bytes] uint8 from the arrays (each [n, width]; floats [n, self.floats])."""
        n = len(vectors[0])
        coded = [self._encode(np.asarray(v, dtype=np.float32)) for v in vectors]
        head = [np.asarray(floats, dtype=np.float32).reshape(n, self.floats)] if self.floats else []
        head.append(np.stack([scale for _, scale in coded], axis=1))
        parts = [np.ascontiguousarray(h).view(np.uint8) for h in head] + [c for c, _ in coded]
        return np.concatenate(parts, axis=1)

    def unpack(self, raw: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """The float32 vectors (one [n, width] array per width) and the leading floats [n, self.floats]."""
        raw = raw.reshape(-1, self.row_bytes)
        floats = raw[:, : 4 * self.floats].copy().view(np.float32)
        at = 4 * self.floats
        scales = raw[:, at : at + 4 * len(self.widths)].copy().view(np.float32)
        at += 4 * len(self.widths)
        vectors = []
        for k, (width, size) in enumerate(zip(self.widths, self.code_bytes)):
            vectors.append(self._decode(raw[:, at : at + size], scales[:, k], width))
            at += size
        return vectors, floats

    def _encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[n, code bytes] uint8 and the scale of each row."""
        if self.bits == 8:
            codes, scale = quantize(x)
            return codes.view(np.uint8), scale
        z = rotate(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))  # decodes near unit length
        scale = np.sqrt(np.sum(z * z, axis=1) / x.shape[1]).astype(np.float32)
        grid = (z * (GRID / np.where(scale > 0, scale, 1.0))[:, None] + 4 * GRID).astype(np.int32)
        codes = _code_table(self.bits)[np.clip(grid, 0, 8 * GRID - 1)]  # a table look-up: 10x searchsorted
        return _pack_bits(codes, self.bits), scale

    def _decode(self, codes: np.ndarray, scale: np.ndarray, width: int) -> np.ndarray:
        if self.bits == 8:
            return dequantize(codes.view(np.int8), scale)
        padded = -(-width // ROTATION_BLOCK) * ROTATION_BLOCK
        z = _byte_levels(self.bits)[codes].reshape(len(codes), -1)[:, :padded]  # one look-up a byte, not a code
        z *= (scale / (1 - MSE[self.bits]))[:, None]
        return unrotate(z, width)

    def rows_in(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """The packed rows of several texts joined ([total, row_bytes] uint8) and how many rows each text held."""
        blobs = [base64.b64decode(t) for t in texts]
        counts = [len(b) // self.row_bytes for b in blobs]
        if any(len(b) != c * self.row_bytes for b, c in zip(blobs, counts)):
            raise ValueError(f"a packed text does not hold whole rows of {self.row_bytes} bytes")
        return np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(-1, self.row_bytes), counts


@functools.lru_cache(maxsize=4)
def _code_table(bits: int) -> np.ndarray:
    """The nearest level's code for each step of 1/GRID over [-4, 4) (off by a level only within 1/GRID of a
    midpoint, where both levels are equally near)."""
    levels = LEVELS[bits]
    centres = (np.arange(8 * GRID) + 0.5) / GRID - 4
    return np.searchsorted((levels[1:] + levels[:-1]) / 2, centres).astype(np.uint8)


def _pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """[n, width] codes below 2**bits as [n, ceil(width * bits / 8)] bytes, the first code in the low bits."""
    per = 8 // bits
    n, width = codes.shape
    padded = np.zeros((n, -(-width // per) * per), np.uint8)
    padded[:, :width] = codes
    grouped = padded.reshape(n, -1, per)
    return np.bitwise_or.reduce(grouped << (bits * np.arange(per, dtype=np.uint8)), axis=2).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _byte_levels(bits: int) -> np.ndarray:
    """[256, 8 / bits] float32: the levels the codes of a packed byte stand for, low bits first (as packed)."""
    per = 8 // bits
    codes = (np.arange(256)[:, None] >> (bits * np.arange(per))) & ((1 << bits) - 1)
    return LEVELS[bits][codes].astype(np.float32)


@functools.lru_cache(maxsize=8)
def _rotation(width: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two rounds of a fixed permutation and random orthogonal blocks [width / ROTATION_BLOCK, block, block]:
    after two rounds every output coordinate mixes every input one (one round mixes 128 of them, which leaves a
    model's few dominant coordinates dominant). Seeded by the width alone: a row decodes anywhere."""
    rng = np.random.default_rng(width)
    padded = -(-width // ROTATION_BLOCK) * ROTATION_BLOCK
    rounds = []
    for _ in range(2):
        q, r = np.linalg.qr(rng.normal(size=(padded // ROTATION_BLOCK, ROTATION_BLOCK, ROTATION_BLOCK)))
        blocks = (q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]).astype(np.float32)
        rounds.append((rng.permutation(padded), blocks))
    return rounds


def _turn(x: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Each block of ROTATION_BLOCK coordinates times its matrix: one product a block, read and written in place
    in the rows (BLAS takes the row stride; a batched product over transposed blocks copied the data twice)."""
    out = np.empty((len(x), len(blocks) * ROTATION_BLOCK), np.float32)
    for b, block in enumerate(blocks):
        cols = slice(b * ROTATION_BLOCK, (b + 1) * ROTATION_BLOCK)
        np.matmul(x[:, cols], block, out=out[:, cols])
    return out


def rotate(x: np.ndarray) -> np.ndarray:
    """[n, width] turned by the width's rotation: [n, width rounded up to the block] (zeros pad the last block)."""
    rounds = _rotation(x.shape[1])
    z = np.zeros((len(x), len(rounds[0][0])), np.float32)
    z[:, : x.shape[1]] = x
    with one_blas_thread():
        for permutation, blocks in rounds:
            z = _turn(np.take(z, permutation, axis=1), blocks)
    return z


def unrotate(z: np.ndarray, width: int) -> np.ndarray:
    with one_blas_thread():
        for permutation, blocks in reversed(_rotation(width)):
            z = np.take(_turn(z, blocks.transpose(0, 2, 1)), np.argsort(permutation), axis=1)
    return z[:, :width]


def one_blas_thread():
    """Small batched products run 4-7x faster on one BLAS thread than on two when other work shares the cores
    (measured on the project's 2-core machine under a load of 3); they are too small to gain from threads."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


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
    for size, quality in ((128, 75), (112, 70), (96, 65), (96, 50), (80, 55), (64, 60), (48, 55), (32, 50)):
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        text = base64.b64encode(buffer.getvalue()).decode("ascii")
        if len(text) <= max_chars:
            return text
    return ""  # not even 32 px fits: better no thumbnail than a failed write
