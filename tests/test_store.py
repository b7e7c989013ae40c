"""The store protocol on Milvus Lite: layouts, each domain verb, safe filters, and the errors users see."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import time
from dataclasses import asdict, replace

import numpy as np
import pytest
from PIL import Image

from auditor.knn import knn
from taxonomy_core import schema as S
from taxonomy_core.store import DatasetLayout, MilvusStore, StoreError, open_store
from taxonomy_core.store.milvus import filter_in

LAYOUT = DatasetLayout(dataset="sports", model_id="toy", dim=4, text_dim=3, text_space="semantic")


def clip_row(clip_id: str, label: str, vector=(1.0, 0.0, 0.0, 0.0), row: int = 0) -> dict:
    return {
        S.CLIP_ID: clip_id,
        S.ROW: row,
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
        S.THUMBNAIL: f"jpeg-of-{clip_id}",
        S.VECTOR: list(vector),
        S.TEXT_VECTOR: [1.0, 0.0, 0.0],
    }


@pytest.fixture
def store(milvus_uri):
    store = open_store(milvus_uri)
    store.ensure(LAYOUT)
    yield store
    store.close()


def test_layout_is_recorded_and_reopened(store, milvus_uri):
    store.write_clips(LAYOUT, [clip_row("a", "hurdles")])
    store.close()
    reopened = open_store(milvus_uri)
    assert reopened.layouts() == [LAYOUT]
    assert reopened.count(LAYOUT) == 1
    reopened.close()


@pytest.mark.parametrize("label", ['say "hi"', "back\\slash", "café ünïcode", "it's", "a, b"])
def test_filters_quote_any_label_safely(store, label):
    store.write_clips(LAYOUT, [clip_row("a", label), clip_row("b", "other")])
    [hits] = store.search(LAYOUT, np.array([[1.0, 0, 0, 0]]), 5, label=label)
    assert [clip_id for clip_id, _ in hits] == ["a"]
    assert filter_in(S.CLIP_ID, ["x", 'y"']) == 'clip_id in ["x", "y\\""]'


def test_upsert_is_idempotent_and_partial_update_keeps_vectors(store):
    store.write_clips(LAYOUT, [clip_row("a", "x", (0.0, 1.0, 0.0, 0.0))])
    store.write_clips(LAYOUT, [clip_row("a", "x", (0.0, 1.0, 0.0, 0.0))])
    store.update_clips(LAYOUT, [{S.CLIP_ID: "a", S.LABEL: "y"}])
    matrix = store.clip_matrix(LAYOUT)
    assert store.count(LAYOUT) == 1
    assert matrix.table[S.LABEL].tolist() == ["y"] and matrix.vectors.tolist() == [[0.0, 1.0, 0.0, 0.0]]


def part(clip_id: str, k: int, where_field: str, where, vector, text=(0.0, 1.0, 0.0)) -> dict:
    return {S.PART_ID: f"{clip_id}:{k:03d}", S.CLIP_ID: clip_id, S.INDEX: k, where_field: where,
            S.VECTOR: list(vector), S.TEXT_VECTOR: list(text)}  # fmt: skip


def test_clip_matrix_companions_and_thumbnails(store):
    timeline = [part("a", k, S.TIME, 0.5 * k, (1, k, 0, 0)) for k in (2, 0, 1)]
    crops = [part("a", 0, S.BOX, [0, 0, 0.5, 0.5], (0, 0, 1, 0))]
    store.write_clips(LAYOUT, [clip_row("a", "x", row=7), clip_row("b", "y", (0, 2, 0, 0), row=3)], timeline, crops)
    matrix = store.clip_matrix(LAYOUT)
    assert matrix.table[S.CLIP_ID].tolist() == ["b", "a"]  # ordered by manifest row
    assert np.allclose(np.linalg.norm(matrix.vectors, axis=1), 1) and matrix.text_vectors.shape == (2, 3)
    assert store.clip_matrix(LAYOUT, {"a"}).table[S.ROW].tolist() == [7]
    parts = store.companions(LAYOUT, "timeline", ["a", "b"])
    assert list(parts) == ["a"] and parts["a"].where.tolist() == [0.0, 0.5, 1.0]
    assert store.companions(LAYOUT, "crops", ["a"])["a"].where.tolist() == [[0, 0, 0.5, 0.5]]
    assert store.thumbnails(LAYOUT, ["a", "b", "zz"]) == {"a": "jpeg-of-a", "b": "jpeg-of-b"}
    store.delete_clips(LAYOUT, ["a"])
    assert store.count(LAYOUT) == 1 and store.count(LAYOUT, "timeline") == 0 and store.count(LAYOUT, "crops") == 0


def test_neighbours_and_pairs_above_match_exact_search(store):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(60, 4))
    vectors[1] = vectors[0] + 1e-3
    store.write_clips(LAYOUT, [clip_row(f"c{i}", "x", v, row=i) for i, v in enumerate(vectors)])
    store.write_clips(LAYOUT, [clip_row("stale", "x", vectors[5], row=99)])  # stored, not in this matrix
    matrix = store.clip_matrix(LAYOUT, {f"c{i}" for i in range(60)})
    idx, sim = store.neighbours(LAYOUT, matrix, 5)
    exact_idx, exact_sim = knn(matrix.vectors, 5)
    # the matrix is read from the int8 copy, Milvus searches the float32 vectors: cosines agree to ~1e-3
    assert np.allclose(sim, exact_sim, atol=5e-3) and (idx[:, 0] == exact_idx[:, 0]).mean() > 0.95
    pairs = store.pairs_above(LAYOUT, matrix, 0.999, 5)
    assert (0, 1) in [(a, b) for a, b, _ in pairs] and all(s >= 0.999 for *_, s in pairs)


def test_lite_and_server_are_two_configurations_of_one_store(milvus_uri, milvus_server):
    lite, server = open_store(milvus_uri), open_store(milvus_server)
    assert type(lite) is type(server) is MilvusStore
    assert not lite.limits.server_side_neighbours and server.limits.server_side_neighbours
    layout = DatasetLayout(dataset=f"srv{time.time_ns()}", model_id="toy", dim=4, text_dim=3, text_space="semantic")
    server.ensure(layout)
    rows = [clip_row(f"c{i}", "x", v, row=i) for i, v in enumerate(np.eye(4) + 0.01)]
    server.write_clips(layout, rows)
    assert server.count(layout) == 4  # read right after the write: Strong consistency
    matrix = server.clip_matrix(layout)
    idx, _ = server.neighbours(layout, matrix, 2)
    assert idx.shape == (4, 2) and all(i not in row for i, row in enumerate(idx))
    server.drop(layout)
    lite.close()
    server.close()


def test_dimension_clash_is_refused(store):
    with pytest.raises(StoreError, match="holds 4-d vectors"):
        store.ensure(DatasetLayout(dataset="sports", model_id="toy", dim=8, text_dim=3, text_space="semantic"))


def test_drop_removes_collections_and_registry_entry(store):
    store.drop(LAYOUT)
    assert store.layouts() == []
    assert not store.client.has_collection(LAYOUT.clips)  # the Milvus implementation's own client


def test_unreachable_server_names_the_uri_and_the_fix():
    with pytest.raises(StoreError) as error:
        open_store("http://127.0.0.1:9")
    assert "http://127.0.0.1:9" in str(error.value) and "docker compose" in str(error.value)


def test_lite_file_held_by_another_process(milvus_uri):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from pymilvus import MilvusClient; import time; c = MilvusClient({milvus_uri!r}); "
            "print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match="another process"):
            open_store(milvus_uri)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.5)
    open_store(milvus_uri).close()  # free again once the holder is gone


def test_closing_gives_the_lite_file_back_to_other_processes(milvus_uri):
    first, second = open_store(milvus_uri), open_store(milvus_uri)
    probe = f"from taxonomy_core.store import open_store\nopen_store({milvus_uri!r}).close()"
    first.close()
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode != 0  # `second` still holds it
    second.close()
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


# --- storage layout 2: packed vectors, shards, fingerprints, thumbnails, the layout version ---------------------


def test_fingerprint_is_a_clip_matrix_column_and_empty_when_unknown(store):
    store.write_clips(LAYOUT, [{**clip_row("a", "x", row=0), S.FINGERPRINT: "ab" * 1024}, clip_row("b", "x", row=1)])
    table = store.clip_matrix(LAYOUT).table
    assert table[S.FINGERPRINT].tolist() == ["ab" * 1024, ""]


def test_packed_copy_keeps_cosines_within_half_a_percent(milvus_uri):
    layout = DatasetLayout(dataset="wide", model_id="toy", dim=512, text_dim=64, text_space="semantic")
    store = open_store(milvus_uri)
    store.ensure(layout)
    vectors = np.random.default_rng(0).normal(size=(20, 512)) ** 3  # heavy tails: the hard case for int8
    rows = [{**clip_row(f"c{i}", "x", v, row=i), S.TEXT_VECTOR: list(v[:64])} for i, v in enumerate(vectors)]
    store.write_clips(layout, rows)
    matrix = store.clip_matrix(layout)
    store.close()
    exact = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert np.abs(np.einsum("nd,nd->n", matrix.vectors, exact) - 1).max() < 1e-3
    assert np.abs(matrix.vectors @ matrix.vectors.T - exact @ exact.T).max() < 5e-3  # 3e-3 on these


def test_companions_take_four_and_two_bits_a_coordinate_and_keep_the_cosines_checks_use(milvus_uri):
    """Layout 3: a timeline step on 4 bits, a crop on 2 (rotated codes); their cosines with a class prototype
    and with each other stay within what the temporal and spatial thresholds (0.15, 0.08) can absorb."""
    layout = DatasetLayout(dataset="wide", model_id="toy", dim=512, text_dim=384, text_space="semantic")
    rng = np.random.default_rng(0)
    store = open_store(milvus_uri)
    store.ensure(layout)
    features = np.maximum(rng.normal(size=(40, 512)), 0) ** 2  # non-negative, a shared mean: like a CNN's
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    steps = [part("a", k, S.TIME, 0.5 * k, unit[k], text=rng.normal(size=384)) for k in range(20)]
    crops = [part("a", k, S.BOX, [0, 0, 1, 1], unit[20 + k]) for k in range(10)]
    store.write_clips(layout, [{**clip_row("a", "x", unit[0]), S.TEXT_VECTOR: list(rng.normal(size=384))}],
                      steps, crops)  # fmt: skip
    read = {which: store.companions(layout, which, ["a"])["a"] for which in ("timeline", "crops")}
    assert store.layout("wide").storage == 3
    store.close()
    prototype = unit.mean(axis=0) / np.linalg.norm(unit.mean(axis=0))
    step_error = read["timeline"].vectors @ prototype - unit[:20] @ prototype
    crop_error = read["crops"].vectors @ prototype - unit[20:30] @ prototype
    assert np.abs(step_error).max() < 0.015 and np.abs(crop_error).max() < 0.04
    adjacent = np.einsum("nd,nd->n", read["timeline"].vectors[:-1], read["timeline"].vectors[1:])
    assert np.abs(adjacent - np.einsum("nd,nd->n", unit[:19], unit[1:20])).max() < 0.02
    assert read["timeline"].text.shape == (20, 384) and read["crops"].where.shape == (10, 4)


def test_a_lite_file_is_written_in_zstd_without_dictionaries(store, milvus_uri):
    """Lite's own Parquet defaults (Snappy, dictionary pages) took 40 KB a clip where these take 27 (same rows)."""
    from pathlib import Path

    import pyarrow.parquet as pq

    store.write_clips(LAYOUT, [clip_row(f"c{i}", "x", row=i) for i in range(50)])
    store.release()  # Lite writes its data files when the file is closed
    files = list(Path(milvus_uri).rglob("data_*.parquet"))
    assert files
    for path in files:
        columns = pq.ParquetFile(path).metadata.row_group(0)
        chunks = [columns.column(k) for k in range(columns.num_columns)]
        assert {c.compression for c in chunks} == {"ZSTD"}
        assert not any(c.has_dictionary_page for c in chunks)


