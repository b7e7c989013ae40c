"""Perceptual fingerprints of clips: which clips show the same footage, whatever the encoding.

Each sampled frame is hashed whole (black letterbox/pillarbox bars trimmed first) with a 64-bit
DCT perceptual hash (`imagehash.phash`: the signs of the 8x8 lowest DCT frequencies of a 32x32
grey copy against their median). Low frequencies survive heavy compression, resizing, small
crops and affine brightness/contrast changes. A clip's fingerprint is the hashes of the frames the
indexer already sampled for it (clip frames, timeline steps, middle frame), in time order, as hex.

Two clips match when most frames of one have a near-identical frame in the other, in any order
(vPDQ-style): that survives sub-clips (a segment inside a longer one) and frame-rate changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image

PREFIX = "p1:"  # format tag: phash-64 per frame, 16 hex digits each; a new scheme gets a new tag
HEX_PER_HASH = 16
NO_HASH = 0  # stored for frames without content (black, flat): they never match anything
MAX_HASHES = 120  # 3 + 120 * 16 = 1923 characters: fits a 2 KB Milvus VARCHAR with room to spare

BAR_MEAN = 20  # an edge row/column darker than this on average (0-255 grey) ...
BAR_STD = 4.0  # ... and this uniform is a black bar candidate
MAX_BAR_SHARE = 0.4  # never trim more than this share of a side per edge
WORK_SIZE = 128  # frames are box-reduced to about this short side before trimming and hashing
FLAT_STD = 3.0  # grey std under which a (trimmed) frame is flat: its hash would be noise

FRAME_DISTANCE = 12  # Hamming bits (of 64) within which two frame hashes show the same picture
CLIP_MATCH = 0.5  # share of a clip's frames matched in the other from which the clips are copies
CLIP_MATCH_WITH_COSINE = 0.25  # a lower share suffices when the embeddings agree too (cosine >= COSINE_MATCH)
MIN_FRAMES = 3  # a clip with fewer hashable frames than this cannot reach a full score
COSINE_MATCH = 0.95  # the duplicates check's embedding threshold (AuditConfig.duplicate_similarity)
MATCH_MIRRORED = True  # a left-right flipped copy (a common augmentation and re-upload trick) is a copy

# A left-right flip negates the DCT terms of odd horizontal frequency: their bits invert (bit r*8+c, MSB first).
MIRROR = np.uint64(sum(1 << (63 - (r * 8 + c)) for r in range(8) for c in range(1, 8, 2)))


# ---------------------------------------------------------------------------------------------
# Frames


def trim_bars(grey: np.ndarray) -> np.ndarray:
    """`grey` without black bars (letterbox, pillarbox, window-box).

    Bars are added centred, so each axis loses the shorter of its two edge runs of dark uniform
    lines on both ends: a dark scene edge on one side only (a night sky) is kept, as it would be
    in a brightened copy whose dark rows are no longer dark.
    """
    h, w = grey.shape
    rows = (grey.mean(1) < BAR_MEAN) & (grey.std(1) < BAR_STD)
    cols = (grey.mean(0) < BAR_MEAN) & (grey.std(0) < BAR_STD)
    y = min(_run(rows, h), _run(rows[::-1], h))
    x = min(_run(cols, w), _run(cols[::-1], w))
    return grey[y : h - y, x : w - x]


def _run(bar: np.ndarray, size: int) -> int:
    """Length of the leading run of bar lines, capped at MAX_BAR_SHARE of the side."""
    limit = int(size * MAX_BAR_SHARE)
    content = np.flatnonzero(~bar[:limit])
    return int(content[0]) if len(content) else limit


def frame_hash(image: np.ndarray) -> int:
    """64-bit perceptual hash of a whole RGB (or grey) uint8 frame; NO_HASH for a flat frame."""
    picture = Image.fromarray(image).convert("L")
    factor = min(picture.size) // WORK_SIZE
    if factor > 1:  # box-average first: 5x faster, and the hash only keeps the lowest frequencies
        picture = picture.reduce(factor)
    grey = trim_bars(np.asarray(picture))
    if grey.size == 0 or grey.std() < FLAT_STD:
        return NO_HASH
    bits = imagehash.phash(Image.fromarray(grey)).hash.ravel()
    value = int(np.packbits(bits).view(">u8")[0])
    return value or 1  # an all-zero hash (never seen in practice) must not read as NO_HASH


# ---------------------------------------------------------------------------------------------
# Clip fingerprints


def encode(hashes: Sequence[int] | np.ndarray) -> str:
    """The stored fingerprint: PREFIX and 16 hex digits per frame, at most MAX_HASHES frames."""
    values = np.asarray(hashes, dtype=np.uint64)
    if len(values) > MAX_HASHES:
        values = values[np.linspace(0, len(values) - 1, MAX_HASHES).round().astype(int)]
    return PREFIX + "".join(f"{int(v):016x}" for v in values)


def decode(fingerprint: str) -> np.ndarray:
    """uint64 hashes of one fingerprint (empty for "" or an unknown format)."""
    if not fingerprint or not fingerprint.startswith(PREFIX):
        return np.zeros(0, np.uint64)
    body = fingerprint[len(PREFIX) :]
    raw = bytes.fromhex(body[: len(body) - len(body) % HEX_PER_HASH])
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64)


def clip_fingerprint(frames: Sequence[np.ndarray]) -> str:
    """Fingerprint of a clip's frames, given in time order, each a whole RGB frame."""
    return encode([frame_hash(f) for f in frames])


