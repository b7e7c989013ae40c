"""run_audit: index what is missing, run every check, write report.json, report.html and the fixed manifest."""

from __future__ import annotations

import base64
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from auditor.checks import CheckResult, build_checks, params_of, run_checks
from auditor.cliptable import ClipTable, table_name, write_table
from auditor.config import AuditConfig
from auditor.context import AuditContext
from auditor.fixplan import plan_fixes
from auditor.outputs import remove_stale
from auditor.reconcile import reconcile
from auditor.reference import load_reference
from auditor.report import build_report, write_html, write_json
from auditor.searchcopies import copies_name, write_copies
from auditor.thumbfile import ThumbnailFile, thumbs_name, write_thumbnails
from indexer.embedders import Embedder, load_embedder
from indexer.pipeline import IndexConfig, IndexReport, run_indexing
from taxonomy_core import schema as S
from taxonomy_core.edits import EDITS_FILE, Edit, edits_records, write_edits
from taxonomy_core.formats import write_fixed_manifest
from taxonomy_core.store import Store, StoreError, open_store

log = logging.getLogger(__name__)


@dataclass
class AuditOutcome:
    report: dict[str, Any]
    index: IndexReport
    results: list[CheckResult]
    edits: list[Edit]
    out_dir: Path
    json_path: Path
    html_path: Path
    manifest_path: Path
    clips: ClipTable  # the clips' records, column by column (report.json no longer holds them)


def run_audit(
    manifest: str | Path,
    index_config: IndexConfig,
    audit_config: AuditConfig = AuditConfig(),
    out_dir: str | Path = "audit_out",
    *,
    store: Store | None = None,
    embedder: Embedder | None = None,
    checks: list[str] | None = None,
    reference: str | Path | None = None,
    slices: tuple[str, ...] = (),
    index_progress=None,
    check_progress=None,
) -> AuditOutcome:
    """`reference`: footage from where the model will run (a manifest or a folder of videos), indexed as
    `<dataset>__reference` and compared with the dataset; `slices`: manifest columns to judge the probe per value of."""
    out_dir = Path(out_dir)
    audit_config = with_slices(audit_config, slices)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    own_store = store is None
    store = store or open_store(index_config.uri, index_config.token)
    try:
        embedder = embedder or load_embedder(
            index_config.model, index_config.device, index_config.batch_size, index_config.precision
        )
        index = run_indexing(manifest, index_config, store=store, embedder=embedder, progress=index_progress)
        layout = store.layout(index_config.dataset, embedder.model_id)
        if layout is None:
            raise StoreError(
                f"nothing of {manifest} could be indexed, so there is nothing to audit: see the failed rows"
            )
        failed = {f.row for f in index.failed}
        wanted = {c.clip_id for c in index.manifest.clips if c.row not in failed}
        encoder = embedder.embed_texts if embedder.text_space else None
        ctx = AuditContext.from_store(store, layout, wanted, config=audit_config, text_encoder=encoder)
        check_slice_columns(ctx)
        if reference is not None:
            ctx.reference = load_reference(reference, index_config, store, embedder, out_dir, layout, index_progress)
        built = build_checks(checks, audit_config)
        results = run_checks(ctx, built, check_progress)
        meta = {
            "run_id": run_id,
            "model": layout.model_id,
            "dataset": layout.dataset,
            "manifest": str(Path(manifest).resolve()),
            "manifest_format": index.manifest.format,
            "uri": store.uri,
            "text_search": layout.text_space,
            "rows": index.manifest.row_count,
            "not_indexed": len(index.failed),
            "read_options": index_config.read.to_dict(),
        }
        written = write_outputs(
            ctx, results, meta, params_of(built), out_dir, index, index_config.validation.min_per_class
        )
    finally:
        if own_store:
            store.close()
    return AuditOutcome(written.report, index, results, written.edits, out_dir, *written.paths, written.clips)


@dataclass
class Written:
    report: dict[str, Any]
    edits: list[Edit]
    paths: tuple[Path, Path, Path]  # report.json, report.html, the fixed manifest
    clips: ClipTable


