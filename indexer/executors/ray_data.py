"""The Ray executor: the same stages on a Ray cluster, through Ray Data.

    source videos -> decode_group in CPU tasks (one video each) -> embed_rows on an actor pool
    (`map_batches`, one GPU per actor where the cluster has GPUs) -> write_rows on writer actors

Rows travel between stages as pickled objects (a decoded clip, a batch of rows, an outcome): the stages
stay plain functions over Python objects, and Ray Data only moves and schedules them. Every worker
writes to one Milvus server, so a Milvus Lite file (one process at a time) is refused up front.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from indexer.embedders import Embedder, load_embedder
from indexer.executors import ExecutorUnavailable, Job
from indexer.executors.stages import FrameCache, Outcome, Rows, embed_rows, write_rows
from indexer.video import SampledClip, SamplingConfig
from taxonomy_core.store import Store, is_server, open_store

log = logging.getLogger(__name__)

# Passed to every Ray worker so that it imports the same code and stays offline like this process.
FORWARDED_ENV = ("PYTHONPATH", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class RayExecutor:
    def __init__(self, address: str | None = None, embed_actors: int | None = None):
        try:
            import ray  # noqa: F401
            import ray.data  # noqa: F401
        except ImportError as e:
            raise ExecutorUnavailable(
                f"--executor ray needs Ray Data: pip install -e '.[ray]' (on every machine of the cluster): {e}"
            ) from e
        self.address, self.embed_actors = address, embed_actors

    def check(self, uri: str) -> None:
        if not is_server(uri):
            raise ExecutorUnavailable(
                f"--executor ray writes from many processes, and the Milvus Lite file {uri} admits one; "
                "pass a Milvus server with --uri http://HOST:19530 (every Ray worker must reach it)"
            )

    def prepare(self, model: str, decoders_embed: bool) -> None:
        """Nothing: Ray starts its workers."""

    def run(self, job: Job, embedder: Embedder, store: Store) -> Iterator[Outcome]:
        self.check(job.uri)
        connect(self.address)
        for batch in build_dataset(job, self.embed_actors).iter_batches(batch_size=None, batch_format="numpy"):
            for payload in batch["payload"]:
                yield pickle.loads(payload)


def runtime_env() -> dict[str, Any]:
    return {"env_vars": {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}}


def connect(address: str | None) -> None:
    """Join the cluster at `address` (or the one this process already joined, or a new local one)."""
    import ray

    if ray.is_initialized():
        return
    try:
        ray.init(address=address, runtime_env=runtime_env(), include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ExecutorUnavailable(f"cannot join the Ray cluster at {address or 'a new local one'}: {e}") from e
    ray.data.DataContext.get_current().enable_progress_bars = False


def build_dataset(job: Job, embed_actors: int | None = None):
    """The stages as a Ray Data pipeline; iterating it runs the job and yields pickled outcomes."""
    import ray
    from ray.data import ActorPoolStrategy

    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    actors = embed_actors or (gpus if gpus else max(1, cpus // 2))
    items = [{"video": video, "specs": pickle.dumps(specs)} for video, specs in job.groups.items()]
    return (
        ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        .flat_map(_decode, fn_kwargs={"sampling": _one_thread(job.sampling)}, num_cpus=1)
        .map_batches(
            _Embed,
            fn_constructor_kwargs={"job": job},
            batch_size=job.clips_per_write,
            batch_format="numpy",
            compute=ActorPoolStrategy(min_size=1, max_size=actors),
            num_gpus=1 if gpus else 0,
            num_cpus=1,
        )
        .map_batches(
            _Write,
            fn_constructor_kwargs={"job": job},
            batch_size=1,  # one embedded batch: it holds clips_per_write clips
            batch_format="numpy",
            compute=ActorPoolStrategy(size=1),
            num_cpus=0,  # waits on the server; must not take a CPU from the decoders
        )
    )


def _one_thread(sampling: SamplingConfig) -> SamplingConfig:
    """A decode task holds one CPU of the cluster: FFmpeg decodes on one thread there (unless asked otherwise)."""
    return sampling if sampling.decode_threads else replace(sampling, decode_threads=1)


def _decode(item: dict[str, Any], sampling: SamplingConfig) -> list[dict[str, bytes]]:
    from indexer.executors.stages import decode_group

    specs = pickle.loads(item["specs"])
    return [{"payload": pickle.dumps(result)} for result in decode_group(item["video"], specs, sampling)]


class _Embed:
    """An actor holding one model; clips in, one pickled `Rows` (plus the failures passed through) out."""

    def __init__(self, job: Job):
        self.job = job
        self.embedder = load_embedder(job.model, job.device, job.batch_size, job.precision)
        self.cache = FrameCache()  # frames of overlapping segments that reach this actor are embedded once

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [pickle.loads(p) for p in batch["payload"]]
        clips = [i for i in items if isinstance(i, SampledClip)]
        out = [i for i in items if not isinstance(i, SampledClip)]
        if clips:
            out.append(embed_rows(self.embedder, self.job.layout, clips, self.job.sampling, self.cache))
        return {"payload": _pickled(out)}


class _Write:
    """An actor holding one store client; `Rows` in, `Written` out, failures passed through."""

    def __init__(self, job: Job):
        self.job = job
        self.store = open_store(job.uri, job.token)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [pickle.loads(p) for p in batch["payload"]]
        out = [write_rows(self.store, self.job.layout, i) if isinstance(i, Rows) else i for i in items]
        return {"payload": _pickled(out)}


def _pickled(items: list) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = [pickle.dumps(i) for i in items]
    return out
