"""Which clips show the same footage: candidates from embedding neighbours and from fingerprint keys,
confirmed by their frame hashes (indexer.fingerprint; bench/copy_detection.py measures the rule).

Heavy re-encoding can move a copy's embedding out of its original's k nearest neighbours, so candidates
also come from a band index over each clip's 64-bit summary key.

A copy needs frame evidence that is specific to the pair: a static camera makes different moments of one
shot hash alike, so a pair is a copy only when its frames lie much closer to each other (Hamming bits) than
either clip's frames lie to any other clip's (`SPECIFIC_RATIO`), or are near-exact (`EXACT_BITS`).
Segments of one video file are never copies of each other: the manifest's own times say whether they
overlap (the duplicates check reports that), and different moments of one video are siblings, not copies.
Only a context without fingerprints (arrays in benchmarks) falls back to the embedding alone, and says so.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from indexer.fingerprint import MIRROR, NO_HASH, FingerprintTable, clip_keys, is_copy, pair_distances, pair_scores
from taxonomy_core import schema as S

KEY_BANDS = 4  # 16-bit bands: two keys within KEY_DISTANCE bits share at least one band exactly
KEY_DISTANCE = 12  # bits: summary keys sharing a band and this close make a candidate (as frames do)
MAX_BUCKET = 64  # a band value shared by more clips than this says nothing (flat or generic footage)
BLOCK = 65536  # pairs whose cosines are computed at once
EXACT_BITS = 0.5  # mean Hamming bits per frame under which two clips show the same pictures, whatever else matches
SPECIFIC_RATIO = 0.5  # ... else a copy's frames must be this much closer than either clip's next frame match

SAME_FRAMES = "same_frames"  # confirmed by frame fingerprints
EMBEDDING_ONLY = "near_identical_embedding"  # no fingerprints stored: the cosine alone, unconfirmed


@dataclass(frozen=True)
class CopyPairs:
    """Pairs (i < j) judged the same footage, with how each was judged."""

    pairs: list[tuple[int, int, float]]  # (i, j, cosine)
    frames: dict[tuple[int, int], float]  # pair -> share of frames matched
    bits: dict[tuple[int, int], float]  # pair -> mean Hamming bits between matched frames
    reason: dict[tuple[int, int], str]  # pair -> SAME_FRAMES | EMBEDDING_ONLY


def find_copies(ctx, similarity: float) -> CopyPairs:
    """Every pair of clips judged the same footage (see the module docstring for the rule)."""
    idx, _ = ctx.neighbours
    n = len(idx)
    rows = np.repeat(np.arange(n, dtype=np.int64), idx.shape[1])
    cols = idx.ravel().astype(np.int64)
    keep = (cols >= 0) & (cols != rows)
    codes = [np.minimum(rows[keep], cols[keep]) * n + np.maximum(rows[keep], cols[keep])]  # pair (a, b) as a*n+b
    fingerprints = ctx.clips[S.FINGERPRINT] if S.FINGERPRINT in ctx.clips else None
    table = FingerprintTable.from_fingerprints(fingerprints.fillna("").tolist()) if fingerprints is not None else None
    if table is not None:
        codes.append(np.array([a * n + b for a, b in key_candidates(clip_keys(table))], dtype=np.int64))
    pairs = np.unique(np.concatenate(codes))
    video = ctx.clips[S.VIDEO].to_numpy(dtype=object)
    pairs = pairs[video[pairs // n] != video[pairs % n]] if len(pairs) else pairs
    if not len(pairs):
        return CopyPairs([], {}, {}, {})
    i, j = pairs // n, pairs % n
    cosine = np.concatenate(
        [
            np.einsum("nd,nd->n", ctx.vectors[i[s : s + BLOCK]], ctx.vectors[j[s : s + BLOCK]])
            for s in range(0, len(i), BLOCK)
        ]
    )  # in blocks: a million pairs of 1280-d rows at once would be 10 GB
    hashed = np.zeros(len(i), bool) if table is None else (table.lengths[i] > 0) & (table.lengths[j] > 0)
    copy = ~hashed & (cosine >= similarity)
    frames = np.zeros(len(i), np.float32)
    bits = np.full(len(i), 64.0, np.float32)
    if hashed.any():
        frames[hashed] = pair_scores(table, i[hashed], j[hashed])
        matched = np.flatnonzero(hashed & is_copy(frames, cosine, cosine_min=similarity))
        bits[matched] = pair_distances(table, i[matched], j[matched])
        copy[matched] = specific(i[matched], j[matched], bits[matched], n)
    found = np.flatnonzero(copy)
    key = [(int(i[p]), int(j[p])) for p in found]
    return CopyPairs(
        [(a, b, float(cosine[p])) for (a, b), p in zip(key, found)],
        {k: float(frames[p]) for k, p in zip(key, found) if hashed[p]},
        {k: float(bits[p]) for k, p in zip(key, found) if hashed[p]},
        {k: SAME_FRAMES if hashed[p] else EMBEDDING_ONLY for k, p in zip(key, found)},
    )


def specific(i: np.ndarray, j: np.ndarray, bits: np.ndarray, n: int) -> np.ndarray:
    """Which frame-matched pairs match more tightly than either clip matches anything else (or near-exactly).

    Different moments of one static shot all match each other a few bits apart; a copy matches its original
    far closer than it matches the shot's other moments.
    """
    best = np.full((n, 2), np.inf, np.float32)  # each clip's two closest frame matches
    for a, d in zip(np.concatenate([i, j]), np.concatenate([bits, bits])):
        if d < best[a, 0]:
            best[a] = (d, best[a, 0])
        elif d < best[a, 1]:
            best[a, 1] = d

    def other(a, d):  # the clip's closest match other than this pair (ties count as another match)
        return np.where(best[a, 0] < d, best[a, 0], best[a, 1])

    reference = np.minimum(other(i, bits), other(j, bits))
    return (bits <= EXACT_BITS) | (bits <= SPECIFIC_RATIO * reference)


def key_candidates(keys: np.ndarray) -> set[tuple[int, int]]:
    """Pairs whose summary keys (or one's and the other's mirror image) share a 16-bit band and lie close."""
    present = np.flatnonzero(keys != NO_HASH)
    probes = np.concatenate([keys[present], keys[present] ^ MIRROR])
    owners = np.concatenate([present, present])
    out: set[tuple[int, int]] = set()
    for band in range(KEY_BANDS):
        shift = np.uint64(16 * band)
        buckets: dict[int, list[int]] = defaultdict(list)
        for owner, value in zip(owners, (probes >> shift) & np.uint64(0xFFFF)):
            buckets[int(value)].append(int(owner))
        for members in buckets.values():
            members = sorted(set(members))
            if 1 < len(members) <= MAX_BUCKET:
                out |= {(a, b) for n, a in enumerate(members) for b in members[n + 1 :] if _close(keys, a, b)}
    return out


def _close(keys: np.ndarray, a: int, b: int) -> bool:
    distance = min(bin(int(keys[a] ^ keys[b])).count("1"), bin(int(keys[a] ^ keys[b] ^ MIRROR)).count("1"))
    return distance <= KEY_DISTANCE
