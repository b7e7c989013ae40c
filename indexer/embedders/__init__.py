"""Embedder protocol and registry: a model name maps to a backend module, imported only when asked for."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

DEFAULT_MODEL = "clip:ViT-B-32/laion2b_s34b_b79k"
OFFLINE_MODEL = "effnet-lite0"

REGISTRY: dict[str, str] = {
    "clip": "indexer.embedders.clip:ClipEmbedder",
    "vivit": "indexer.embedders.vivit:VivitEmbedder",
    "effnet-lite0": "indexer.embedders.effnet:EffnetLiteEmbedder",
}

TextSpace = Literal["visual", "semantic"]


class EmbedderUnavailable(RuntimeError):
    """A model cannot be built here (unknown name, weights not reachable, missing package)."""


@dataclass
class Vectors:
    """Unit vectors per input: `visual` always; `semantic` when text lives in a separate space."""

    visual: np.ndarray
    semantic: np.ndarray | None = None


class Embedder(Protocol):
    model_id: str
    dim: int
    image_size: int
    frames_per_clip: int | None  # fixed by a video-native model, else None (sampling decides)
    text_space: TextSpace | None  # "visual": texts share the clip space; "semantic": a separate one
    text_dim: int | None
    device: str
    precision: str  # auto, fp32 or bf16: see taxonomy_core.precision.model_dtype
    batch_size: int
    # Short side of the one pass over a clip's middle frame whose feature map gives every crop's vector
    # (see `embed_regions`); None: crops are cut from the frame and embedded as images.
    region_size: int | None
    # A clip's vector pools its frames' outputs (`frame_outputs`, `from_outputs`), so a frame that overlapping
    # clips share is embedded once per job; False for a video-native model, whose clip vector sees them together.
    pools_frames: bool

    def embed_images(self, images: np.ndarray) -> Vectors: ...

    def embed_clips(self, clips: list[np.ndarray]) -> Vectors: ...

    def embed_batch(self, images: np.ndarray, clip_rows: list[np.ndarray]) -> tuple[Vectors, Vectors]:
        """Per-image vectors for `images`, and one vector per clip from its rows of `images`."""
        ...

    def frame_outputs(self, images: np.ndarray) -> list[np.ndarray]:
        """The model's per-image arrays, before they become vectors. Only where `pools_frames`."""
        ...

    def from_outputs(self, outputs: list[np.ndarray], clip_rows: list[np.ndarray]) -> tuple[Vectors, Vectors]:
        """`embed_batch` from `frame_outputs` of its images. Only where `pools_frames`."""
        ...

    def embed_regions(self, frames: list[np.ndarray], boxes: np.ndarray) -> Vectors:
        """One vector per (frame, box), frame-major: each box [x0, y0, x1, y1] (relative) pooled from the
        feature map of one pass over the whole frame. Only where `region_size` is set."""
        ...

    def embed_texts(self, texts: list[str]) -> np.ndarray: ...

    def for_decoders(self) -> bytes | None:
        """The model, pickled for a decoding process to run where its outputs are the same bits as here (per-image
        outputs, region passes); None where it must stay in this process."""
        ...


def parse_model(spec: str) -> tuple[str, str | None]:
    family, _, arg = spec.partition(":")
    return family, (arg or None)


def model_modules(spec: str) -> tuple[str, ...]:
    """The modules a model spec's embedder runs on (torch, its own), named without importing them."""
    family, _ = parse_model(spec)
    return ("torch", REGISTRY[family].partition(":")[0]) if family in REGISTRY else ("torch",)


def load_embedder(spec: str, device: str = "auto", batch_size: int | None = None, precision: str = "auto") -> Embedder:
    """Build the embedder a model spec names, e.g. `clip:ViT-B-32/laion2b_s34b_b79k` or `effnet-lite0`.

    `batch_size` (images per model call) defaults to 128 on a GPU and 8 on a CPU, where larger
    batches fall out of cache and run slower (measured in docs/benchmarks.md). `precision` (auto, fp32,
    bf16): auto runs the model in bfloat16 on a GPU, in float32 on a CPU (taxonomy_core.precision).
    """
    family, arg = parse_model(spec)
    if family not in REGISTRY:
        raise EmbedderUnavailable(f"unknown model {spec!r}; available: {', '.join(_examples())}")
    module_name, _, class_name = REGISTRY[family].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    embedder = cls(arg, device=device, batch_size=batch_size)
    embedder.precision = precision
    return embedder


def _examples() -> list[str]:
    return [DEFAULT_MODEL, "clip:ARCH/PRETRAINED_TAG_OR_CHECKPOINT", "vivit:HF_NAME_OR_PATH", OFFLINE_MODEL]
