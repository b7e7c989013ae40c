"""The `indexer` and `auditor` commands as users run them: exit codes, summary, clear errors, help, tables."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from auditor import cli as audit_cli
from auditor.cli import app as audit_app
from indexer import cli
from indexer.cli import app
from indexer.cli import app as index_app
from indexer.synthetic import write_video
from taxonomy_core import terminal
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


@pytest.mark.parametrize("tool", [index_app, audit_app], ids=["indexer", "auditor"])
def test_every_option_and_argument_has_help(tool):
    """Fails when someone adds an option without a description (or one whose help loses its [brackets])."""
    group = typer.main.get_command(tool)
    missing = [
        f"{name} {param.name}"
        for name, command in group.commands.items()
        for param in command.params
        if param.name != "help" and not (getattr(param, "help", None) or "").strip()
    ]
    assert not missing, f"options without help: {missing}"
    for name in group.commands:
        shown = runner.invoke(tool, [name, "--help"], env={"COLUMNS": "120"}).output
        assert "<bool>" not in shown, shown
    assert "[checks.NAME]" in runner.invoke(audit_app, ["audit", "--help"], env={"COLUMNS": "120"}).output


def test_read_commands_leave_no_empty_store_behind(tmp_path):
    missing = tmp_path / "nothing.db"
    result = runner.invoke(audit_app, ["similar", "rabbit", "--dataset", "demo", "--uri", str(missing)])
    assert result.exit_code == 2 and "no Milvus Lite file" in result.output and "Traceback" not in result.output
    assert runner.invoke(app, ["list", "--uri", str(missing)]).exit_code == 2
    assert not missing.exists()


def recording(monkeypatch, width: int) -> Console:
    console = Console(record=True, width=width, force_terminal=False)
    monkeypatch.setattr(terminal, "console", console)
    monkeypatch.setattr(audit_cli, "console", console)
    return console


def test_progress_bar_says_what_it_waits_for_and_what_was_done(monkeypatch):
    console = recording(monkeypatch, 120)
    report = SimpleNamespace(indexed=0, already_present=35, failed=[SimpleNamespace(row=1)])
    with terminal.progress_bar() as bar:
        snapshot = Console(record=True, width=120, force_terminal=False)
        snapshot.print(bar.bar.get_renderable())
        waiting = snapshot.export_text()
        bar.finish(report)
    done = console.export_text()
    assert "reading the manifest, loading the model" in waiting and "None" not in waiting
    assert "nothing new to index" in done and "35 already present · 1 not indexed" in done and "1/1" not in done


def test_tables_wrap_file_names_instead_of_cutting_them(monkeypatch):
    console = recording(monkeypatch, 120)
    name = "/data/datasets/kinetics-700/clips/bicycle_riding_on_a_long_road_0001_000012_000022.mp4"
    shown = terminal.table("row", "video", "kind", "reason")
    shown.add_row("3", name, "unreadable_video", "cannot decode the stream at 12.0s: invalid data found " * 2)
    console.print(shown)
    cells = [line.split("│")[2].strip() for line in console.export_text().splitlines() if line.startswith("│")]
    assert "".join(cells) == name  # whole, wrapped over lines, never cut with an ellipsis


def test_the_demo_ends_with_the_exact_commands_for_its_store(monkeypatch, tmp_path):
    console = recording(monkeypatch, 80)
    folder = tmp_path / "my demo" / "report"
    outcome = SimpleNamespace(report={"dataset": "demo"}, html_path=folder / "report.html", out_dir=folder)
    audit_cli.print_next_steps(outcome, str(tmp_path / "my demo" / "demo.db"), 21)
    lines = console.export_text().splitlines()
    uri = f"--uri '{tmp_path}/my demo/demo.db'"
    assert f"  auditor similar rabbit --dataset demo {uri}" in lines
    assert f"  auditor search --dataset demo {uri} --example 21" in lines
    assert f"  streamlit run app.py -- --audit '{folder}' {uri}" in lines


def test_search_takes_a_row_or_a_clip_id(demo):
    outcome, planted, _, _, uri = demo
    clip_id = next(c["clip_id"] for c in outcome.clips.records() if c["row"] == planted.mislabel)
    args = ["search", "--dataset", "demo", "--uri", uri, "--k", "3", "--example"]
    by_row = runner.invoke(audit_app, [*args, str(planted.mislabel)], env={"COLUMNS": "200"})
    by_id = runner.invoke(audit_app, [*args, clip_id], env={"COLUMNS": "200"})
    assert by_row.exit_code == 0, by_row.output
    ranked = by_row.output[by_row.output.index("┏") :]  # the table, after any model-loading noise
    assert ranked == by_id.output[by_id.output.index("┏") :] and "rabbit" in ranked
    assert f"clips like row {planted.mislabel}: 'phone_call'" in by_row.output  # the query clip is named
    unknown = runner.invoke(audit_app, [*args, "9999"])
    assert unknown.exit_code == 2 and "no indexed clip at manifest row 9999" in unknown.output
