"""VectorStore on Milvus Lite: layouts, safe filters, and the errors users see."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from taxonomy_core import schema as S
from taxonomy_core.store import DatasetLayout, StoreError, VectorStore, filter_eq, filter_in

LAYOUT = DatasetLayout(dataset="sports", model_id="toy", dim=4, text_dim=3, text_space="semantic")


def clip_row(clip_id: str, label: str, vector=(1.0, 0.0, 0.0, 0.0)) -> dict:
    return {
        S.CLIP_ID: clip_id,
        S.ROW: 0,
        S.VIDEO: "v.mp4",
        S.START: 0.0,
        S.END: 1.0,
        S.LABEL: label,
        S.SPLIT: "train",
        S.MODEL_ID: "toy",
        S.DURATION: 1.0,
        S.FPS: 25.0,
        S.WIDTH: 64,
        S.HEIGHT: 48,
        S.CODEC: "h264",
        S.BRIGHTNESS: 90.0,
        S.EXTRA: {},
        S.THUMBNAIL: "",
        S.VECTOR: list(vector),
        S.TEXT_VECTOR: [1.0, 0.0, 0.0],
    }


@pytest.fixture
def store(milvus_uri):
    store = VectorStore.open(milvus_uri)
    store.ensure(LAYOUT)
    yield store
    store.close()


def test_layout_is_recorded_and_reopened(store, milvus_uri):
    store.upsert(LAYOUT.clips, [clip_row("a", "hurdles")])
    store.close()
    reopened = VectorStore.open(milvus_uri)
    assert reopened.layouts() == [LAYOUT]
    assert reopened.count(LAYOUT.clips) == 1
    reopened.close()


@pytest.mark.parametrize("label", ['say "hi"', "back\\slash", "café ünïcode", "it's", "a, b"])
def test_filters_quote_any_label_safely(store, label):
    store.upsert(LAYOUT.clips, [clip_row("a", label), clip_row("b", "other")])
    hits = list(store.iterate(LAYOUT.clips, [S.CLIP_ID, S.LABEL], filter_eq(S.LABEL, label)))
    assert [(h[S.CLIP_ID], h[S.LABEL]) for h in hits] == [("a", label)]
    assert filter_in(S.CLIP_ID, ["x", 'y"']) == 'clip_id in ["x", "y\\""]'


def test_upsert_is_idempotent_and_partial_update_keeps_vectors(store):
    store.upsert(LAYOUT.clips, [clip_row("a", "x", (0.0, 1.0, 0.0, 0.0))])
    store.upsert(LAYOUT.clips, [clip_row("a", "x", (0.0, 1.0, 0.0, 0.0))])
    store.update_fields(LAYOUT.clips, [{S.CLIP_ID: "a", S.LABEL: "y"}])
    [row] = store.get(LAYOUT.clips, ["a"], [S.LABEL, S.VECTOR])
    assert store.count(LAYOUT.clips) == 1
    assert row[S.LABEL] == "y" and list(row[S.VECTOR]) == [0.0, 1.0, 0.0, 0.0]


def test_search_by_vector(store):
    store.upsert(LAYOUT.clips, [clip_row("a", "x", (1, 0, 0, 0)), clip_row("b", "y", (0, 1, 0, 0))])
    [hits] = store.search(LAYOUT.clips, [[0.1, 0.9, 0, 0]], S.VECTOR, limit=2, fields=[S.LABEL])
    assert [h["entity"][S.LABEL] for h in hits] == ["y", "x"]


def test_dimension_clash_is_refused(store):
    with pytest.raises(StoreError, match="holds 4-d vectors"):
        store.ensure(DatasetLayout(dataset="sports", model_id="toy", dim=8, text_dim=3, text_space="semantic"))


def test_drop_removes_collections_and_registry_entry(store):
    store.drop(LAYOUT)
    assert store.layouts() == []
    assert not store.client.has_collection(LAYOUT.clips)


def test_unreachable_server_names_the_uri_and_the_fix():
    with pytest.raises(StoreError) as error:
        VectorStore.open("http://127.0.0.1:9")
    assert "http://127.0.0.1:9" in str(error.value) and "docker compose" in str(error.value)


def test_lite_file_held_by_another_process(milvus_uri):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from pymilvus import MilvusClient; import time; c = MilvusClient({milvus_uri!r}); print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match="another process"):
            VectorStore.open(milvus_uri)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.5)
    VectorStore.open(milvus_uri).close()  # free again once the holder is gone


def test_closing_gives_the_lite_file_back_to_other_processes(milvus_uri):
    first, second = VectorStore.open(milvus_uri), VectorStore.open(milvus_uri)
    probe = f"from taxonomy_core.store import VectorStore\nVectorStore.open({milvus_uri!r}).close()"
    first.close()
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode != 0  # `second` still holds it
    second.close()
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0
