"""What the audit at 10^5-10^6 clips rests on, at test size: the codec, clustered k-NN and its measured recall,
UMAP on the shared neighbours, and an audit through a store whose companions are read shard by shard."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from auditor.checks import build_checks, run_checks
from auditor.context import AuditContext
from auditor.knn import knn, neighbours, sample_recall
from auditor.projection import project
from taxonomy_core.store import open_store
from taxonomy_core.store.codec import RowCodec, dequantize, quantize, to_text

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
from synthetic import StoreShape, synthetic_dataset, write_synthetic_store  # noqa: E402


def clustered(n: int, dim: int = 32, classes: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(classes, dim))[rng.integers(0, classes, n)] + 0.7 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_int8_rows_round_trip_with_their_floats():
    rng = np.random.default_rng(0)
    codec = RowCodec((16, 4), floats=2)
    vectors, floats = [rng.normal(size=(5, 16)), rng.normal(size=(5, 4))], rng.normal(size=(5, 2))
    raw, counts = codec.rows_in([to_text(codec.pack(vectors, floats)[:2]), to_text(codec.pack(vectors, floats)[2:])])
    decoded, decoded_floats = codec.unpack(raw)
    assert counts == [2, 3] and np.allclose(decoded_floats, floats.astype(np.float32))
    for got, want in zip(decoded, vectors):
        assert np.abs(got - want).max() <= np.abs(want).max(axis=1).max() / 254 + 1e-6  # half a step at most
    codes, scale = quantize(np.zeros((1, 3)))
    assert scale[0] == 0 and not dequantize(codes, scale).any()


@pytest.mark.parametrize("bits, tolerance", [(4, 0.02), (2, 0.06)])
def test_fewer_bits_are_rotated_codes_whose_cosines_are_unbiased(bits, tolerance):
    rng = np.random.default_rng(0)
    features = np.maximum(rng.normal(size=(400, 1280)), 0) ** 2 * rng.gamma(0.5, size=1280)  # a few coordinates rule
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    codec = RowCodec((1280, 384), floats=4, bits=bits)
    raw = codec.pack([features, rng.normal(size=(400, 384))], rng.random((400, 4)))
    assert raw.shape == (400, 4 * 6 + (1280 + 384) * bits // 8)
    (visual, _), _ = codec.unpack(raw)
    prototype = unit.mean(axis=0) / np.linalg.norm(unit.mean(axis=0))
    error = visual @ prototype - unit @ prototype
    assert np.abs(error).max() < tolerance and abs(error.mean()) < tolerance / 10  # no shrink towards 0


def test_small_sets_are_exact_and_large_ones_clustered_with_measured_recall():
    x = clustered(6000)
    small = neighbours(x[:500], 10)
    assert small.method == "exact" and small.recall is None
    big = neighbours(x, 10, exact_max=1000)
    exact_idx, exact_sim = knn(x, 10)
    true_recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(big.idx, exact_idx)])
    assert big.method == "ivf" and big.recall >= 0.95 and true_recall >= 0.95
    assert abs(big.recall - true_recall) < 0.03  # the sampled recall is an honest estimate
    assert not (big.idx == np.arange(len(x))[:, None]).any()  # never one's own neighbour
    assert (np.diff(big.sim, axis=1) <= 1e-6).all() and np.isclose(big.sim[:, 0], exact_sim[:, 0]).mean() > 0.97


def test_sample_recall_counts_found_neighbours():
    x = clustered(300)
    idx, _ = knn(x, 5)
    rows = np.arange(0, 300, 7)
    assert sample_recall(x, idx, rows) == 1.0
    assert sample_recall(x, np.roll(idx, 1, axis=0), rows) < 0.2


def test_umap_runs_on_the_shared_neighbours():
    x = clustered(600, classes=4)
    shared = knn(x, 10)
    points = project(x, seed=0, neighbours=shared)
    assert points.shape == (600, 2) and np.isfinite(points).all()
    assert np.array_equal(points, project(x, seed=0, neighbours=shared))  # seeded


def test_map_above_max_fit_places_every_point_beside_its_neighbours():
    """Above max_fit UMAP lays out a sample; the others go where their shared neighbours are: each lands among its
    class (nearer its own class's centre on the map than any other class's), none is left unplaced."""
    x = clustered(1200, classes=4)
    shared = knn(x, 10)
    points = project(x, seed=0, max_fit=400, neighbours=shared)
    assert points.shape == (1200, 2) and np.isfinite(points).all()
    rng = np.random.default_rng(0)  # clustered()'s draws: the centres, then each point's class
    rng.normal(size=(4, 32))
    labels = rng.integers(0, 4, 1200)
    centres = np.stack([np.median(points[labels == c], axis=0) for c in range(4)])
    nearest = np.linalg.norm(points[:, None] - centres[None], axis=2).argmin(axis=1)
    assert (nearest == labels).mean() > 0.95
    assert np.array_equal(points, project(x, seed=0, max_fit=400, neighbours=shared))  # seeded


@pytest.fixture
def synthetic_store(milvus_uri):
    planted = synthetic_dataset(300, dim=64, classes=6, mislabel_rate=0.02, copy_rate=0.02)
    shape = StoreShape(dim=64, text_dim=16, loose_rate=0.03, small_rate=0.03)
    store = open_store(milvus_uri)
    made = write_synthetic_store(store, planted, shape, batch=32)
    yield store, planted, made
    store.close()


def test_audit_through_a_store_reads_every_clip_once_and_finds_planted_defects(synthetic_store):
    store, planted, made = synthetic_store
    ctx = AuditContext.from_store(store, made.layout, config=planted.context.config)
    assert len(ctx.clips) == 300 and ctx.layout.shards == 1  # the caller's layout, as built
    seen = [i for i, _ in ctx.each_with_parts("crops", "timeline")]
    assert sorted(seen) == list(range(300))
    results = {r.name: r for r in run_checks(ctx, build_checks(["temporal", "spatial", "mislabels"]))}
    loose = {int(ctx.rows[i]) for i in made.loose}
    small = {int(ctx.rows[i]) for i in made.small}
    found = {name: {row for f in results[name].findings for row in f.rows} for name in ("temporal", "spatial")}
    assert len(loose & found["temporal"]) >= 0.8 * len(loose) and len(small & found["spatial"]) >= 0.8 * len(small)
    assert len(results["temporal"].clips) == len(results["spatial"].clips) == 300


def test_blocked_top_k_equals_a_full_sort_across_block_edges():
    """The search check's in-memory search (Lite searches by brute force too) scans the vectors in blocks."""
    from auditor.search import top_k

    x = clustered(2500)
    queries = np.concatenate([x[:3], clustered(4, classes=2)])
    for block in (1, 7, 1000, 10_000):
        got = top_k(x, queries, 12, block=block)
        for q, hits in zip(queries, got):
            scores = x @ q
            want = np.argsort(-scores, kind="stable")[:12]
            assert [i for i, _ in hits] == want.tolist()
            assert [s for _, s in hits] == pytest.approx(scores[want].tolist())
