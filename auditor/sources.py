"""Which clips come from one source: the same video file, the same value of a source column, or copies.

A split must keep each source whole (AutoML and UCF-101 split by source video), and a re-split moves whole
groups. The manifest is trusted for what it states; copies join groups only where frames confirm them.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from taxonomy_core import schema as S

SOURCE_COLUMNS = ("source", "source_video", "youtube_id", "video_id")  # first present wins, else the file


def source_of(clips) -> np.ndarray:
    """Each clip's source video: a source column of the manifest where it has one, else its video file."""
    extras = clips[S.EXTRA] if S.EXTRA in clips else [None] * len(clips)
    out = []
    for video, extra in zip(clips[S.VIDEO], extras):
        named = next((str(extra[c]) for c in SOURCE_COLUMNS if extra and str(extra.get(c) or "").strip()), None)
        out.append(f"source:{named}" if named else f"file:{video}")
    return np.array(out, dtype=object)


def source_name(source: str) -> str:
    """A source id as a person reads it (the file, or the source column's value)."""
    return source.split(":", 1)[1]


def source_groups(clips, pairs: list[tuple[int, int, float]] = ()) -> np.ndarray:
    """[N] group id per clip: clips of one source, joined with the clips they are confirmed copies of."""
    n = len(clips)
    _, codes = np.unique(source_of(clips), return_inverse=True)
    a = [int(i) for i, _, _ in pairs] + list(range(n))
    b = [int(j) for _, j, _ in pairs] + list(range(n))
    first = {}
    for pos, code in enumerate(codes):  # every clip to the first clip of its source
        a.append(pos)
        b.append(first.setdefault(int(code), pos))
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def components(n: int, pairs: list[tuple[int, int, float]]) -> list[list[int]]:
    """Connected groups of the clips that pairs join (clips in no pair are left out), each sorted, in order."""
    if not pairs:
        return []
    a, b = np.array([(i, j) for i, j, _ in pairs]).T
    _, label = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    groups = defaultdict(list)
    for i in sorted(set(a) | set(b)):
        groups[label[i]].append(int(i))
    return sorted(groups.values())
