"""Shared torch plumbing: device choice, mixed precision, batching, and per-clip pooling of frame vectors."""

from __future__ import annotations

import contextlib
import pickle

import numpy as np
import torch
import torch.nn.functional as F

from indexer.embedders import Vectors
from taxonomy_core.precision import model_dtype


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for but torch sees no CUDA GPU; use --device cpu")
    return device


def default_batch_size(device: str) -> int:
    """128 on a GPU; 8 on a CPU, where a larger batch's feature maps fall out of cache (EfficientNet-Lite0 with its
    fused convolutions: 6.3 ms an image at 8 against 6.7 at 16 in bf16, 14.5 against 15.4 in float32)."""
    return 128 if device.startswith("cuda") else 8


def autocast(device: str, precision: str = "auto"):
    """The model's reduced precision where it runs fast (taxonomy_core.precision.model_dtype), else exact fp32."""
    dtype = model_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def region_shape(height: int, width: int, short: int, stride: int) -> tuple[int, int]:
    """The whole frame scaled to `short` on its short side, each side a multiple of the model's stride."""
    scale = short / min(height, width)
    return tuple(max(stride, round(side * scale / stride) * stride) for side in (height, width))


def region_weights(boxes: np.ndarray, size: int, axis: int) -> torch.Tensor:
    """[K, size]: how much of each feature-map cell along one axis (0: x, 1: y) each box covers."""
    lo, hi = boxes[:, axis, None] * size, boxes[:, axis + 2, None] * size
    cells = np.arange(size)[None]
    return torch.from_numpy(np.clip(np.minimum(hi, cells + 1) - np.maximum(lo, cells), 0, None).astype(np.float32))


def pool_regions(feature_map: torch.Tensor, boxes: np.ndarray) -> torch.Tensor:
    """[B, C, h, w] -> [B * K, C]: the area-weighted mean of the cells under each of K relative boxes."""
    b, c, h, w = feature_map.shape
    wy = region_weights(boxes, h, 1).to(feature_map.device)
    wx = region_weights(boxes, w, 0).to(feature_map.device)
    pooled = torch.einsum("bchw,kh,kw->bkc", feature_map.float(), wy, wx)
    area = (wy.sum(1) * wx.sum(1)).clamp_min(1e-6)
    return (pooled / area[None, :, None]).reshape(b * len(boxes), c)


def padded(images: np.ndarray, size: int) -> np.ndarray:
    """`images` with black images appended up to `size`."""
    if len(images) >= size:
        return images
    return np.concatenate([images, np.zeros((size - len(images), *images.shape[1:]), images.dtype)])


