"""Shared torch plumbing: device choice, mixed precision, batching, and per-clip pooling of frame vectors."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from indexer.embedders import Vectors


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for but torch sees no CUDA GPU; use --device cpu")
    return device


def default_batch_size(device: str) -> int:
    return 128 if device.startswith("cuda") else 16


def autocast(device: str):
    """fp16 (bf16 where supported) on CUDA; exact fp32 on CPU, where autocast only slows convolutions."""
    if device.startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


class FrameEmbedder:
    """An image model used per frame: a clip's vector is the mean of its frames' outputs.

    Subclasses implement `_forward` (a normalised image batch -> per-image arrays) and `_vectors`
    (arrays, per image or pooled per clip -> unit vectors).
    """

    frames_per_clip: int | None = None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int
    device: str
    batch_size: int

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def _vectors(self, *arrays: np.ndarray) -> Vectors:
        raise NotImplementedError

    def embed_images(self, images: np.ndarray) -> Vectors:
        return self._vectors(*self._run(images))

    def embed_clips(self, clips: list[np.ndarray]) -> Vectors:
        bounds = np.cumsum([0] + [len(c) for c in clips])
        rows = [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        return self.embed_batch(np.concatenate(clips), rows)[1]

    def embed_batch(self, images: np.ndarray, clip_rows: list[np.ndarray]) -> tuple[Vectors, Vectors]:
        """Each image once; a clip's vector pools the outputs of its rows (frames shared with the timeline)."""
        arrays = self._run(images)
        pooled = [np.stack([a[rows].mean(axis=0) for rows in clip_rows]) for a in arrays]
        return self._vectors(*arrays), self._vectors(*pooled)

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        outputs: list[list[np.ndarray]] = []
        with torch.inference_mode(), autocast(self.device):
            for i in range(0, len(images), self.batch_size):
                batch = self._prepare(images[i : i + self.batch_size])
                outputs.append([o.float().cpu().numpy() for o in self._forward(batch)])
        return [np.concatenate(parts) for parts in zip(*outputs)]

    def _prepare(self, images: np.ndarray) -> torch.Tensor:
        """uint8 [B,H,W,3] -> normalised float [B,3,S,S] on the device."""
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False
            )
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)