# ---------------------------------------------------------------------------------------------
# Matching


@dataclass
class FingerprintTable:
    """Decoded fingerprints of many clips, padded with NO_HASH: row i is clip i.

    Memory: 8 bytes x N x the longest fingerprint (13 hashes for a 2 s clip: 104 MB per 10^6 clips).
    """

    hashes: np.ndarray  # [N, L] uint64
    lengths: np.ndarray | None = None  # [N] stored hashes per row (the rest is padding); derived if None

    def __post_init__(self) -> None:
        if self.lengths is None:
            present = self.hashes != NO_HASH
            self.lengths = np.where(present.any(1), self.hashes.shape[1] - np.argmax(present[:, ::-1], 1), 0)

    @classmethod
    def from_fingerprints(cls, fingerprints: Sequence[str]) -> FingerprintTable:
        decoded = [decode(f) for f in fingerprints]
        lengths = np.array([len(d) for d in decoded], np.int64)
        table = np.zeros((len(decoded), max(int(lengths.max(initial=0)), 1)), np.uint64)
        for i, d in enumerate(decoded):
            table[i, : len(d)] = d
        return cls(table, lengths)

    def __len__(self) -> int:
        return len(self.hashes)


def fingerprint_match(a: str, b: str) -> float:
    """Similarity in [0, 1] of two clip fingerprints: 1 when one clip's frames all appear in the other."""
    return float(match_one_to_many(a, [b])[0])


def match_one_to_many(query: str, candidates: Sequence[str]) -> np.ndarray:
    """fingerprint_match of `query` against each candidate, as one float array."""
    table = FingerprintTable.from_fingerprints([query, *candidates])
    n = len(candidates)
    return pair_scores(table, np.zeros(n, np.int64), np.arange(1, n + 1))


def neighbour_scores(table: FingerprintTable, neighbours: np.ndarray) -> np.ndarray:
    """[N, k] scores of each clip i against its neighbours[i] (row indices of `table`; -1 = none)."""
    neighbours = np.asarray(neighbours)
    rows = np.repeat(np.arange(len(neighbours)), neighbours.shape[1])
    cols = neighbours.ravel()
    valid = cols >= 0
    out = np.zeros(len(cols), np.float32)
    out[valid] = pair_scores(table, rows[valid], cols[valid])
    return out.reshape(neighbours.shape)


