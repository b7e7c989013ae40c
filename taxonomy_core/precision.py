"""Model precision (`--precision`) and whether this CPU runs bfloat16 fast (the audit's k-NN scores in it)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_HELP = "auto (bf16/fp16 on a GPU, exact float32 on a CPU), fp32 (exact), bf16 (also on a CPU: ~2x with AMX)."

_FAST = None


def check_precision(value: str) -> str:
    """A command-line check: one of PRECISIONS, or a usage error naming them."""
    if value not in PRECISIONS:
        import typer

        raise typer.BadParameter(f"{value!r} is not one of {', '.join(PRECISIONS)}")
    return value


def cpu_bf16_fast() -> bool:
    """True where this CPU has bfloat16 matrix tiles (AMX) that torch may use: there bf16 runs 2-8x faster than
    float32 (EfficientNet-Lite0 ~2.2x, the k-NN's products ~8x).

    Asked of the CPU, not timed, so that it comes out the same in every run on one machine: the timing it replaced
    (3 products in each dtype) called this machine slow in 14 of 200 tries under a load average of 5.
    (The models do not ask it: on a CPU they run bf16 only when `--precision bf16` says so, see model_dtype.)
    """
    global _FAST
    if _FAST is None:
        import torch

        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # torch >= 2.3; `_init_amx` asks the OS for the tiles
        _FAST = bool(amx and amx() and torch.cpu._init_amx() and torch.backends.mkldnn.is_available())
        log.info("this CPU %s bfloat16 tiles (AMX)", "has" if _FAST else "has no")
    return _FAST


def model_dtype(device: str, precision: str = "auto"):
    """The reduced dtype a model on `device` runs in, or None for exact float32.

    auto: bfloat16 (float16 where bfloat16 is unsupported) on CUDA, exact float32 on a CPU. bf16: bfloat16 on a CPU
    too, ~2x faster where it has bf16 tiles (AMX). fp32: always exact. On a CPU a frame's bf16 vector is the same bits
    whatever frames share its batch (the embedders run every call at one batch shape; tests/test_embedders.py), so a
    bf16 run's decisions repeat; but they can differ from float32's where one sits on a threshold (a vector moves by
    cosine ~0.998: a real-footage test's weak slice is one clip of 17 short under bf16; docs/benchmarks.md, issue 20),
    so bf16 on a CPU is asked for, not assumed.
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "fp32":
        return None
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_reduced(precision) else None


def cpu_reduced(precision: str) -> bool:
    """Whether a model on a CPU runs in reduced precision (`model_dtype`), asked without importing torch."""
    return precision == "bf16"
