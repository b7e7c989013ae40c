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


def find_copies(ctx, similarity: float) -> tuple[list[tuple[int, int, float]], dict[tuple[int, int], float]]:
    """((i, j, cosine) with i < j for every pair judged the same footage, {pair: frame-match score})."""
    idx, _ = ctx.neighbours
    pairs = {tuple(sorted((int(i), int(j)))) for i, row in enumerate(idx) for j in row if j >= 0 and j != i}
    fingerprints = ctx.clips[S.FINGERPRINT] if S.FINGERPRINT in ctx.clips else None
    table = FingerprintTable.from_fingerprints(fingerprints.fillna("").tolist()) if fingerprints is not None else None
    if table is not None:
        pairs |= key_candidates(clip_keys(table))
    if not pairs:
        return [], {}
    i, j = np.array(sorted(pairs)).T
    cosine = np.einsum("nd,nd->n", ctx.vectors[i], ctx.vectors[j])
    same_video = ctx.clips[S.VIDEO].to_numpy(dtype=object)
    same_video = same_video[i] == same_video[j]
    copy = cosine >= similarity
    matches: dict[tuple[int, int], float] = {}
    if table is not None:
        hashed = (table.lengths[i] > 0) & (table.lengths[j] > 0)
        frames = np.zeros(len(i), np.float32)
        frames[hashed] = pair_scores(table, i[hashed], j[hashed])
        by_frames = hashed & ~same_video
        copy = np.where(by_frames, is_copy(frames, cosine, cosine_min=similarity), copy)
        matches = {(int(a), int(b)): float(s) for a, b, s, h in zip(i, j, frames, hashed) if h}
    found = [(int(a), int(b), float(c)) for a, b, c, hit in zip(i, j, cosine, copy) if hit]
    return found, {p: matches[p] for p in ((a, b) for a, b, _ in found) if p in matches}


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
