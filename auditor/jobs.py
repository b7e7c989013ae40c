"""An audit run as its own process (`python -m auditor.jobs FOLDER`), which the app follows through a status file.

The app never runs a job in its own process: a job holds the Milvus Lite file, loads a model and
spawns decoders, and Streamlit's script threads are no place for that. The job folder (under the
state folder) holds spec.json, status.json (rewritten atomically) and log.txt.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from auditor.access import AccessRefused, readable_input
from auditor.workspace import remember_audit, state_dir, write_atomic
from taxonomy_core.names import check_dataset_name

log = logging.getLogger(__name__)

JOBS_DIR = "jobs"
FINAL = ("done", "failed", "stopped", "lost")
ROOT = Path(__file__).resolve().parents[1]  # the project, importable by the job wherever the app runs
_CHILDREN: dict[int, subprocess.Popen] = {}  # jobs this process started (polled, so none is left a zombie)


@dataclass(frozen=True)
class JobSpec:
    """What to audit and where the report goes; `data_roots`: the only folders the job may read videos from."""

    manifest: str
    dataset: str
    model: str
    uri: str
    out: str
    data_roots: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_dataset_name(self.dataset)  # a DatasetNameError (a ValueError) before any process starts


@dataclass
class JobStatus:
    """Where a job stands: `state` is starting, indexing, checking, done, failed, stopped or lost."""

    state: str = "starting"
    done: int = 0
    total: int | None = None
    message: str = "starting"
    out: str = ""
    pid: int = 0
    updated: float = field(default_factory=time.time)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in FINAL

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


def start_audit_job(spec: JobSpec) -> Path:
    """Start the audit in a new process (its own session, so stopping it stops its decoders); return its folder."""
    folder = state_dir() / JOBS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps(asdict(spec), indent=1))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with (folder / "log.txt").open("wb") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "auditor.jobs", str(folder)],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    _CHILDREN[child.pid] = child
    _write_status(folder, JobStatus(pid=child.pid, out=spec.out, message="starting the job"))
    return folder


def read_job(folder: Path) -> JobStatus:
    """The job's last status; `lost` when its process ended without saying how."""
    try:
        status = JobStatus(**json.loads((Path(folder) / "status.json").read_text()))
    except (OSError, ValueError, TypeError):
        return JobStatus(state="lost", message=f"no readable status in {folder}")
    if not status.finished and not _alive(status.pid):
        status.state, status.message = "lost", f"the job ended without a result: see {Path(folder) / 'log.txt'}"
    return status


def running_job() -> Path | None:
    """The newest job still running, so a reloaded page finds it again."""
    root = state_dir() / JOBS_DIR
    folders = sorted((p for p in root.iterdir() if p.is_dir()), reverse=True) if root.is_dir() else []
    return next((f for f in folders[:20] if not read_job(f).finished), None)


def stop_job(folder: Path) -> None:
    """Stop a running job and its decoding workers (the audit folder keeps whatever it had)."""
    status = read_job(folder)
    if status.finished:
        return
    try:
        os.killpg(status.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    _alive(status.pid)  # reap it if it was ours
    _write_status(folder, JobStatus(**{**asdict(status), "state": "stopped", "message": "stopped"}))


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def _write_status(folder: Path, status: JobStatus) -> None:
    status.updated = time.time()
    write_atomic(Path(folder) / "status.json", json.dumps(asdict(status)))


# --- the job process -------------------------------------------------------------------------


def run_job(folder: Path) -> int:
    """Run the audit a job folder describes, keeping status.json current; 0 when it wrote the report."""
    from auditor.audit import run_audit
    from auditor.checks import build_checks
    from auditor.config import AuditConfig
    from indexer.embedders import EmbedderUnavailable
    from indexer.pipeline import IndexConfig
    from indexer.validation import ValidationConfig
    from taxonomy_core.formats import ManifestError
    from taxonomy_core.store import StoreError
    from taxonomy_core.terminal import quiet_libraries

    quiet_libraries()
    spec = JobSpec(**json.loads((folder / "spec.json").read_text()))
    status = JobStatus("indexing", pid=os.getpid(), out=spec.out, message="reading the manifest, loading the model")
    _write_status(folder, status)
    n_checks = len(build_checks(None, AuditConfig()))

    def on_index(p) -> None:
        status.done, status.total = p.done, p.total
        eta = f" · about {p.eta_s:.0f} s left" if p.eta_s is not None and p.done < p.total else ""
        status.message = f"indexing: {p.done} of {p.total} new segments read · {p.clips_per_s:.2f} clips/s{eta}"
        _write_status(folder, status)

    def on_check(name, result) -> None:
        if status.state != "checking":
            status.state, status.done, status.total = "checking", 0, n_checks
        status.done += 1
        status.message = f"checks: {status.done}/{n_checks} ({name} took {result.seconds:.1f}s)"
        _write_status(folder, status)

    roots = [Path(r) for r in spec.data_roots]
    validation = ValidationConfig(video_roots=tuple(spec.data_roots))
    config = IndexConfig(dataset=spec.dataset, model=spec.model, uri=spec.uri, validation=validation)
    try:
        manifest = readable_input(spec.manifest, roots)  # again here: the spec file is the job's only input
        outcome = run_audit(manifest, config, AuditConfig(), spec.out, index_progress=on_index, check_progress=on_check)
    except (AccessRefused, ManifestError, StoreError, EmbedderUnavailable, ValueError, OSError, KeyError) as e:
        status.state, status.message = "failed", public_message(e)
        _write_status(folder, status)
        return 2
    remember_audit(outcome.out_dir, spec.manifest)
    status.state, status.out = "done", str(outcome.out_dir.resolve())
    status.summary = {
        "findings": len(outcome.report["findings"]),
        "indexed": outcome.index.indexed,
        "already_present": outcome.index.already_present,
        "not_indexed": len(outcome.index.failed),
    }
    status.message = "done"
    _write_status(folder, status)
    return 0


def public_message(error: BaseException) -> str:
    """What the page (whoever reaches it) may read about a failure: a manifest error without the file's content."""
    return getattr(error, "public", None) or str(error)


def main(argv: list[str]) -> int:
    folder = Path(argv[0])
    try:
        return run_job(folder)
    except BaseException as e:  # anything unexpected: the page says so, the log has the traceback
        log.exception("the audit job failed")
        status = JobStatus(
            state="failed", pid=os.getpid(), message=f"the audit failed ({type(e).__name__}): see {folder / 'log.txt'}"
        )
        _write_status(folder, status)
        return 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main(sys.argv[1:]))
