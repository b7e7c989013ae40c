"""Audit time and memory at scale on synthetic clips: in memory (vectors only), or through a real store.

    python bench/audit_scale.py [--sizes 10000 100000]                  in memory, 512-d, the store-free checks
    python bench/audit_scale.py --store --sizes 100000 [--uri URI]      a store of N clips with companions
    python bench/audit_scale.py --store --sizes 300000 --keep DIR       build into DIR and keep it, then audit
    python bench/audit_scale.py --store --reuse DIR                     audit the store built there again
    python bench/audit_scale.py --store --sizes 1000000 --keep DIR --build-only [--resume]
                                                                        build it (or go on), audit it later

`--store` builds a Milvus store of N synthetic clips with the offline model's shapes (1280-d visual, 384-d
text, 3 timeline steps and 10 crops a clip, real-footage thumbnails, fingerprints) through `Store.write_clips`,
in one process, then runs the `auditor audit` path on it in a fresh one (read the clip matrix, neighbours, every
check including temporal and spatial, UMAP + HDBSCAN, report.json, report.html, fixed manifest), printing the
seconds of each stage and the audit's peak memory. It ends with `TOTAL_SECONDS` (the audit, not the build) and
`STORE_BYTES_PER_CLIP` (the Lite folder on disk, thumbnails included; not measured for a server URI).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from synthetic import StoreShape, synthetic_dataset, synthetic_layout, write_synthetic_store  # noqa: E402

from auditor.checks import build_checks, params_of, run_checks  # noqa: E402
from auditor.config import AuditConfig  # noqa: E402

CHECKS = ["tightness", "mislabels", "duplicates", "search", "diversity", "structure", "shortcut"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--store", action="store_true", help="build a store and audit through it")
    parser.add_argument("--uri", help="a Milvus server to use instead of a Lite file in a temporary folder")
    parser.add_argument("--dir", help="where the temporary folders go (default: the system's)")
    parser.add_argument("--batch", type=int, default=32, help="clips per write_clips call (the indexer's default)")
    parser.add_argument("--keep", help="build the store in this folder and keep it (re-audit it with --reuse)")
    parser.add_argument("--reuse", help="audit the store that --keep built in this folder again, without building")
    parser.add_argument("--build-only", action="store_true", help="with --keep: build the store and stop")
    parser.add_argument("--resume", action="store_true", help="with --keep: go on with a build that was stopped")
    parser.add_argument("--phase", choices=["build", "settle", "audit"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "build":
        return build(args.sizes[0], args.uri, Path(args.folder), args.batch, args.resume)
    if args.phase == "settle":
        return settle(args.sizes[0], args.uri, Path(args.folder), args.batch)
    if args.phase == "audit":
        return audit(args.uri, Path(args.folder))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.reuse:
        return store_run(None, args)
    for n in args.sizes:
        (store_run if args.store else in_memory)(n, args)


# --- in memory ----------------------------------------------------------------------------------------------


def in_memory(n: int, args) -> None:
    planted = synthetic_dataset(n)
    ctx = planted.context
    t0 = time.perf_counter()
    graph = ctx.neighbour_graph  # shared by several checks and the map: timed on its own
    knn_s = time.perf_counter() - t0
    results = run_checks(ctx, build_checks(CHECKS))
    total = knn_s + sum(r.seconds for r in results)
    print(f"\nN={n} x 512-d, 50 classes: total {total:.1f}s, peak RSS {peak_rss_gb():.1f} GB")
    print(f"  {'k-NN (k=10)':24s} {knn_s:8.1f}s  {graph.method} {graph.detail} recall {graph.recall}")
    for r in results:
        note = f"  ERROR {r.error.splitlines()[0]}" if r.error else ""
        print(f"  {r.name:24s} {r.seconds:8.1f}s  {len(r.findings):6d} findings{note}")


# --- through a store ----------------------------------------------------------------------------------------


def store_run(n: int | None, args) -> None:
    """Build a store of n clips (unless --reuse names one built before), then audit it in a fresh process."""
    folder = Path(args.reuse or args.keep or tempfile.mkdtemp(prefix=f"audit_scale_{n}_", dir=args.dir))
    folder.mkdir(parents=True, exist_ok=True)
    uri = args.uri or str(folder / "store.db")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    script = [sys.executable, __file__, "--folder", str(folder), "--uri", uri]
    if args.reuse:
        if not (folder / "planted.json").exists():  # a build stopped before its end: audit what it wrote
            settle_cmd = [*script, "--phase", "settle", "--sizes", str(args.sizes[0]), "--batch", str(args.batch)]
            subprocess.run(settle_cmd, env=env, check=True)
        n = json.loads((folder / "planted.json").read_text())["clips"]
        print(f"\nN={n}: the store built before at {uri}, load average {os.getloadavg()[0]:.2f}", flush=True)
    else:
        print(f"\nN={n}: store {uri}, load average {os.getloadavg()[0]:.2f}", flush=True)
        build_cmd = [*script, "--phase", "build", "--sizes", str(n), "--batch", str(args.batch)]
        build_cmd += ["--resume"] if args.resume else []
        subprocess.run(build_cmd, env=env, check=True)
        if args.build_only:
            return
    per_clip = folder_bytes(Path(uri)) / n if not args.uri else float("nan")
    subprocess.run([*script, "--phase", "audit"], env=env, check=True)
    total = json.loads((folder / "audit.json").read_text())["total_seconds"]
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"TOTAL_SECONDS {total:.1f}")
    print(f"STORE_BYTES_PER_CLIP {per_clip:.0f}")


def build(n: int, uri: str, folder: Path, batch: int, resume: bool = False) -> None:
    from taxonomy_core.store import open_store

    t0 = time.perf_counter()
    planted = synthetic_dataset(n, dim=StoreShape().dim)
    made = time.perf_counter() - t0
    store = open_store(uri)
    layout = synthetic_layout(StoreShape())
    if store.layout(layout.dataset, layout.model_id) and not resume:
        store.drop(layout)
    t0 = time.perf_counter()
    made_store = write_synthetic_store(store, planted, StoreShape(), batch=batch, resume=resume, progress=Progress(n))
    store.close()
    wall, stats = time.perf_counter() - t0, made_store.stats
    write_manifest(planted, folder / "manifest.csv")
    write_truth(folder, planted, made_store.loose, made_store.small, made_store.text_centres, n)
    print(f"  build: vectors made in {made:.1f}s; {stats.clips} clips written in {wall:.1f}s wall "
          f"({stats.seconds:.1f}s inside write_clips, batches of {batch})")  # fmt: skip
    print(f"  write rate: {stats.clips_per_s:.0f} clips/s, {stats.rows_per_s:.0f} input rows/s "
          f"(1 clip + {StoreShape().steps} steps + {StoreShape().crops} crops a clip); "
          f"peak RSS of the build {peak_rss_gb():.2f} GB", flush=True)  # fmt: skip


def settle(n: int, uri: str, folder: Path, batch: int) -> None:
    """After a build of n clips that stopped (`--build-only`, killed or out of memory): the manifest and planted
    truth of the clips its complete batches wrote (the first ones: batches go in order), so `--reuse` audits them.
    Clips of a batch cut short stay in the store, outside the manifest, as stale rows do (the audit reads only
    the manifest's clips). Same draws as the build: the same seed, the planted sets chosen before any batch."""
    from synthetic import synthetic_rows

    from taxonomy_core.store import open_store

    planted = synthetic_dataset(n, dim=StoreShape().dim)
    rows = synthetic_rows(planted)
    store = open_store(uri)
    stored = store.count(synthetic_layout(StoreShape()))
    store.close()
    kept = n if stored >= n else stored // batch * batch  # positions below this are complete clips
    write_manifest(planted, folder / "manifest.csv", kept)
    write_truth(folder, planted, rows.loose, rows.small, rows.text_centres, kept, {"of": n, "stored": stored})
    print(f"  a stopped build of {n}: {stored} clips stored, the first {kept} (complete batches) audited", flush=True)


def write_truth(folder: Path, planted, loose, small, text_centres, kept: int, stopped: dict | None = None) -> None:
    """planted.json: the planted defects among the first `kept` clips (all of a complete build)."""
    truth = {
        "clips": kept,
        "mislabelled": sorted(i for i in planted.mislabelled if i < kept),
        "copies": sorted(pair for pair in planted.copies if max(pair) < kept),
        "temporal": sorted(i for i in loose if i < kept),
        "spatial": sorted(i for i in small if i < kept),
        "text_centres": text_centres.tolist(),
    }
    if stopped:
        truth["stopped_build"] = stopped
    (folder / "planted.json").write_text(json.dumps(truth))


def audit(uri: str, folder: Path) -> None:
    """The `auditor audit` path after indexing (auditor/audit.py's run_audit), stage by stage."""
    from auditor.audit import write_outputs
    from auditor.context import AuditContext
    from indexer.pipeline import IndexReport
    from indexer.validation import ValidationConfig
    from taxonomy_core.formats import read_manifest
    from taxonomy_core.store import open_store

    truth = json.loads((folder / "planted.json").read_text())
    truth.pop("clips")
    truth.pop("stopped_build", None)
    encoder = text_encoder(np.array(truth.pop("text_centres"), dtype=np.float32))
    stages: dict[str, float] = {}
    out = folder / "report"
    out.mkdir(exist_ok=True)
    with timed(stages, "open the store"):
        store = open_store(uri)
        layout = store.layout(synthetic_layout(StoreShape()).dataset)
    with timed(stages, "read the clip matrix"):  # the manifest's clips, as `auditor audit` reads them
        manifest = read_manifest(folder / "manifest.csv")
        wanted = {clip.clip_id for clip in manifest.clips}
        ctx = AuditContext.from_store(store, layout, wanted, config=AuditConfig(), text_encoder=encoder)
        del wanted
    with timed(stages, "neighbours"):
        graph = ctx.neighbour_graph
    n = len(ctx.clips)
    built = build_checks(None, ctx.config)
    RSS.reset()
    results = run_checks(ctx, built, lambda name, result: done(f"check {name}", result.seconds))
    for r in results:
        stages[f"check {r.name}"] = r.seconds
    with timed(stages, "report (json, html, fixed manifest)"):
        index = IndexReport(layout.dataset, layout.model_id, uri, manifest, layout)
        meta = {"run_id": "bench", "model": layout.model_id, "dataset": layout.dataset, "uri": uri, "rows": n}
        min_per_class = ValidationConfig().min_per_class
        report = write_outputs(ctx, results, meta, params_of(built), out, index, min_per_class).report
    store.close()
    total = sum(stages.values())
    print(f"  audit of {len(ctx.clips)} clips ({layout.dim}-d + {layout.text_dim}-d):")
    for name, seconds in stages.items():
        result = next((r for r in results if f"check {r.name}" == name), None)
        note = f"  {len(result.findings)} findings" if result else ""
        note += f"  SKIPPED {result.skipped}" if result and result.skipped else ""
        note += f"  ERROR {result.error.splitlines()[0]}" if result and result.error else ""
        note += (
            f"  {graph.method} ({graph.detail}) recall@{ctx.config.knn_k} {graph.recall}"
            if name == "neighbours"
            else ""
        )
        print(f"    {name:38s} {seconds:8.1f}s  {RSS.line(name)}{note}")
    print(f"  peak RSS of the audit {peak_rss_gb():.2f} GB (Milvus Lite runs inside this process)")
    print(f"  planted defects found: {planted_found(ctx, report, truth)}")
    (folder / "audit.json").write_text(json.dumps({"total_seconds": total, "stages": stages}))


# --- helpers ------------------------------------------------------------------------------------------------


@contextmanager
def timed(stages: dict[str, float], name: str):
    t0 = time.perf_counter()
    RSS.reset()
    yield
    stages[name] = time.perf_counter() - t0
    done(name, stages[name])


def done(name: str, seconds: float) -> None:
    """A stage's time and memory as soon as it ends (a 10^6 audit runs most of an hour), then in the table."""
    RSS.record(name)
    print(f"    ... {name} {seconds:.1f}s, {RSS.line(name)}, load {os.getloadavg()[0]:.1f}", flush=True)


class Progress:
    """A build's progress on one line a minute: clips written, rate, ETA (a 10^6 build takes hours)."""

    def __init__(self, n: int):
        self.n, self.t0, self.last, self.first = n, time.perf_counter(), 0.0, None

    def __call__(self, done: int, n: int) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = (done, now)
        if now - self.last < 60 and done < n:
            return
        self.last = now
        rate = (done - self.first[0]) / max(now - self.first[1], 1e-9)
        eta = (n - done) / rate if rate > 0 else float("nan")
        print(f"  built {done}/{n} clips, {rate:.0f} clips/s, ETA {eta / 60:.0f} min, "
              f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip


class RssWatch:
    """The process's resident memory sampled every 50 ms: each stage's own high-water mark and what it leaves
    resident (the whole-run peak alone hides which stage sets it)."""

    def __init__(self):
        self.high, self.during, self.after = 0.0, {}, {}
        threading.Thread(target=self._sample, daemon=True).start()

    @staticmethod
    def now_gb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9

    def _sample(self) -> None:
        while True:
            self.high = max(self.high, self.now_gb())
            time.sleep(0.05)

    def reset(self) -> None:
        self.high = self.now_gb()

    def record(self, name: str) -> None:
        self.during[name], self.after[name] = max(self.high, self.now_gb()), self.now_gb()
        self.reset()

    def line(self, name: str) -> str:
        return f"peak {self.during.get(name, 0):.2f} GB, after {self.after.get(name, 0):.2f} GB"


RSS = RssWatch()


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kilobytes on Linux


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def write_manifest(planted, path: Path, rows: int | None = None) -> None:
    """The manifest of the first `rows` clips (all by default): a synthetic clip's row is its position."""
    from taxonomy_core import schema as S

    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "start", "end", "label", "split"])
        clips = planted.context.clips[[S.VIDEO, S.START, S.END, S.LABEL, S.SPLIT]].iloc[:rows]
        for clip in clips.itertuples(index=False):
            writer.writerow(clip)


def text_encoder(centres: np.ndarray):
    """A stand-in text model: a prompt naming class_NNN embeds near that class's text centre."""

    def encode(prompts: list[str]) -> np.ndarray:
        return np.stack([centres[int(p.rsplit("class", 1)[1].strip(" _")[:3])] for p in prompts])

    return encode


def planted_found(ctx, report, truth) -> str:
    """Recall of each planted defect kind among the findings (rows accused)."""
    accused: dict[str, set[int]] = {}
    for f in report["findings"]:
        accused.setdefault(f["kind"], set()).update(f["rows"])
    wanted = {  # a synthetic clip's manifest row is its position in the dataset
        "likely_mislabel": set(truth["mislabelled"]),
        "split_leak": {t for _, t in truth["copies"]},
        "temporal_looseness": set(truth["temporal"]),
        "spatial_looseness": set(truth["spatial"]),
    }
    parts = []
    for kind, want in wanted.items():
        got = accused.get(kind, set())
        parts.append(f"{kind} {len(want & got)}/{len(want)} (+{len(got - want)} others)")
    return "; ".join(parts)


if __name__ == "__main__":
    main()
