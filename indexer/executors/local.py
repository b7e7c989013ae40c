"""The local executor: decoding in worker processes (decode_pool), the model and the writes in this process."""

from __future__ import annotations

import time
from collections.abc import Iterator

from indexer.decode_pool import decode_all
from indexer.embedders import Embedder
from indexer.executors import ExecutorUnavailable, Job
from indexer.executors.stages import FrameCache, Outcome, embed_rows, write_rows
from indexer.video import SampledClip, SegmentFailure
from taxonomy_core.store import Store


class LocalExecutor:
    def __init__(self, address: str | None = None):
        if address:
            raise ExecutorUnavailable(f"--ray-address {address} needs --executor ray; the local executor runs here")

    def check(self, uri: str) -> None:
        """Any store: a Lite file or a server."""

    def run(self, job: Job, embedder: Embedder, store: Store) -> Iterator[Outcome]:
        batch: list[SampledClip] = []
        cache = FrameCache()
        waited = 0.0
        results = decode_all(job.groups, job.sampling, job.workers)
        while True:
            started = time.perf_counter()
            result = next(results, None)
            waited += time.perf_counter() - started
            if result is None:
                break
            if isinstance(result, SegmentFailure):
                yield result
                continue
            batch.append(result)
            if len(batch) >= job.clips_per_write or sum(len(c.images) for c in batch) >= 4 * embedder.batch_size:
                yield self._flush(batch, embedder, store, job, cache, waited)
                batch, waited = [], 0.0
        if batch:
            yield self._flush(batch, embedder, store, job, cache, waited)

    @staticmethod
    def _flush(batch: list[SampledClip], embedder: Embedder, store: Store, job: Job, cache: FrameCache, waited: float):
        rows = embed_rows(embedder, job.layout, batch, job.sampling, cache)
        rows.seconds["decode_wait"] = waited
        return write_rows(store, job.layout, rows)
