"""The `indexer` command: a thin shell over run_indexing that draws progress and the summary."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import typer

from indexer.embedders import DEFAULT_MODEL, EmbedderUnavailable
from indexer.executors import ExecutorUnavailable
from indexer.pipeline import IndexConfig, IndexReport, run_indexing
from indexer.summary import print_summary, summary_dict
from indexer.validation import validate
from indexer.video import SamplingConfig
from taxonomy_core.formats import KINETICS_PATTERN, ManifestError, ReadOptions
from taxonomy_core.precision import PRECISION_HELP, check_precision
from taxonomy_core.store import Store, StoreError, default_uri, is_server, open_store
from taxonomy_core.terminal import console, fail, progress_bar, quiet_libraries, table

app = typer.Typer(
    help="Index labelled video segments into Milvus for the taxonomy audit.",
    no_args_is_help=True,
    rich_markup_mode=None,  # help text as written: flags show no <bool>
)
FORMATS = "auto, csv, jsonl, parquet, automl, kinetics, folder"
VIDEO_ROOT_HELP = (
    "Where relative paths, Kinetics files and gs:// or s3:// paths resolve locally (default: the manifest folder)."
)
URI_HELP = "Milvus Lite file or server URL (env AUDITOR_MILVUS_URI; default ./auditor.db)."
TOKEN_HELP = "Milvus server token, user:password (env AUDITOR_MILVUS_TOKEN)."


@app.command()
def index(
    manifest: Path = typer.Argument(..., help="CSV/JSONL/Parquet, AutoML CSV, Kinetics CSV, or a folder per class."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Name of the dataset in the store."),
    model: str = typer.Option(
        DEFAULT_MODEL, "--model", "-m", help="clip:ARCH/PRETRAINED, vivit:NAME_OR_PATH, or effnet-lite0 (offline)."
    ),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
    token: str | None = typer.Option(None, "--token", help=TOKEN_HELP),
    batch_size: int | None = typer.Option(
        None, "--batch-size", "-b", min=1, help="Images per model call (default: 128 on GPU, 8 on CPU)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 ..."),
    precision: str = typer.Option("auto", "--precision", callback=check_precision, help=PRECISION_HELP),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=0,
        help="Decoding processes (0 = decode in the main process; default: at most 4 beside a CPU model, "
        "a core each but one beside a GPU, at most 32).",
    ),
    fmt: str = typer.Option("auto", "--format", help=f"The manifest's format: {FORMATS}."),
    video_root: Path | None = typer.Option(None, "--video-root", help=VIDEO_ROOT_HELP),
    pattern: str = typer.Option(KINETICS_PATTERN, "--pattern", help="Kinetics file name pattern under --video-root."),
    frames: int = typer.Option(8, "--frames", min=1, help="Frames per clip embedding."),
    timeline_fps: float = typer.Option(
        2.0, "--timeline-fps", min=0.1, help="Timeline sampling rate for the temporal check."
    ),
    file_timeout: float = typer.Option(
        600.0, "--file-timeout", min=0.01, help="Seconds one video may take to open and decode; its rows then fail."
    ),
    prune: bool = typer.Option(False, "--prune", help="Delete stored clips whose rows are no longer in the manifest."),
    executor: str = typer.Option(
        "local", "--executor", help="local (this machine) or ray (a Ray cluster; needs a Milvus server --uri)."
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help="Ray cluster to join, e.g. ray://HEAD:10001 or HEAD:6379 (default: RAY_ADDRESS or a local one).",
    ),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 if any row failed."),
    report_path: Path | None = typer.Option(None, "--report", help="Write the summary with every failed row as JSON."),
) -> None:
    """Validate a manifest, sample each video once, embed, and upsert into Milvus (resumable)."""
    quiet_libraries()
    config = IndexConfig(
        dataset=dataset,
        model=model,
        uri=uri,
        token=token,
        device=device,
        precision=precision,
        batch_size=batch_size,
        manifest_format=fmt,
        read=ReadOptions(video_root, pattern),
        sampling=SamplingConfig(frames_per_clip=frames, timeline_fps=timeline_fps, file_timeout_s=file_timeout),
        prune=prune,
        executor=executor,
        ray_address=ray_address,
    )
    if workers is not None:
        config = replace(config, workers=workers)
    try:
        report = run_with_progress(manifest, config)
    except (ManifestError, StoreError, EmbedderUnavailable, ExecutorUnavailable) as e:
        fail(str(e))
        raise typer.Exit(2) from e
    print_summary(report)
    if report_path:
        report_path.write_text(json.dumps(summary_dict(report), indent=2))
        console.print(f"summary with every failed row: {report_path}")
    raise typer.Exit(1 if strict and report.failed else 0)


def run_with_progress(manifest: Path, config: IndexConfig) -> IndexReport:
    with progress_bar() as bar:
        report = run_indexing(manifest, config, progress=bar)
        bar.finish(report)
    return report


@app.command("validate")
def validate_cmd(
    manifest: Path = typer.Argument(..., help="The manifest to check (any format `index` reads)."),
    fmt: str = typer.Option("auto", "--format", help=f"The manifest's format: {FORMATS}."),
    video_root: Path | None = typer.Option(None, "--video-root", help=VIDEO_ROOT_HELP),
    pattern: str = typer.Option(KINETICS_PATTERN, "--pattern", help="Kinetics file name pattern under --video-root."),
) -> None:
    """Check a manifest's rows and classes without decoding or embedding anything."""
    from taxonomy_core.formats import read_manifest

    try:
        parsed = read_manifest(manifest, fmt, ReadOptions(video_root, pattern))
    except ManifestError as e:
        fail(str(e))
        raise typer.Exit(2) from e
    result = validate(parsed)
    console.print(
        f"{parsed.row_count} rows ({parsed.format}), {len(result.excluded)} excluded, {len(result.findings)} findings"
    )
    for finding in result.findings:
        colour = "red" if finding.severity == "error" else "yellow"
        console.print(f"[{colour}]{finding.severity}[/{colour}] {finding.kind}: {finding.message}")
    raise typer.Exit(1 if result.excluded else 0)


