"""Which clips show the same footage: candidates from embedding neighbours and from fingerprint keys,
confirmed by their frame hashes (indexer.fingerprint; bench/copy_detection.py measures the rule).

Heavy re-encoding can move a copy's embedding out of its original's k nearest neighbours, so candidates
also come from a band index over each clip's 64-bit summary key. Segments of one source video are judged
by the embedding alone: a static camera makes different moments of one shot hash alike.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from indexer.fingerprint import MIRROR, NO_HASH, FingerprintTable, clip_keys, is_copy, pair_scores
from taxonomy_core import schema as S

KEY_BANDS = 4  # 16-bit bands: two keys within KEY_DISTANCE bits share at least one band exactly
KEY_DISTANCE = 12  # bits: summary keys sharing a band and this close make a candidate (as frames do)
MAX_BUCKET = 64  # a band value shared by more clips than this says nothing (flat or generic footage)
BLOCK = 65536  # pairs whose cosines are computed at once


def find_copies(ctx, similarity: float) -> tuple[list[tuple[int, int, float]], dict[tuple[int, int], float]]:
    """((i, j, cosine) with i < j for every pair judged the same footage, {pair: frame-match score})."""
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
    if not len(pairs):
        return [], {}
    i, j = pairs // n, pairs % n
    cosine = np.concatenate(
        [
            np.einsum("nd,nd->n", ctx.vectors[i[s : s + BLOCK]], ctx.vectors[j[s : s + BLOCK]])
            for s in range(0, len(i), BLOCK)
        ]
    )  # in blocks: a million pairs of 1280-d rows at once would be 10 GB
    same_video = ctx.clips[S.VIDEO].to_numpy(dtype=object)
    same_video = same_video[i] == same_video[j]
    copy = cosine >= similarity
    frames = np.zeros(len(i), np.float32)
    hashed = np.zeros(len(i), bool)
    if table is not None:
        hashed = (table.lengths[i] > 0) & (table.lengths[j] > 0)
        frames[hashed] = pair_scores(table, i[hashed], j[hashed])
        by_frames = hashed & ~same_video
        copy = np.where(by_frames, is_copy(frames, cosine, cosine_min=similarity), copy)
    found = np.flatnonzero(copy)
    pairs_found = [(int(i[p]), int(j[p]), float(cosine[p])) for p in found]
    return pairs_found, {(int(i[p]), int(j[p])): float(frames[p]) for p in found if hashed[p]}


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
