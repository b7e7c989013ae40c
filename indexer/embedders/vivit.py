"""ViViT through transformers: a video-native clip vector; no text tower, so text search is unavailable.

Single images (timeline steps, crops) are embedded as static videos: the frame repeated over time.
"""

from __future__ import annotations

import numpy as np
import torch

from indexer.embedders import OFFLINE_MODEL, EmbedderUnavailable, Vectors
from indexer.embedders.torch_base import FrameEmbedder, autocast, default_batch_size, padded, resolve_device, unit


class VivitEmbedder(FrameEmbedder):
    text_space = None
    text_dim = None
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    pools_frames = False

    def __init__(self, arg: str | None, device: str = "auto", batch_size: int | None = None):
        from transformers import VivitModel

        if not arg:
            raise EmbedderUnavailable(
                "vivit needs a Hugging Face name or local path, e.g. vivit:google/vivit-b-16x2-kinetics400"
            )
        self.device = resolve_device(device)
        self.batch_size = batch_size or default_batch_size(self.device)
        self.model_id = f"vivit:{arg}"
        try:
            self.model = VivitModel.from_pretrained(arg, add_pooling_layer=False).to(self.device).eval()
        except (OSError, ValueError) as e:
            raise EmbedderUnavailable(
                f"could not load ViViT {arg!r}: {e}\nModel hubs may be unreachable here: pass a local folder "
                f"saved with save_pretrained (vivit:/path/to/folder), or use --model {OFFLINE_MODEL}."
            ) from e
        config = self.model.config
        self.frames_per_clip = int(config.num_frames)
        self.image_size = int(config.image_size)
        self.dim = int(config.hidden_size)
        self._processor_stats(arg)

    def _processor_stats(self, arg: str) -> None:
        try:
            from transformers import VivitImageProcessor

            processor = VivitImageProcessor.from_pretrained(arg)
            self.mean, self.std = tuple(processor.image_mean), tuple(processor.image_std)
        except (OSError, ValueError):
            pass  # a bare checkpoint folder: ViViT's documented 0.5 / 0.5

    def embed_clips(self, clips: list[np.ndarray]) -> Vectors:
        videos = np.stack([_fit_length(c, self.frames_per_clip) for c in clips])
        return Vectors(self._run_videos(videos))

    def embed_batch(self, images: np.ndarray, clip_rows: list[np.ndarray]) -> tuple[Vectors, Vectors]:
        return self.embed_images(images), self.embed_clips([images[rows] for rows in clip_rows])

    def embed_images(self, images: np.ndarray) -> Vectors:
        videos = np.repeat(images[:, None], self.frames_per_clip, axis=1)
        return Vectors(self._run_videos(videos))

    def _run_videos(self, videos: np.ndarray) -> np.ndarray:
        out = []
        per_batch = max(1, self.batch_size // self.frames_per_clip)
        fixed = self.fixed_shape()
        with torch.inference_mode(), autocast(self.device, self.precision):
            for i in range(0, len(videos), per_batch):
                chunk = videos[i : i + per_batch]
                count = len(chunk)
                chunk = padded(chunk, per_batch) if fixed else chunk
                b, t = chunk.shape[:2]
                frames = self._prepare(chunk.reshape(b * t, *chunk.shape[2:])).contiguous()
                pixel_values = frames.view(b, t, *frames.shape[1:])
                cls = self.model(pixel_values=pixel_values).last_hidden_state[:, 0]
                out.append(cls.float().cpu().numpy()[:count])
        return unit(np.concatenate(out))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        raise EmbedderUnavailable(
            f"{self.model_id} has no text tower: text search needs a clip: model or {OFFLINE_MODEL}"
        )


def _fit_length(frames: np.ndarray, count: int) -> np.ndarray:
    """Evenly resample a clip's frames to the count the model was trained on."""
    idx = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return frames[idx]
