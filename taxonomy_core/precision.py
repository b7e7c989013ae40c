"""Model precision (`--precision`) and whether this CPU runs bfloat16 fast (the audit's k-NN scores in it)."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_HELP = "auto (bf16/fp16 autocast on a GPU, exact float32 on a CPU), fp32 (exact), bf16 (also on a CPU)."

_FAST = None


def check_precision(value: str) -> str:
    """A command-line check: one of PRECISIONS, or a usage error naming them."""
    if value not in PRECISIONS:
        import typer

        raise typer.BadParameter(f"{value!r} is not one of {', '.join(PRECISIONS)}")
    return value


def cpu_bf16_fast() -> bool:
    """True where this CPU multiplies bfloat16 at least twice as fast as float32 (AMX tiles, AVX512-BF16).

    Timed once per process on a 512 x 512 by 4096 x 512 product (~20 ms), so no CPU list can be out of date.
    (The models do not ask it: on a CPU they run bf16 only when `--precision bf16` says so, see model_dtype.)
    """
    global _FAST
    if _FAST is None:
        import torch

        a, b = torch.randn(512, 512), torch.randn(4096, 512)

        def seconds(dtype) -> float:
            x, y = a.to(dtype), b.to(dtype)
            x @ y.T
            t0 = time.perf_counter()
            for _ in range(3):
                x @ y.T
            return time.perf_counter() - t0

        _FAST = 2 * seconds(torch.bfloat16) < seconds(torch.float32)
        log.info("this CPU runs bfloat16 %s", "fast" if _FAST else "no faster than float32")
    return _FAST


def model_dtype(device: str, precision: str = "auto"):
    """The autocast dtype for a model on `device`, or None for exact float32.

    auto: bfloat16 (float16 where bfloat16 is unsupported) on CUDA, exact float32 on a CPU. bf16: bfloat16
    autocast on a CPU too: ~3x faster where it has bf16 units (AMX), but a vector then moves by ~1e-3 with the
    batch it was computed in, which flipped threshold decisions between two runs of the same real-footage test,
    so it is asked for, not assumed. fp32: always exact.
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "fp32":
        return None
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else None
