"""What a dataset holds in a store, read through the store's verbs, for tests that compare indexing runs."""

from __future__ import annotations

from taxonomy_core import schema as S
from taxonomy_core.store import open_store


def stored_clips(uri: str, dataset: str, fields: list[str]) -> tuple[dict[str, dict], dict[str, int]]:
    """Per clip id: `fields`, the float32 vectors as written, and its timeline steps and crops (Parts);
    with the number of clips, timeline steps and crops stored."""
    store = open_store(uri)
    try:
        layout = store.layout(dataset, "effnet-lite0")
        clips = {r[S.CLIP_ID]: r for r in store.clip_records(layout, [S.CLIP_ID, *fields])}
        for clip_id, vectors in store.exact_vectors(layout, list(clips)).items():
            clips[clip_id].update(vectors)
        counts = {"clips": len(clips)}
        for which in ("timeline", "crops"):
            parts = store.companions(layout, which, list(clips))
            for clip_id, got in parts.items():
                clips[clip_id][which] = got
            counts[which] = sum(len(p.where) for p in parts.values())
    finally:
        store.close()
    return clips, counts