def test_a_dataset_written_in_layout_2_is_still_read_and_written_in_it(milvus_uri):
    layout = DatasetLayout(dataset="wide", model_id="toy", dim=512, text_dim=384, text_space="semantic")
    store = open_store(milvus_uri)
    store.ensure(layout)
    record = store.client.query("ta_registry", filter="", output_fields=["*"], limit=10)[0]
    store.client.upsert("ta_registry", [{**record, "layout": {**record["layout"], "storage": 2}}])
    store.close()
    store = open_store(milvus_uri)
    vector = np.random.default_rng(1).normal(size=512)
    store.ensure(layout)  # stays in layout 2: its rows were written with int8 companions
    text = list(np.ones(384))
    step = part("a", 0, S.TIME, 0.0, vector, text)
    store.write_clips(layout, [{**clip_row("a", "x", vector), S.TEXT_VECTOR: text}], [step])
    assert store.layout("wide").storage == 2
    step = store.companions(layout, "timeline", ["a"])["a"].vectors[0]
    store.close()
    assert abs(step @ vector / np.linalg.norm(vector) - 1) < 1e-3  # int8: unit again, cosine within 1e-3


def test_a_long_timeline_spans_several_packed_rows_and_reads_back_in_order(store):
    store.limits = replace(store.limits, max_packed_chars=200)  # 7 parts of this layout's 27 bytes fit a row
    steps = [part("a", k, S.TIME, 0.5 * k, (1, k, 0, 0)) for k in range(30)]
    store.write_clips(LAYOUT, [clip_row("a", "x")], steps[::-1])
    parts = store.companions(LAYOUT, "timeline", ["a"])["a"]
    assert parts.where.tolist() == [0.5 * k for k in range(30)] and parts.text.shape == (30, 3)
    expected = np.array([[1, k, 0, 0] for k in range(30)]) / np.hypot(1, np.arange(30))[:, None]
    assert np.allclose(parts.vectors, expected, atol=0.01)
    assert store.count(LAYOUT, "timeline") == 1


