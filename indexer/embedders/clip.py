"""CLIP through open_clip: `clip:ARCH/PRETRAINED`, PRETRAINED a registry tag or a local checkpoint path."""

from __future__ import annotations

import logging

import numpy as np
import torch

from indexer.embedders import OFFLINE_MODEL, EmbedderUnavailable, Vectors
from indexer.embedders.torch_base import FrameEmbedder, default_batch_size, resolve_device, unit

log = logging.getLogger(__name__)


class ClipEmbedder(FrameEmbedder):
    text_space = "visual"

    def __init__(self, arg: str | None, device: str = "auto", batch_size: int | None = None):
        import open_clip

        if not arg:
            raise EmbedderUnavailable("clip needs ARCH[/PRETRAINED], e.g. clip:ViT-B-32/laion2b_s34b_b79k")
        arch, _, pretrained = arg.partition("/")
        if arch not in open_clip.list_models() and not arch.startswith(("hf-hub:", "local-dir:")):
            raise EmbedderUnavailable(
                f"open_clip has no architecture {arch!r}; known: {', '.join(open_clip.list_models())}"
            )
        self.device = resolve_device(device)
        self.batch_size = batch_size or default_batch_size(self.device)
        self.model_id = f"clip:{arg}"
        if not pretrained:
            log.warning("clip:%s has no pretrained weights: random init, fit for plumbing tests only", arch)
        try:
            model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=pretrained or None, device=self.device)
        except (RuntimeError, OSError, ValueError) as e:
            raise EmbedderUnavailable(
                f"could not load open_clip weights {arch}/{pretrained}: {e}\n"
                "Model hubs may be unreachable here. Pass a local checkpoint "
                f"(clip:{arch}/PATH/TO/open_clip_model.bin), "
                f"or use the offline reference model --model {OFFLINE_MODEL}."
            ) from e
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(arch)
        cfg = self.model.visual.preprocess_cfg
        self.image_size = int(cfg["size"][0] if isinstance(cfg["size"], (tuple, list)) else cfg["size"])
        self.mean, self.std = tuple(cfg["mean"]), tuple(cfg["std"])
        self.dim = self.text_dim = int(self.model.visual.output_dim)

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (torch.nn.functional.normalize(self.model.encode_image(batch).float(), dim=-1),)

    def _vectors(self, features: np.ndarray) -> Vectors:
        return Vectors(unit(features))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            tokens = self.tokenizer(list(texts)).to(self.device)
            return unit(self.model.encode_text(tokens).float().cpu().numpy())
