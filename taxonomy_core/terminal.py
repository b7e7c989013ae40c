"""What both command-line tools show: one stderr console, quiet third-party logs, the progress bar, tables, errors."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(stderr=True)


def quiet_libraries() -> None:
    """Users see our progress and summary, not third-party load bars and retries."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("sentence_transformers", "transformers", "huggingface_hub", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in ("pymilvus", "milvus_lite", "grpc"):  # their failures reach the user as one StoreError, said once
        logging.getLogger(name).setLevel(logging.CRITICAL)


class IndexProgress:
    """The indexing bar: call it with each `indexer.pipeline.Progress`, `note` a stage, `finish` with the report.

    Until the first batch is written the job is reading, loading the model and decoding: the bar says so
    instead of `0/None`; at the end it shows the job's own counts (new, already present, not indexed).
    """

    def __init__(self, bar: Progress, task: TaskID):
        self.bar, self.task = bar, task

    def __call__(self, p) -> None:
        eta = f"ETA {p.eta_s:.0f}s" if p.eta_s is not None and p.done < p.total else ""
        rate = f"{p.clips_per_s:.2f} clips/s  {p.frames_per_s:.1f} frames/s  {eta}"
        count = f"{p.done}/{p.total} new clips"
        self.bar.update(self.task, description="indexing", completed=p.done, total=max(p.total, 1), count=count)
        self.bar.update(self.task, rate=rate)

    def note(self, description: str, count: str = "") -> None:
        self.bar.update(self.task, description=description, count=count, rate="")

    def finish(self, report) -> None:
        """The job's counts (an `indexer.pipeline.IndexReport`), in place of the last batch's."""
        parts = [f"{report.indexed} new", f"{report.already_present} already present"]
        parts += [f"{len(report.failed)} not indexed"] if report.failed else []
        described = "indexed" if report.indexed else "nothing new to index"
        self.bar.update(self.task, description=described, completed=1, total=1, count=" · ".join(parts), rate="")


@contextmanager
def progress_bar():
    """A rich progress bar (clips/s, frames/s, ETA) and the callback that drives it."""
    columns = (
        SpinnerColumn(finished_text="✓"),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[count]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("reading the manifest, loading the model, decoding", total=None, count="", rate="")
        yield IndexProgress(bar, task)


def table(*headers: str, **options) -> Table:
    """A rich table whose cells wrap instead of being cut: file names and paths stay whole at any width."""
    out = Table(**options)
    for header in headers:
        out.add_column(header, overflow="fold")
    return out


@contextmanager
def user_errors(*errors: type[BaseException]):
    """Bad input and unreachable services end in one red line and exit code 2, never a traceback."""
    try:
        yield
    except errors as e:
        fail(str(e))
        raise typer.Exit(2) from e


def fail(message: str) -> None:
    """One red line; the message is printed as written (a path with brackets is not read as markup)."""
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