@app.command("list")
def list_datasets(
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
    token: str | None = typer.Option(None, "--token", help=TOKEN_HELP),
) -> None:
    """Datasets and models in the store, with their clip counts."""
    quiet_libraries()
    store = _open(uri, token)
    listed = table("dataset", "model", "dim", "text", "clips", "manifest")
    for layout in store.layouts():
        listed.add_row(
            layout.dataset,
            layout.model_id,
            str(layout.dim),
            layout.text_space or "-",
            str(store.count(layout)),
            layout.manifest,
        )
    console.print(listed)
    store.close()


@app.command()
def drop(
    dataset: str = typer.Argument(..., help="The dataset whose collections to delete."),
    model: str = typer.Option(..., "--model", "-m", help="Which of its embeddings (as `indexer list` shows it)."),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
    token: str | None = typer.Option(None, "--token", help=TOKEN_HELP),
) -> None:
    """Delete one (dataset, model) pair's collections."""
    quiet_libraries()
    store = _open(uri, token)
    layout = store.layout(dataset, model)
    if layout is None:
        fail(f"no dataset {dataset!r} with model {model!r} at {store.uri}")
        raise typer.Exit(2)
    store.drop(layout)
    console.print(f"dropped {dataset} / {model}")
    store.close()


def _open(uri: str | None, token: str | None) -> Store:
    """The store for `list` and `drop`: a Lite file that is not there is an error, not a new empty file."""
    uri = uri or default_uri()
    if not is_server(uri) and not Path(uri).exists():
        fail(f"no Milvus Lite file at {uri}: nothing is indexed there yet; pass --uri to the file that holds your data")
        raise typer.Exit(2)
    try:
        return open_store(uri, token)
    except StoreError as e:
        fail(str(e))
        raise typer.Exit(2) from e