def test_crops_keep_boxes_and_visual_vectors_only(store):
    crops = [part("a", k, S.BOX, [0, 0, 0.1 * (k + 1), 1], (0, 1, k, 0)) for k in range(3)]
    store.write_clips(LAYOUT, [clip_row("a", "x")], crops=crops)
    parts = store.companions(LAYOUT, "crops", ["a"])["a"]
    assert np.allclose(parts.where[:, 2], [0.1, 0.2, 0.3]) and parts.text is None
    assert np.allclose(np.linalg.norm(parts.vectors, axis=1), 1)


def test_companions_are_sharded_and_read_one_shard_at_a_time(store):
    registered = store.layout(LAYOUT.dataset)
    assert registered.shards == store.limits.shards > 1
    ids = [f"c{i}" for i in range(40)]
    timeline = [part(c, k, S.TIME, float(k), (1, k, 0, 0)) for c in ids for k in range(2)]
    crops = [part(c, 0, S.BOX, [0, 0, 1, 1], (0, 1, 0, 0)) for c in ids]
    store.write_clips(LAYOUT, [clip_row(c, "x", row=i) for i, c in enumerate(ids)], timeline, crops)
    assert len({registered.shard_of(c) for c in ids}) > 1
    seen = []
    for page in store.companion_pages(LAYOUT, ("crops", "timeline"), ids[::-1]):
        shards = {registered.shard_of(c) for c in page}
        assert len(shards) == 1  # a page never mixes shards: one shard in memory at a time
        seen += [c for c, parts in page.items() if parts["timeline"].where.tolist() == [0.0, 1.0] and "crops" in parts]
    assert sorted(seen) == sorted(ids)
    assert store.count(LAYOUT, "crops") == 40 and store.count(LAYOUT) == 40  # the Lite file was reopened meanwhile