def pair_scores(
    table: FingerprintTable,
    i: np.ndarray,
    j: np.ndarray,
    *,
    distance: int = FRAME_DISTANCE,
    mirrored: bool = MATCH_MIRRORED,
    block: int = 1 << 22,
) -> np.ndarray:
    """Score of each pair (i[p], j[p]) of table rows, in blocks of about `block` frame comparisons.

    share(x in y) = matched frames of x / max(hashable frames of x, MIN_FRAMES), where a frame
    matches if some frame of y lies within `distance` bits. The score is the larger of the
    two shares: a sub-clip is fully contained in its source, whose own share is only the
    sub-clip's fraction of it. With `mirrored`, the pair is also scored with y flipped
    left-right (whole clip, not frame by frame) and the better orientation counts.
    """
    i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
    out = np.zeros(len(i), np.float32)
    # Pairs in order of their longer fingerprint, each block cut to its own longest: a few long
    # clips do not make every comparison as wide as theirs.
    width = np.maximum(table.lengths[i], table.lengths[j])
    order = np.argsort(width, kind="stable")
    budget = block // (2 if mirrored else 1)
    s = 0
    while s < len(order):
        e = s + max(1, budget // max(1, int(width[order[s]])) ** 2)
        while e - s > 1 and (e - s) * int(width[order[min(e, len(order)) - 1]]) ** 2 > budget:
            e = s + max(1, (e - s) // 2)
        rows = order[s:e]
        w = max(1, int(width[rows[-1]]))
        a, b = table.hashes[i[rows], :w], table.hashes[j[rows], :w]
        valid = (a != NO_HASH)[:, :, None] & (b != NO_HASH)[:, None, :]
        score = _score(a[:, :, None] ^ b[:, None, :], valid, distance)
        if mirrored:
            score = np.maximum(score, _score(a[:, :, None] ^ (b ^ MIRROR)[:, None, :], valid, distance))
        out[rows] = score
        s = e
    return out


def _score(xor: np.ndarray, valid: np.ndarray, distance: int) -> np.ndarray:
    close = (_popcount(xor) <= distance) & valid
    share_a = close.any(2).sum(1) / np.maximum(valid.any(2).sum(1), MIN_FRAMES)
    share_b = close.any(1).sum(1) / np.maximum(valid.any(1).sum(1), MIN_FRAMES)
    return np.maximum(share_a, share_b)


def clip_keys(table: FingerprintTable) -> np.ndarray:
    """[N] uint64: per clip, the majority of each bit over its hashable frames (NO_HASH if none).

    A 64-bit summary for finding candidates by Hamming distance (e.g. a Milvus BINARY_VECTOR
    field, dim 64, metric HAMMING) where the embedding moved too far for its k-NN to hold the
    copy. A flipped copy's key is the key ^ MIRROR: query both.
    """
    bits = np.unpackbits(table.hashes.astype(">u8").view(np.uint8).reshape(len(table), -1, 8), axis=2)
    valid = (table.hashes != NO_HASH)[:, :, None]
    ones = (bits * valid).sum(1)
    majority = (2 * ones > valid.sum(1)).astype(np.uint8)
    return np.packbits(majority, axis=1).view(">u8").ravel().astype(np.uint64)


def clip_key(fingerprint: str) -> bytes:
    """clip_keys for one fingerprint, as the 8 bytes a Milvus BINARY_VECTOR(dim=64) takes."""
    return int(clip_keys(FingerprintTable.from_fingerprints([fingerprint]))[0]).to_bytes(8, "big")


def is_copy(score: float | np.ndarray, cosine: float | np.ndarray | None = None, cosine_min: float = COSINE_MATCH):
    """The recommended rule (bench/copy_detection.py): the fingerprints match, or they half-match
    and the embeddings are near-identical. Works on scalars or arrays."""
    hit = np.asarray(score) >= CLIP_MATCH
    if cosine is not None:
        hit = hit | ((np.asarray(cosine) >= cosine_min) & (np.asarray(score) >= CLIP_MATCH_WITH_COSINE))
    return hit


if hasattr(np, "bitwise_count"):  # numpy >= 2.0

    def _popcount(x: np.ndarray) -> np.ndarray:
        return np.bitwise_count(x)

else:
    _BITS = np.array([bin(v).count("1") for v in range(256)], np.uint8)

    def _popcount(x: np.ndarray) -> np.ndarray:
        return _BITS[x.view(np.uint8)].reshape(*x.shape, 8).sum(-1, dtype=np.uint8)


def self_distances(table: FingerprintTable, gap: int = 2) -> np.ndarray:
    """[N] how far apart a clip's own frames are: the median, over its frames, of the Hamming distance to
    the closest other frame at least `gap` samples away (inf with too few frames to tell).

    A static shot's frames all lie a few bits apart, so a frame match with another clip says only "same
    camera"; a copy must match more tightly than the clip matches itself at another moment.
    """
    hashes = table.hashes
    width = hashes.shape[1]
    xor = _popcount(hashes[:, :, None] ^ hashes[:, None, :]).astype(np.float32)
    valid = (hashes != NO_HASH)[:, :, None] & (hashes != NO_HASH)[:, None, :]
    far = np.abs(np.arange(width)[:, None] - np.arange(width)[None, :]) >= gap
    xor[~(valid & far)] = np.inf
    closest = xor.min(2)
    closest[~np.isfinite(closest)] = np.nan
    enough = np.isfinite(closest).sum(1) >= MIN_FRAMES
    out = np.full(len(hashes), np.inf, np.float32)
    if enough.any():
        out[enough] = np.nanmedian(closest[enough], axis=1)
    return out


def pair_distances(
    table: FingerprintTable, i: np.ndarray, j: np.ndarray, *, mirrored: bool = MATCH_MIRRORED
) -> np.ndarray:
    """Mean Hamming distance from each frame of the shorter clip to its closest frame in the other (the better
    orientation when `mirrored`): about 0-2 bits for a re-encoded or resized copy (64 when nothing is hashed)."""
    out = np.full(len(i), 64.0, np.float32)
    for p, (a, b) in enumerate(zip(np.asarray(i), np.asarray(j))):
        x, y = table.hashes[a, : table.lengths[a]], table.hashes[b, : table.lengths[b]]
        x, y = (x, y) if len(x) <= len(y) else (y, x)
        x, y = x[x != NO_HASH], y[y != NO_HASH]
        if len(x) and len(y):
            flips = (y, y ^ MIRROR) if mirrored else (y,)
            out[p] = min(float(_popcount(x[:, None] ^ f[None, :]).min(1).mean()) for f in flips)
    return out
