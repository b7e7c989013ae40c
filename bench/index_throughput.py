"""Indexing throughput: the whole job vs the model alone on pre-decoded frames, in one run.

    python bench/index_throughput.py [--videos 10] [--segments 200] [--model effnet-lite0]

Target (docs/benchmarks.md): the whole job reaches at least 0.8x of model-only clips/s on CPU,
i.e. decoding (in worker processes) hides behind compute.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from indexer.decode_pool import decode_all
from indexer.embedders import load_embedder
from indexer.pipeline import IndexConfig, run_indexing
from indexer.synthetic import moving_shape, write_video
from indexer.video import SampledClip, SamplingConfig
from taxonomy_core.schema import ClipSpec


def make_corpus(folder: Path, videos: int, segments: int) -> Path:
    per_video = segments // videos
    lines = ["video,start,end,label,split"]
    for v in range(videos):
        colour = tuple(int(c) for c in np.random.default_rng(v).integers(40, 255, 3))
        duration = per_video * 1.5
        frames = (moving_shape(i, 320, 240, colour=colour, seed=v) for i in range(int(duration * 25)))
        write_video(folder / f"v{v}.mp4", frames, fps=25)
        lines += [f"v{v}.mp4,{k * 1.5:.2f},{k * 1.5 + 1.25:.2f},class{v % 5},train" for k in range(per_video)]
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def model_only(embedder, clips: list[SampledClip], per_write: int) -> float:
    """Clips/s of embed_batch alone, on the job's own batches of pre-decoded images."""
    start = time.perf_counter()
    for i in range(0, len(clips), per_write):
        batch = clips[i : i + per_write]
        offsets = np.cumsum([0] + [len(c.images) for c in batch])
        embedder.embed_batch(
            np.concatenate([c.images for c in batch]), [o + c.frame_idx for o, c in zip(offsets, batch)]
        )
    return len(clips) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10)
    parser.add_argument("--segments", type=int, default=200)
    parser.add_argument("--model", default="effnet-lite0")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_index_"))
    manifest = make_corpus(folder, args.videos, args.segments)
    embedder = load_embedder(args.model, args.device, args.batch_size)
    config = IndexConfig(
        dataset="bench", model=args.model, uri=str(folder / "bench.db"), device=args.device, batch_size=args.batch_size
    )
    sampling = SamplingConfig(image_size=embedder.image_size)

    from taxonomy_core.formats import read_manifest

    specs: dict[str, list[ClipSpec]] = {}
    for clip in read_manifest(manifest).clips:
        specs.setdefault(clip.video, []).append(clip)
    t0 = time.perf_counter()
    decoded = [c for c in decode_all(specs, sampling, workers=0) if isinstance(c, SampledClip)]
    decode_s = time.perf_counter() - t0
    images = sum(len(c.images) for c in decoded)
    embedder.embed_images(decoded[0].images[:4])  # warm-up
    model_rate = model_only(embedder, decoded, per_write=config.clips_per_write)

    t0 = time.perf_counter()
    report = run_indexing(manifest, config, embedder=embedder)
    job_s = time.perf_counter() - t0
    job_rate = report.indexed / job_s

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, device {embedder.device}, batch {embedder.batch_size}"
    )
    print(
        f"corpus: {len(decoded)} segments from {args.videos} videos (320x240, 25 fps), {images} "
        f"images ({images / len(decoded):.1f}/clip)"
    )
    print(f"decode only (1 process):  {len(decoded) / decode_s:7.2f} clips/s")
    print(f"model only (pre-decoded): {model_rate:7.2f} clips/s  {model_rate * images / len(decoded):7.1f} images/s")
    print(
        f"whole job:                {job_rate:7.2f} clips/s  {report.frames / job_s:7.1f} images/s  "
        f"(workers={config.workers})"
    )
    print(f"job / model-only:         {job_rate / model_rate:7.2f}x  (target >= 0.8x)")
    print("job stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in report.timings.items()))


if __name__ == "__main__":
    main()
