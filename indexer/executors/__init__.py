"""Executors: how the stages of `indexer.executors.stages` run, in this process or on a Ray cluster.

An executor gets a `Job` (what to decode and where to write it, already validated and with stored clips
left out) and yields an `Outcome` per written batch or failed segment. Validation, resume, relabelling
and the failure report stay in `indexer.pipeline`, so every executor shares them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from indexer.embedders import Embedder
from indexer.executors.stages import Outcome, Written
from indexer.video import SamplingConfig
from taxonomy_core.schema import ClipSpec

if TYPE_CHECKING:  # the decoding processes import this module: no Milvus client, no pandas there
    from taxonomy_core.store.base import DatasetLayout, Store

REGISTRY: dict[str, str] = {
    "local": "indexer.executors.local:LocalExecutor",
    "ray": "indexer.executors.ray_data:RayExecutor",
}


@dataclass(frozen=True)
class Job:
    """One indexing run's work, in plain data so that it can travel to other machines."""

    groups: dict[str, list[ClipSpec]]  # source video -> its segments still to index
    sampling: SamplingConfig
    layout: DatasetLayout
    model: str
    device: str
    batch_size: int | None
    precision: str
    uri: str
    token: str | None
    clips_per_write: int
    workers: int  # decoding processes (local) or concurrent decode tasks (Ray)

    @property
    def segments(self) -> int:
        return sum(len(specs) for specs in self.groups.values())


class Executor(Protocol):
    def check(self, uri: str) -> None:
        """Raise ExecutorUnavailable before any work if this executor cannot write to the store at `uri`."""
        ...

    def prepare(self, model: str, decoders_embed: bool) -> None:
        """Start, before the model loads, what takes time to start (the local decoders' fork server; `decoders_embed`:
        the decoders will run the model too, see `Embedder.for_decoders`)."""
        ...

    def run(self, job: Job, embedder: Embedder, store: Store) -> Iterator[Outcome]:
        """Decode, embed and write every segment of `job`; one `Written` per batch, one failure per segment."""
        ...


class ExecutorUnavailable(RuntimeError):
    """An executor cannot run here (unknown name, its extra not installed, no cluster, a store it cannot use)."""


def load_executor(name: str, address: str | None = None) -> Executor:
    if name not in REGISTRY:
        raise ExecutorUnavailable(f"unknown executor {name!r}; available: {', '.join(REGISTRY)}")
    module_name, _, class_name = REGISTRY[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(address=address)


__all__ = ["REGISTRY", "Executor", "ExecutorUnavailable", "Job", "Outcome", "Written", "load_executor"]
