"""Decoding in worker processes, so that sampling video overlaps model compute in the main process.

Each task is one source video with all of its segments (decoded once); results stream back one
segment at a time through a bounded queue, so a long video never piles up in memory. A worker that
dies (a crashing decoder), or spends longer on one video than the time limit per file (a read that
never returns), fails only the segments of the video it was on, and is replaced. A worker with results
waiting for the main process may embed clips itself (`indexer.executors.stages.Offload`), so that on a
machine of few cores neither process idles while the other is behind.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import sys
import threading
import time
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from indexer.executors.stages import DecoderSide, Offload, decode_group
from indexer.video import SampledClip, SamplingConfig, SegmentFailure
from taxonomy_core.schema import ClipSpec

_STOP = None
# What every decoder imports (the decoding stages; scipy's DCT, which imagehash imports on its first hash).
DECODER_MODULES = ("indexer.executors.stages", "scipy.fftpack")


@dataclass(frozen=True)
class _Started:
    worker: int
    video: str


@dataclass(frozen=True)
class _Finished:
    worker: int
    video: str


def default_workers(device: str = "cpu") -> int:
    """Beside a model on the CPU, at most 4 (they share its cores, and decode ~2x faster than it embeds); beside a
    GPU, a core each but one, at most 32 (it embeds ~10^4 images/s, ~40x what 4 decode: docs/benchmarks.md, issue 20).
    Cores: those this process may run on (a container's CPU set), not the host's."""
    cores = usable_cores()
    return max(1, min(32, cores - 1) if device.startswith("cuda") else min(4, cores - 1))


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 2
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 2


def decode_all(
    groups: dict[str, list[ClipSpec]], cfg: SamplingConfig, workers: int, offload: Offload | None = None
) -> Iterator[SampledClip | SegmentFailure]:
    """One result per spec in `groups` (video -> its segments), in completion order; with `offload`, the workers
    embed clips while results wait for this process."""
    if workers <= 0:
        for video, specs in groups.items():
            yield from decode_group(video, specs, cfg)
        return
    cfg = cfg if cfg.decode_threads else replace(cfg, decode_threads=threads_per_decoder(workers))
    yield from _Pool(groups, cfg, workers, offload).run()


def decoder_context(modules: Sequence[str] = ()) -> mp.context.BaseContext:
    """How decoders start: forked from a fork server on Linux, else spawned (as macOS's and Windows' default is). The
    server imports what a decoder runs once a process (`DECODER_MODULES` and `modules`: torch and the model's module
    where the decoders embed), so a decoder starts with them imported: a spawned one imported torch before it could
    embed, ~2.5 s under its interpreter lock beside its decoding, while ~60 clips piled up for the model process
    (docs/benchmarks.md, issue 20). The server is a process of one thread with no store, no gRPC channel and no
    CUDA context, so nothing a job holds is forked; it listens on a socket in a private temporary folder
    (docs/security.md). Where the server itself is killed (the kernel's out-of-memory killer), the pool reads its
    decoders as exited and fails the videos still pending, as it does when every spawned decoder dies."""
    if not sys.platform.startswith("linux"):  # macOS: forking a process that loaded system frameworks may crash
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([*DECODER_MODULES, *modules])  # heeded when the server starts: once a process
    return ctx


def start_decoder_server(modules: Sequence[str] = ()) -> None:
    """Start the fork server now, importing in its own process, so that a job's first decoder need not wait for it
    (`run_indexing` calls this before it loads the model); a no-op where it runs already, or decoders are spawned."""
    if decoder_context(modules).get_start_method() == "forkserver":
        from multiprocessing import forkserver

        with _starting():
            forkserver.ensure_running()


def threads_per_decoder(workers: int, cores: int | None = None) -> int:
    """FFmpeg threads for each of `workers` decoding processes beside the model process: one, and a share of the
    cores nobody else runs on. On 2 cores (one decoder) that is one thread: FFmpeg's frame threads, each waiting on
    the others while the model holds a core, took ~1.7x the wall time and ~15 % more CPU for the same pixels."""
    cores = cores or usable_cores()
    return 1 + max(0, cores - 1 - workers) // workers


def _worker(worker: int, tasks, results, cfg: SamplingConfig, offload: Offload | None) -> None:
    _exit_with_parent()
    side = DecoderSide(offload)
    while (task := tasks.get()) is not _STOP:
        video, specs, later = task
        side.post(results, _Started(worker, video))
        side.start(video, len(specs) + later)
        decoding = decode_group(video, specs, cfg)
        while True:
            started = time.perf_counter()
            if (result := next(decoding, None)) is None:
                break
            if isinstance(result, SampledClip):
                side.decoded(time.perf_counter() - started)
            side.post(results, side(result, _waiting(results)))
        side.post(results, _Finished(worker, video))


def _waiting(results) -> int:
    """Results in the queue; 0 where the platform cannot count them (macOS): the main process embeds every clip."""
    try:
        return results.qsize()
    except NotImplementedError:
        return 0


def _exit_with_parent() -> None:
    """A killed job must not leave decoders behind, blocked on a queue nobody reads. The job's process is watched
    through multiprocessing's sentinel (a pipe it holds open), not as this process's parent: a decoder's parent is the
    fork server, which stays while any decoder lives (each holds the pipe that tells it its clients are gone)."""
    job = mp.parent_process()

    def watch() -> None:
        job.join()
        os._exit(0)

    if job is not None:
        threading.Thread(target=watch, daemon=True).start()


@contextmanager
def _caller_script_left_out():
    """A spawned decoder (or one forked by the fork server) runs the caller's `__main__` script again (as
    `__mp_main__`) before its task, so that what the script defines can be unpickled: a script that imports torch
    held each decoder ~1-2 s before its first frame, while the model process waited. A decoder runs only this
    package's functions on plain data, so the script is left out: while the process starts, `__main__` is a blank
    module with no file to run. (An embedder class defined in that script cannot be unpickled there: `DecoderSide`
    then leaves every clip to the model process.)"""
    caller = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = caller


@contextmanager
def _starting():
    """What a decoder, or the fork server, starts from: not the caller's script (`_caller_script_left_out`), and this
    process's module path. The server imports its modules before it hears of the job's `sys.path`, from the path of a
    bare `python -c` (the working directory first): a folder named like a module there (`torch/`, an old checkout's
    `indexer/`) would have been what every decoder ran. It starts with `PYTHONSAFEPATH` (no working directory) and
    this process's path as `PYTHONPATH`."""
    saved = {k: os.environ.get(k) for k in ("PYTHONSAFEPATH", "PYTHONPATH")}
    os.environ["PYTHONSAFEPATH"] = "1"
    os.environ["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
    try:
        with _caller_script_left_out():
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _Pool:
    def __init__(self, groups: dict[str, list[ClipSpec]], cfg: SamplingConfig, workers: int, offload: Offload | None):
        self.ctx = decoder_context(offload.modules if offload else ())
        self.groups, self.cfg, self.offload = groups, cfg, offload
        self.tasks = self.ctx.Queue()
        self.results = self.ctx.Queue(maxsize=64)
        self.pending = {video: {s.row for s in specs} for video, specs in groups.items()}
        self.current: dict[int, str] = {}
        self.since: dict[int, float] = {}  # when each worker started its current video
        self.procs = {i: self._spawn(i) for i in range(min(workers, len(groups)))}

    def _spawn(self, worker: int):
        args = (worker, self.tasks, self.results, self.cfg, self.offload)
        proc = self.ctx.Process(target=_worker, args=args, daemon=True)
        with _starting():  # the first start also starts the fork server, where `start_decoder_server` did not
            proc.start()
        return proc

    def run(self) -> Iterator[SampledClip | SegmentFailure]:
        self._put_tasks(self.groups)
        for _ in self.procs:
            self.tasks.put(_STOP)
        try:
            while self.pending:
                yield from self._overdue()
                try:
                    message = self.results.get(timeout=min(2.0, max(0.1, self.cfg.file_timeout_s / 4)))
                except queue.Empty:
                    yield from self._reap()
                    continue
                yield from self._handle(message)
        finally:
            for proc in self.procs.values():
                if proc.is_alive():
                    proc.terminate()
                proc.join(timeout=5)

    def _put_tasks(self, groups: dict[str, list[ClipSpec]]) -> None:
        """One task per video, with the number of clips in the tasks after it (the decoders balance the end by it)."""
        later = sum(len(specs) for specs in groups.values())
        for video, specs in groups.items():
            later -= len(specs)
            self.tasks.put((video, specs, later))

    def _handle(self, message) -> Iterator[SampledClip | SegmentFailure]:
        if isinstance(message, _Started):
            self.current[message.worker] = message.video
            self.since[message.worker] = time.monotonic()
        elif isinstance(message, _Finished):
            if self.current.get(message.worker) == message.video:
                self.current.pop(message.worker, None)
            yield from self._fail_rest(message.video, "the decoder stopped without a result")
        else:
            rows = self.pending.get(message.spec.video)
            if rows is not None and message.spec.row in rows:  # else its video already failed (time limit)
                rows.discard(message.spec.row)
                yield message

    def _overdue(self) -> Iterator[SegmentFailure]:
        """Stop a worker past the time limit on one video (blocked in a read, or far too slow); replace it."""
        limit = self.cfg.file_timeout_s
        for worker, video in list(self.current.items()):
            if time.monotonic() - self.since.get(worker, time.monotonic()) <= limit:
                continue
            reason = f"opening and decoding it took longer than the time limit per file ({limit:g} s); skipped"
            yield from self._fail_rest(video, reason)
            self._restart()
            return

    def _restart(self) -> None:
        """Stop every decoder and start afresh on the videos still pending, with new queues: a process killed
        mid-call may hold a queue's lock forever, or have taken the next video's task with it."""
        for proc in self.procs.values():
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=5)
        self.current.clear()
        self.since.clear()
        if not self.pending:
            return
        self.tasks, self.results = self.ctx.Queue(), self.ctx.Queue(maxsize=64)
        self._put_tasks({video: self.groups[video] for video in self.pending})
        workers = min(len(self.procs), len(self.pending))
        for _ in range(workers):
            self.tasks.put(_STOP)
        self.procs = {i: self._spawn(i) for i in range(workers)}

    def _reap(self) -> Iterator[SegmentFailure]:
        """Replace dead workers; the video each was on fails, the others go on."""
        for worker, proc in list(self.procs.items()):
            if proc.is_alive():
                continue
            video = self.current.pop(worker, None)
            if video is not None:
                yield from self._fail_rest(video, f"the decoder process crashed (exit code {proc.exitcode})")
                if self.pending:
                    self.procs[worker] = self._spawn(worker)
        if self.pending and not any(p.is_alive() for p in self.procs.values()):
            for video in list(self.pending):
                yield from self._fail_rest(video, "every decoder process exited before reaching this video")

    def _fail_rest(self, video: str, reason: str) -> Iterator[SegmentFailure]:
        rows = self.pending.pop(video, set())
        for spec in self.groups[video]:
            if spec.row in rows:
                yield SegmentFailure(spec, "unreadable_video", f"{video}: {reason}")