def write_outputs(
    ctx, results, meta: dict[str, Any], params, out_dir: Path, index: IndexReport, min_per_class: int
) -> Written:
    """Reconcile the checks' findings and edits with the rows indexing skipped, then write every output."""
    findings, check_edits = reconcile(results)
    plan = plan_fixes(ctx, [Edit(f.row, "drop", f.reason, f.kind) for f in index.failed] + check_edits, min_per_class)
    edits = plan.edits
    report, clips = build_report(ctx, results, index.findings + findings + plan.findings, meta, params)
    report["fix_plan"] = plan.to_dict()
    report["edits"] = edits_records(edits)  # report.json, written last, is the commit point of the set
    run_id = meta["run_id"]
    report["clip_table"], report["search_copies"] = table_name(run_id), copies_name(run_id)
    report["thumbnails"] = thumbs_name(run_id) if ctx.has_companions else None
    # Every file is written whole (temporary file, then rename); report.json goes last and names the run,
    # so a run killed half-way leaves files whose run ids disagree, which the app refuses to mix. The clip table
    # and the search copies are named after their run: the last complete run's stay until this one commits.
    write_table(clips.table, out_dir, run_id)
    write_copies(out_dir, run_id, ctx.vectors, ctx.text_vectors)
    thumbs = None
    if ctx.has_companions:  # every clip's, for the app's pages (the store is left closed while they show)
        ids = clips.column("clip_id").tolist()
        thumbs = ThumbnailFile(write_thumbnails(ctx.store, ctx.layout, out_dir, run_id, ids), run_id, len(ids))
    html_path = write_html(report, clips, flagged_thumbnails(ctx, report, clips, thumbs), out_dir / "report.html")
    manifest_path = write_fixed_manifest(index.manifest, edits, out_dir)
    write_edits(edits, out_dir / EDITS_FILE, run_id)
    json_path = write_json(report, out_dir / "report.json")
    remove_stale(out_dir, run_id)
    return Written(report, edits, (json_path, html_path, manifest_path), clips)


def flagged_thumbnails(
    ctx, report: dict[str, Any], clips: ClipTable, thumbs: ThumbnailFile | None = None, limit: int = 2000
) -> dict[str, str]:
    """Thumbnails of the clips that findings name (the report shows those, not all), reference clips included;
    the dataset's from the thumbnail file just written (the store would load every clip shard again)."""
    by_row = dict(zip(clips.column("row").tolist(), clips.column("clip_id")))
    named = (r for f in report["findings"] for r in f["rows"][:8] + [e["row"] for e in f["evidence"][:8]])
    ids = list(dict.fromkeys(by_row[r] for r in named if r in by_row))[:limit]
    if not ctx.has_companions:
        return {}
    got = thumbs.get([clips.by_id[c] for c in ids]) if thumbs is not None else {}
    found = {c: base64.b64encode(got[clips.by_id[c]] or b"").decode("ascii") for c in ids if clips.by_id[c] in got}
    lacking = [c for c in ids if c not in found]  # what the file lacks, from the store
    found |= ctx.store.thumbnails(ctx.layout, lacking) if lacking else {}
    if ctx.reference is not None and ctx.reference.layout is not None:
        far = [c for f in report["findings"] for c in ((f.get("suggestion") or {}).get("reference_clips") or [])[:8]]
        if far:
            found.update(ctx.store.thumbnails(ctx.reference.layout, far[:limit]))
    return found


def with_slices(config: AuditConfig, slices: tuple[str, ...]) -> AuditConfig:
    """`--slice COLUMN` adds to the weak-slices check's `columns` (from the TOML config, if any)."""
    if not slices:
        return config
    own = dict(config.checks.get("weak_slices", {}))
    own["columns"] = tuple(dict.fromkeys([*own.get("columns", ()), *slices]))
    return replace(config, checks={**config.checks, "weak_slices": own})


def check_slice_columns(ctx) -> None:
    """A slice column the manifest does not have is a user error, said before any check runs."""
    wanted = ctx.config.checks.get("weak_slices", {}).get("columns", ())
    known = sorted({k for extra in ctx.clips[S.EXTRA] for k in (extra or {})})
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise ValueError(
            f"slice column(s) {', '.join(unknown)} are not in the manifest; its other columns: "
            f"{', '.join(known) or 'none'} (video, start, end, label and split are not slices)"
        )
