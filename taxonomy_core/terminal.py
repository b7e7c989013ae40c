"""What both command-line tools show: one stderr console, quiet third-party logs, the progress bar, user errors."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def quiet_libraries() -> None:
    """Users see our progress and summary, not third-party load bars and retries."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("pymilvus", "milvus_lite", "sentence_transformers", "transformers", "huggingface_hub", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def progress_bar():
    """A rich progress bar (clips/s, frames/s, ETA) and the callback that drives it."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} clips"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("indexing", total=None, rate="")

        def update(p) -> None:  # an indexer.pipeline.Progress
            rate = f"{p.clips_per_s:.2f} clips/s  {p.frames_per_s:.1f} frames/s"
            bar.update(task, completed=p.done, total=p.total, rate=rate)

        yield update


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