def test_thumbnails_larger_than_the_budget_are_reencoded_smaller(store):
    noise = np.random.default_rng(0).integers(0, 255, size=(300, 400, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG", quality=95)
    big = base64.b64encode(buffer.getvalue()).decode()
    store.write_clips(LAYOUT, [{**clip_row("a", "x"), S.THUMBNAIL: big}])
    stored = store.thumbnails(LAYOUT, ["a"])["a"]
    assert len(big) > store.limits.thumbnail_chars >= len(stored) > 0
    assert max(Image.open(io.BytesIO(base64.b64decode(stored))).size) <= 128


def test_a_store_written_in_the_old_layout_asks_to_be_reindexed(store):
    old = {k: v for k, v in asdict(LAYOUT).items() if k not in ("storage", "shards")}
    record = {"name": LAYOUT.clips, "dataset": LAYOUT.dataset, "model_id": LAYOUT.model_id, "layout": old,
              "vector": [0.0, 0.0]}  # fmt: skip
    store.client.upsert("ta_registry", [record])  # what version 1 recorded
    reopened = MilvusStore(store.client, store.uri)
    assert reopened.layout(LAYOUT.dataset).storage == 1
    for attempt in (lambda: reopened.clip_matrix(LAYOUT), lambda: reopened.ensure(LAYOUT)):
        with pytest.raises(StoreError, match="re-index it: `indexer drop sports --model toy`"):
            attempt()


def test_milvus_itself_refuses_a_field_past_its_length(store):
    """pymilvus's own length check is off (taxonomy_core.store.writes says why): Milvus still refuses."""
    with pytest.raises(StoreError, match="fingerprint.*exceeds max_length=2048"):
        store.write_clips(LAYOUT, [{**clip_row("a", "x"), S.FINGERPRINT: "f" * 2049}])
        store.flush()  # a Lite file writes what write_clips held back here (or at the next read)


def _rows(n: int, prefix: str = "c") -> tuple[list[dict], list[dict]]:
    clips = [clip_row(f"{prefix}{i}", f"class_{i % 3}", (1.0, float(i), 0.0, 0.0), row=i) for i in range(n)]
    steps = [
        {S.PART_ID: f"{c[S.CLIP_ID]}:000", S.CLIP_ID: c[S.CLIP_ID], S.INDEX: 0, S.TIME: 0.5,
         S.VECTOR: c[S.VECTOR], S.TEXT_VECTOR: c[S.TEXT_VECTOR]}
        for c in clips
    ]  # fmt: skip
    return clips, steps


def test_lite_writes_land_shard_by_shard_and_every_read_sees_them(store, monkeypatch):
    """On Lite, write_clips holds packed rows back and writes them one shard at a time, closing the file between
    shards once `resident_bytes` is open (a written collection stays in memory whole); any other call first
    writes what waits, in order, so a read or a delete never misses a write made before it."""
    layout = store.layout(LAYOUT.dataset)
    assert store.limits.staged_bytes > 0 and layout.shards == 16
    store.write_clips(LAYOUT, [clip_row("first", "class_0")])
    assert not store._staged  # a small dataset: written as it comes
    store.limits = replace(store.limits, resident_bytes=1)  # a dataset past it; close the file after every shard
    closed = []
    monkeypatch.setattr(store, "_evict", lambda real=store._evict: closed.append(1) or real())
    clips, steps = _rows(64)
    store.write_clips(LAYOUT, clips[:32], steps[:32])
    store.write_clips(LAYOUT, clips[32:], steps[32:])
    assert store._staged and not closed  # held back: nothing written yet
    store.flush()
    shards = {layout.shard_of(c[S.CLIP_ID]) for c in clips}
    assert len(closed) == len(shards) > 1  # one shard's collections open at a time
    store.write_clips(LAYOUT, [clip_row("one", "class_0")])
    assert store.count(LAYOUT) == 66  # a read writes what waits first
    got = store.companions(LAYOUT, "timeline", ["c5", "c40"])
    assert got["c40"].where.tolist() == [0.5] and got["c40"].vectors.shape == (1, 4)
    store.write_clips(LAYOUT, [clip_row("late", "class_0")])
    store.delete_clips(LAYOUT, ["late"])  # the delete comes after the write it follows
    assert store.count(LAYOUT) == 66 and "late" not in set(store.clip_matrix(LAYOUT).table[S.CLIP_ID])


def test_a_staged_write_budget_writes_without_a_read_and_a_refused_shard_keeps_the_others(store):
    store.limits = replace(store.limits, staged_bytes=1, resident_bytes=1)  # staged, and past the budget each call
    clips, _ = _rows(8, "b")
    store.write_clips(LAYOUT, clips)
    assert not store._staged
    bad = {**clip_row("bad", "x"), S.FINGERPRINT: "f" * 2049}
    store.limits = replace(store.limits, staged_bytes=1 << 30)
    fine, _ = _rows(40, "ok")
    store.write_clips(LAYOUT, [bad, *fine])
    with pytest.raises(StoreError, match=r"fingerprint[\s\S]*clips accepted for writing were not written") as refused:
        store.flush()
    stored = set(store.clip_matrix(LAYOUT).table[S.CLIP_ID])
    layout = store.layout(LAYOUT.dataset)
    lost = {c[S.CLIP_ID] for c in [bad, *fine] if layout.shard_of(c[S.CLIP_ID]) == layout.shard_of("bad")}
    assert f"{len(lost)} clips accepted" in str(refused.value)
    assert stored == {c[S.CLIP_ID] for c in clips + fine} - lost and len(stored) > len(clips)


def test_rows_are_put_in_order_in_place_as_fancy_indexing_would():
    from taxonomy_core.store.reads import permute_rows

    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 7, 500):
        matrix = rng.normal(size=(n, 5)).astype(np.float32)
        order = rng.permutation(n)
        want, buffer = matrix[order], matrix.copy()
        assert permute_rows(buffer, order) is buffer and np.array_equal(buffer, want)


def test_a_small_dataset_keeps_one_collection_a_kind_until_it_grows_past_the_limit(milvus_uri):
    """A job that brings few clips creates one collection a kind, not 16 (65 collections made, written into and
    flushed cost a small job ~1 s); once a job would take the dataset past `one_shard_clips`, its rows are spread
    over the shards first: every clip, vector, companion and thumbnail read back the same, the old collections gone."""
    store = open_store(milvus_uri)
    store.limits = replace(store.limits, one_shard_clips=30)
    layout = replace(LAYOUT, dataset="growing")
    store.ensure(layout, clips=20)
    assert store.layout("growing").shards == 1
    ids = [f"c{i}" for i in range(20)]
    rng = np.random.default_rng(0)
    clips = [clip_row(c, f"class_{i % 3}", rng.normal(size=4), row=i) for i, c in enumerate(ids)]
    timeline = [part(c, k, S.TIME, float(k), rng.normal(size=4)) for c in ids for k in range(3)]
    crops = [part(c, k, S.BOX, [0, 0, 0.5, 0.5 + 0.1 * k], rng.normal(size=4)) for c in ids for k in range(2)]
    store.write_clips(layout, clips, timeline, crops)
    before = store.clip_matrix(layout), store.companions(layout, "timeline", ids), store.thumbnails(layout, ids)
    crops_before = store.companions(layout, "crops", ids)
    one = set(store.layout("growing").collections())
    assert len(one) == 4

    store.ensure(layout, clips=5)  # 25: still under the limit
    assert store.layout("growing").shards == 1
    store.ensure(layout, clips=20)  # 40: spread first
    grown = store.layout("growing")
    assert grown.shards == store.limits.shards > 1
    assert not any(store.client.has_collection(name) for name in one)
    assert all(store.client.has_collection(name) for name in grown.collections())
    after = store.clip_matrix(layout), store.companions(layout, "timeline", ids), store.thumbnails(layout, ids)
    assert after[0].table[S.CLIP_ID].tolist() == before[0].table[S.CLIP_ID].tolist()
    assert np.array_equal(after[0].vectors, before[0].vectors)
    assert np.array_equal(after[0].text_vectors, before[0].text_vectors)
    for c in ids:
        assert np.array_equal(after[1][c].vectors, before[1][c].vectors)
        assert np.array_equal(after[1][c].where, before[1][c].where)
        assert np.array_equal(store.companions(layout, "crops", [c])[c].vectors, crops_before[c].vectors)
    assert after[2] == before[2]
    assert store.count(layout) == store.count(layout, "vectors") == 20 and len({grown.shard_of(c) for c in ids}) > 1
    exact = store.exact_vectors(layout, ids)
    for i, c in enumerate(ids):
        assert np.allclose(exact[c][S.VECTOR], clips[i][S.VECTOR], atol=1e-6)
    hits = store.search(layout, before[0].vectors[:1], 1)
    assert hits[0][0][0] == before[0].table[S.CLIP_ID].iloc[0]
    store.close()
    reopened = open_store(milvus_uri)
    assert reopened.layout("growing").shards == grown.shards and reopened.count(layout) == 20
    reopened.close()


def test_a_large_first_job_and_a_caller_that_does_not_say_get_every_shard(milvus_uri):
    store = open_store(milvus_uri)
    store.ensure(replace(LAYOUT, dataset="large"), clips=store.limits.one_shard_clips + 1)
    store.ensure(replace(LAYOUT, dataset="unsaid"))
    assert store.layout("large").shards == store.layout("unsaid").shards == store.limits.shards > 1
    store.close()


def test_a_spread_killed_part_way_leaves_the_dataset_whole_and_no_rows_behind(milvus_uri, monkeypatch):
    """Killed while its rows are copied into the shards, a dataset still reads whole from its one collection a kind;
    the half-made shards go at the next `ensure` and at `drop`, and a new dataset of that name starts empty."""
    store = open_store(milvus_uri)
    store.limits = replace(store.limits, one_shard_clips=30)
    layout = replace(LAYOUT, dataset="killed")
    store.ensure(layout, clips=20)
    ids = [f"c{i}" for i in range(20)]
    store.write_clips(layout, [clip_row(c, "x", row=i) for i, c in enumerate(ids)])

    def killed(_):
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "_record", killed)
    with pytest.raises(KeyboardInterrupt):
        store.ensure(layout, clips=20)
    monkeypatch.undo()
    sharded = replace(store.layout("killed"), shards=store.limits.shards)
    assert store.layout("killed").shards == 1 and store.count(layout) == 20
    assert any(store.client.has_collection(name) for name in sharded.collections())  # the half-made shards
    store.ensure(layout, clips=1)
    assert not any(store.client.has_collection(name) for name in sharded.collections())
    store.ensure(layout, clips=20)  # the spread again, whole
    assert store.layout("killed").shards == store.limits.shards and store.count(layout) == 20
    store.drop(layout)
    names = set(store.client.list_collections())
    assert not names & set(replace(sharded, shards=1).collections() + sharded.collections())
    store.ensure(layout, clips=100)
    assert store.count(layout) == 0
    store.close()
