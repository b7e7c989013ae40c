"""The `indexer` command as users run it: exit codes, summary, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from indexer import cli
from indexer.cli import app
from indexer.synthetic import write_video
from tests.conftest import write_csv

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(cli.console, "width", 300)  # paths and reasons unwrapped


def small_manifest(tmp_path):
    write_video(tmp_path / "a.mp4", 30, fps=10, pattern="moving")
    rows = [
        {"video": "a.mp4", "start": "0", "end": "1.5", "label": "square"},
        {"video": "a.mp4", "start": "1.5", "end": "3", "label": "square"},
        {"video": "gone.mp4", "start": "0", "end": "1", "label": "other"},
    ]
    return write_csv(tmp_path / "m.csv", rows)


def test_index_summary_strict_and_report(tmp_path):
    manifest = small_manifest(tmp_path)
    args = [
        "index",
        str(manifest),
        "--dataset",
        "d",
        "--model",
        "effnet-lite0",
        "--uri",
        str(tmp_path / "m.db"),
        "--workers",
        "0",
        "--frames",
        "2",
    ]
    result = runner.invoke(app, args + ["--report", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "indexed now" in result.output and "gone.mp4" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["indexed"] == 2 and [f["row"] for f in report["failed"]] == [2]
    again = runner.invoke(app, args + ["--strict"])
    assert again.exit_code == 1 and "already present" in again.output
    listed = runner.invoke(app, ["list", "--uri", str(tmp_path / "m.db")])
    assert "effnet-lite0" in listed.output and listed.exit_code == 0


def test_unreachable_milvus_is_one_clear_error(tmp_path):
    manifest = small_manifest(tmp_path)
    result = runner.invoke(app, ["index", str(manifest), "--dataset", "d", "--uri", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "cannot open Milvus at http://127.0.0.1:9" in result.output and "Traceback" not in result.output


def test_validate_command(tmp_path):
    manifest = small_manifest(tmp_path)
    result = runner.invoke(app, ["validate", str(manifest)])
    assert result.exit_code == 0 and "too_few_examples" in result.output


def test_store_and_manifest_modules_import_no_torch():
    modules = "taxonomy_core.store, taxonomy_core.formats, auditor.service, indexer.validation, indexer.video"
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
