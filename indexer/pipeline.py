"""run_indexing: manifest -> validation -> resume -> an executor's decode -> embed -> write -> the report.

This module decides what to index (valid rows the store does not hold yet; changed labels are patched in
place) and reads back what the executor did (written batches, failed segments), whichever executor ran
the stages. Writes are idempotent upserts keyed by the clip id; a clip's row goes in only after its
timeline and crop rows, so a killed job resumes by embedding exactly the clips that are not yet there.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from indexer.decode_pool import default_workers
from indexer.embedders import DEFAULT_MODEL, Embedder, load_embedder
from indexer.executors import Job, load_executor
from indexer.validation import ValidationConfig, class_size_findings, validate
from indexer.video import SamplingConfig, SegmentFailure
from taxonomy_core import schema as S
from taxonomy_core.findings import Finding
from taxonomy_core.formats import Manifest, ReadOptions, read_manifest
from taxonomy_core.names import check_dataset_name
from taxonomy_core.precision import cpu_reduced
from taxonomy_core.schema import ClipSpec
from taxonomy_core.store import DatasetLayout, Store, StoreError, configured_token, open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexConfig:
    dataset: str
    model: str = DEFAULT_MODEL
    uri: str | None = None
    token: str | None = None
    device: str = "auto"
    batch_size: int | None = None  # images per model call; None: 128 on GPU, 8 on CPU
    precision: str = "auto"  # auto: bf16 on a GPU, float32 on a CPU; bf16: also on a CPU; fp32: exact everywhere
    workers: int | None = None  # decoding processes; None: `default_workers` for the model's device
    manifest_format: str = "auto"
    read: ReadOptions = ReadOptions()
    sampling: SamplingConfig = SamplingConfig()
    validation: ValidationConfig = ValidationConfig()
    prune: bool = False  # delete stored clips whose rows left the manifest
    clips_per_write: int = 32  # twice this many clips at most are lost, and re-embedded, if the job is killed
    executor: str = "local"  # "local" (this machine) or "ray" (a Ray cluster; writes need a Milvus server)
    ray_address: str | None = None  # None: the cluster this process is connected to, or a new local one


@dataclass(frozen=True)
class Failure:
    row: int
    video: str
    kind: str
    reason: str


@dataclass
class Progress:
    """Sent after every written batch; the CLI draws it, a notebook may log it."""

    done: int
    total: int
    frames: int
    elapsed: float

    @property
    def clips_per_s(self) -> float:
        return self.done / self.elapsed if self.elapsed else 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.elapsed if self.elapsed else 0.0

    @property
    def eta_s(self) -> float | None:
        return (self.total - self.done) / self.clips_per_s if self.done else None


@dataclass
class IndexReport:
    dataset: str
    model_id: str
    uri: str
    manifest: Manifest
    layout: DatasetLayout | None = None
    indexed: int = 0
    already_present: int = 0
    relabelled: int = 0
    stale: int = 0
    frames: int = 0
    failed: list[Failure] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @property
    def complete(self) -> bool:
        return not self.failed


def run_indexing(
    manifest_path: str | Path,
    config: IndexConfig,
    *,
    progress: Callable[[Progress], None] | None = None,
    store: Store | None = None,
    embedder: Embedder | None = None,
) -> IndexReport:
    """Index every valid row of a manifest that the store does not hold yet; report every other row."""
    timer = _Timer()
    with timer("read"):
        manifest = read_manifest(manifest_path, config.manifest_format, config.read)
    executor = load_executor(config.executor, config.ray_address)
    own_store = store is None
    store = store or open_store(config.uri, config.token)
    try:
        if store.layout(config.dataset) is None:  # a new dataset: its name must map to collections of its own
            check_dataset_name(config.dataset)
    except StoreError:
        if own_store:
            store.close()
        raise
    with timer("read"):
        # what this store refuses is a row error; class sizes count the rows indexed (below)
        validation = validate(manifest, config.validation, store.limits, sizes=False)
    report = IndexReport(
        config.dataset, config.model, store.uri, manifest, findings=list(validation.findings), timings=timer.totals
    )
    report.failed += [
        Failure(c.row, c.video, "invalid_annotation", validation.excluded[c.row])
        for c in manifest.clips
        if c.row in validation.excluded
    ]
    report.failed += [Failure(r, "", "invalid_annotation", f.message) for f in manifest.findings for r in f.rows]
    try:
        executor.check(store.uri)
        clips = validation.valid(manifest.clips)
        with timer("existing"):
            todo = _sync_existing(store, config, clips, report)
        if todo:
            if config.workers != 0:  # decoders to start (none where they decode in this process)
                cpu = not config.device.startswith("cuda")
                executor.prepare(config.model, decoders_embed=cpu and cpu_reduced(config.precision))
            embedder = embedder or load_embedder(config.model, config.device, config.batch_size, config.precision)
            report.model_id = embedder.model_id
            layout = _layout(embedder, config, manifest)
            _warn_if_resampled(report.layout, layout)
            store.ensure(layout, clips=len(todo))  # a small dataset keeps one collection a kind
            report.layout = layout
            job = _job(todo, embedder, layout, store, config)
            _follow(executor.run(job, embedder, store), job, report, progress)
            with timer("write"):
                store.flush()  # what a Lite file held back to write shard by shard
        failed = {f.row for f in report.failed}
        report.findings += class_size_findings([c for c in clips if c.row not in failed], config.validation)
    finally:
        if own_store:
            store.close()
    return report


def _layout(embedder: Embedder, config: IndexConfig, manifest: Manifest) -> DatasetLayout:
    return DatasetLayout(
        dataset=config.dataset,
        model_id=embedder.model_id,
        dim=embedder.dim,
        text_dim=embedder.text_dim if embedder.text_space == "semantic" else None,
        text_space=embedder.text_space,
        sampling=_sampling(embedder, config).record(),
        manifest=str(Path(manifest.path).resolve()),
        manifest_format=manifest.format,
    )


def _sampling(embedder: Embedder, config: IndexConfig) -> SamplingConfig:
    sampling = replace(config.sampling, image_size=embedder.image_size, region_size=embedder.region_size)
    if embedder.frames_per_clip:
        sampling = replace(sampling, frames_per_clip=embedder.frames_per_clip)
    return sampling


def _warn_if_resampled(stored: DatasetLayout | None, layout: DatasetLayout) -> None:
    if stored is not None and stored.sampling != layout.sampling:
        log.warning(
            "%s / %s was indexed with other sampling (%s); clips added now use %s. Drop it (`indexer drop`) and "
            "index again for companions made one way",
            layout.dataset, layout.model_id, stored.sampling, layout.sampling,
        )  # fmt: skip


def _sync_existing(store: Store, config: IndexConfig, clips: list[ClipSpec], report: IndexReport) -> list[ClipSpec]:
    """Clips already stored keep their vectors; changed labels/splits/rows are patched in place."""
    layout = store.layout(config.dataset, config.model)
    if layout is None:
        return clips
    report.layout = layout
    stored = {r[S.CLIP_ID]: r for r in store.clip_records(layout, [S.CLIP_ID, *S.SCALAR_FIELDS])}
    todo, patches = [], []
    for clip in clips:
        if clip.clip_id not in stored:
            todo.append(clip)
            continue
        report.already_present += 1
        wanted = clip.scalars()
        have = stored[clip.clip_id]
        if any(_canonical(have.get(k)) != _canonical(v) for k, v in wanted.items()):
            patches.append({S.CLIP_ID: clip.clip_id, **wanted})
    if patches:
        store.update_clips(layout, patches)
        report.relabelled = len(patches)
    stale = sorted(stored.keys() - {c.clip_id for c in clips})
    report.stale = len(stale)
    if stale and config.prune:
        store.delete_clips(layout, stale)
    return todo


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _job(todo: list[ClipSpec], embedder: Embedder, layout: DatasetLayout, store: Store, config: IndexConfig) -> Job:
    groups: dict[str, list[ClipSpec]] = defaultdict(list)
    for clip in sorted(todo, key=lambda c: (c.video, c.start or 0.0)):
        groups[clip.video].append(clip)
    return Job(
        groups=dict(groups),
        sampling=_sampling(embedder, config),
        layout=layout,
        model=config.model,
        device=config.device,
        batch_size=config.batch_size,
        precision=config.precision,
        uri=store.uri,
        token=config.token if config.token is not None else configured_token(store.uri),  # for remote writers
        clips_per_write=config.clips_per_write,
        workers=config.workers if config.workers is not None else default_workers(embedder.device),
    )


def _follow(outcomes, job: Job, report: IndexReport, progress: Callable[[Progress], None] | None) -> None:
    """Fold an executor's outcomes into the report, and tell `progress` after each write."""
    started = time.perf_counter()
    failed = 0
    for outcome in outcomes:
        if isinstance(outcome, SegmentFailure):
            _record_failure(outcome, report)
            failed += 1
            continue
        report.indexed += outcome.clips
        report.frames += outcome.images
        for stage, seconds in outcome.seconds.items():
            report.timings[stage] += seconds
        if progress:
            progress(Progress(report.indexed + failed, job.segments, report.frames, time.perf_counter() - started))
    if progress:
        progress(Progress(report.indexed + failed, job.segments, report.frames, time.perf_counter() - started))


def _record_failure(failure: SegmentFailure, report: IndexReport) -> None:
    spec = failure.spec
    report.failed.append(Failure(spec.row, spec.video, failure.kind, failure.reason))
    report.findings.append(
        Finding(
            failure.kind,
            "error",
            f"row {spec.row}: {failure.reason}",
            rows=(spec.row,),
            labels=(spec.label,),
            videos=(spec.video,),
            action=f"replace or repair the video of row {spec.row}, or remove the row: it is not indexed",
        )
    )


class _Timer:
    """Wall time per stage, summed over the job (shown in the summary and the benchmark)."""

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.totals[stage] += time.perf_counter() - t0
