"""The local executor: decoding in worker processes (decode_pool), the model and the writes in this process; a worker
ahead of the model embeds some clips too, where its outputs are the same bits (`Embedder.for_decoders`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from indexer.decode_pool import decode_all, start_decoder_server
from indexer.embedders import Embedder, model_modules
from indexer.executors import ExecutorUnavailable, Job
from indexer.executors.stages import FrameCache, Offload, Outcome, embed_rows, write_rows
from indexer.video import SampledClip, SegmentFailure
from taxonomy_core.store import Store


class LocalExecutor:
    def __init__(self, address: str | None = None):
        if address:
            raise ExecutorUnavailable(f"--ray-address {address} needs --executor ray; the local executor runs here")

    def check(self, uri: str) -> None:
        """Any store: a Lite file or a server."""

    def prepare(self, model: str, decoders_embed: bool) -> None:
        """The decoders' fork server starts importing now, beside the model's loading."""
        start_decoder_server(model_modules(model) if decoders_embed else ())

    def run(self, job: Job, embedder: Embedder, store: Store) -> Iterator[Outcome]:
        """Decode in workers; embed a batch here while the previous one is written by a writer thread, so a
        fast model (a GPU) does not wait on Milvus. A killed job loses at most two batches, and on a Lite file
        what the store held back to write shard by shard (`StoreLimits.staged_bytes`); a rerun resumes."""
        cache = FrameCache()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="milvus-writer") as writer:
            writing: Future | None = None
            for item in self._batches(job, embedder):
                if isinstance(item, SegmentFailure):
                    yield item
                    continue
                batch, waited = item
                rows = embed_rows(embedder, job.layout, batch, job.sampling, cache)
                rows.seconds["decode_wait"] = waited
                if writing is not None:
                    yield writing.result()
                writing = writer.submit(write_rows, store, job.layout, rows)
            if writing is not None:
                yield writing.result()

    @staticmethod
    def _batches(job: Job, embedder: Embedder) -> Iterator[SegmentFailure | tuple[list[SampledClip], float]]:
        """Decoded clips in batches, with the seconds spent waiting on the decoders for them; failures at once."""
        batch: list[SampledClip] = []
        waited, limit, left = 0.0, 1, job.segments
        model = embedder.for_decoders()
        offload = Offload(model, job.sampling, modules=("torch", type(embedder).__module__)) if model else None
        results = decode_all(job.groups, job.sampling, job.workers, offload)
        while True:
            started = time.perf_counter()
            result = next(results, None)
            waited += time.perf_counter() - started
            if result is None:
                break
            if isinstance(result, SegmentFailure):
                left -= 1
                yield result
                continue
            batch.append(result)
            left -= 1
            # ~16 model calls' images: where every call runs at one batch shape, the last one's padding stays small.
            # The first batches 1, 2, 4, ... clips: the model starts on the first clip decoded, and each next batch
            # is decoded while the one before is embedded (the decoders are ~2x faster than the model on a CPU). Near
            # the end, a batch holds at most half the clips still to come that this process must embed, so that it
            # does not take on more than the decoders, which embed clips too (`Offload`), take on beside it.
            todo = sum(c.outputs is None for c in batch)
            if len(batch) >= limit or sum(len(c.images) for c in batch) >= 16 * embedder.batch_size or todo > left // 2:
                yield batch, waited
                batch, waited, limit = [], 0.0, min(2 * limit, job.clips_per_write)
        if batch:
            yield batch, waited