class FrameEmbedder:
    """An image model used per frame: a clip's vector is the mean of its frames' outputs.

    Subclasses implement `_forward` (a normalised image batch -> per-image arrays) and `_vectors`
    (arrays, per image or pooled per clip -> unit vectors). A convolutional model that also sets
    `region_size` and implements `_feature_map` and `_head` gets crop vectors from one pass per frame.
    """

    frames_per_clip: int | None = None
    region_size: int | None = None
    pools_frames: bool = True
    region_stride: int = 32
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int
    device: str
    batch_size: int
    precision: str = "auto"  # auto, fp32 or bf16 (taxonomy_core.precision); load_embedder sets it

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
        return self.from_outputs(self.frame_outputs(images), clip_rows)

    def frame_outputs(self, images: np.ndarray) -> list[np.ndarray]:
        return self._run(images)

    def from_outputs(self, outputs: list[np.ndarray], clip_rows: list[np.ndarray]) -> tuple[Vectors, Vectors]:
        pooled = [np.stack([a[rows].mean(axis=0) for rows in clip_rows]) for a in outputs]
        return self._vectors(*outputs), self._vectors(*pooled)

    def _feature_map(self, batch: torch.Tensor) -> torch.Tensor:
        """A normalised image batch -> the last spatial feature map [B, C, h, w]."""
        raise NotImplementedError

    def _head(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Pooled features [N, C] -> the same per-image arrays as `_forward`."""
        raise NotImplementedError

    def embed_regions(self, frames: list[np.ndarray], boxes: np.ndarray) -> Vectors:
        """Crop vectors pooled from one pass over each whole frame, frames of one shape batched together (one at a
        time where the batch shape is fixed: see `fixed_shape`)."""
        if self.region_size is None:
            raise NotImplementedError(f"{type(self).__name__} embeds crops as images (region_size is None)")
        shapes = [region_shape(*f.shape[:2], self.region_size, self.region_stride) for f in frames]
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, shape in enumerate(shapes):
            by_shape.setdefault(shape, []).append(i)
        per_frame: dict[int, list[np.ndarray]] = {}
        fixed, pads = self.fixed_shape(), self._pads()
        with torch.inference_mode(), self._context():
            for shape, members in by_shape.items():
                per_call = 1 if fixed else max(1, self.batch_size * self.image_size**2 // (shape[0] * shape[1]))
                for start in range(0, len(members), per_call):
                    chunk = members[start : start + per_call]
                    parts = [self._prepare(frames[i][None], shape) for i in chunk]
                    batch = torch.cat(parts + [torch.zeros_like(parts[0])] * (per_call - len(chunk) if pads else 0))
                    pooled = pool_regions(self._feature_map(batch)[: len(chunk)], boxes)
                    arrays = [a.float().cpu().numpy().reshape(len(chunk), len(boxes), -1) for a in self._head(pooled)]
                    per_frame.update((i, [a[j] for a in arrays]) for j, i in enumerate(chunk))
        return self._vectors(*(np.concatenate(parts) for parts in zip(*(per_frame[i] for i in range(len(frames))))))

    def for_decoders(self) -> bytes | None:
        """This embedder's model, pickled for the decoding processes to run while the model process is behind
        (`indexer.executors.stages.Offload`); only where every model call has one shape (`fixed_shape`), so that an
        image's outputs are the same bits in either process. None: the model runs here only."""
        if not self.pools_frames or not self.fixed_shape():
            return None
        return pickle.dumps(PickledModel(self))

    def fixed_shape(self) -> bool:
        """Reduced precision on a CPU: every model call at one batch shape (the last batch padded, a region pass one
        frame at a time), so that a frame's vector cannot depend on which frames share its batch: oneDNN picks
        kernels by shape, and bfloat16 rounding would turn another summation order into a visible change."""
        return not self.device.startswith("cuda") and model_dtype(self.device, self.precision) is not None

    def _pads(self) -> bool:
        """Every call of the image model at one batch shape (a region pass: one for each frame shape), the last batch
        padded: on a CPU in reduced precision for the bits (`fixed_shape`); on a GPU because cuDNN sets up each input
        shape it meets, for ~1-4 s on an H200, where a batch of 128 takes ~13 ms (docs/benchmarks.md, issue 20)."""
        return self.fixed_shape() or self.device.startswith("cuda")

    def _context(self):
        """Where the model runs in reduced precision: autocast (an embedder that casts its own weights overrides it)."""
        return autocast(self.device, self.precision)

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        outputs: list[list[np.ndarray]] = []
        pads = self._pads()
        with torch.inference_mode(), self._context():
            for i in range(0, len(images), self.batch_size):
                chunk = images[i : i + self.batch_size]
                batch = self._prepare(padded(chunk, self.batch_size) if pads else chunk)
                outputs.append([o.float().cpu().numpy()[: len(chunk)] for o in self._forward(batch)])
        return [np.concatenate(parts) for parts in zip(*outputs)]

    def _prepare(self, images: np.ndarray, size: tuple[int, int] | None = None) -> torch.Tensor:
        """uint8 [B,H,W,3] -> normalised float [B,3,h,w] on the device; (h, w) defaults to the model's square."""
        size = size or (self.image_size, self.image_size)
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


class PickledModel:
    """An embedder's model in a decoding process (`FrameEmbedder.for_decoders`): per-image outputs of a clip's
    frames, and the region pass over its middle frame. Unpickled, it runs one torch thread: the process shares the
    machine with the model process."""

    def __init__(self, embedder: FrameEmbedder):
        self.embedder = embedder

    def frames(self, images: np.ndarray) -> list[np.ndarray]:
        _one_thread()
        return self.embedder.frame_outputs(images)

    def regions(self, frame: np.ndarray, boxes: np.ndarray) -> Vectors:
        _one_thread()
        return self.embedder.embed_regions([frame], boxes)

    def __setstate__(self, state: dict) -> None:
        torch.set_num_threads(1)
        self.__dict__.update(state)


def _one_thread() -> None:
    """One torch thread in the thread that runs the model. OpenMP keeps the thread count per thread: a decoder forked
    from a server that had imported torch kept the server's two for its main thread though the model was unpickled
    (and `set_num_threads(1)` called) in another, and embedded ~4.5x slower beside the model process."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
