"""Reference footage (`auditor audit --reference REF`): unlabelled video from where the model will run, indexed
into the same store as `<dataset>__reference` through the ordinary indexer and loaded beside the audited clips.

REF is a manifest in any format the indexer reads, a table with a `video` column and no `label` column, or a
folder of videos (searched recursively). What is unlabelled gets the placeholder label "(reference)"; a table
the indexer cannot read as it is becomes `reference_manifest.csv` in the audit folder.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import replace
from pathlib import Path

import pandas as pd

from auditor.context import ReferenceFootage
from indexer.embedders import Embedder
from indexer.pipeline import IndexConfig, run_indexing
from indexer.video import SamplingConfig
from taxonomy_core.schema import VIDEO_EXTENSIONS
from taxonomy_core.store import DatasetLayout, Store, StoreError

log = logging.getLogger(__name__)

REFERENCE_LABEL = "(reference)"
REFERENCE_SUFFIX = "__reference"
MANIFEST_NAME = "reference_manifest.csv"
TABLE_READERS = {".csv": pd.read_csv, ".jsonl": lambda p: pd.read_json(p, lines=True), ".parquet": pd.read_parquet}


def reference_dataset(dataset: str) -> str:
    return dataset + REFERENCE_SUFFIX


def reference_manifest(source: Path, out_dir: Path, video_root: Path | None = None) -> Path:
    """A manifest the indexer reads as it is: `source` itself when it has labels, else one written to `out_dir`."""
    if source.is_dir():
        videos = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not videos:
            raise ValueError(f"--reference {source}: no video files ({', '.join(VIDEO_EXTENSIONS)}) in the folder")
        rows = [{"video": str(p.resolve()), "folder": str(p.parent.relative_to(source))} for p in videos]
        return _write(rows, out_dir)
    if not source.exists():
        raise ValueError(f"--reference {source}: no such file or folder")
    reader = TABLE_READERS.get(source.suffix.lower())
    if reader is None:
        return source
    table = reader(source)
    table.columns = [str(c).strip().lower() for c in table.columns]
    if "label" in table.columns or "video" not in table.columns:
        return source  # a labelled manifest, or another format the indexer recognises (e.g. AutoML, headerless)
    root = video_root or source.parent
    table["video"] = [_absolute(str(v), root) for v in table["video"]]
    return _write(table.to_dict("records"), out_dir)


def _absolute(video: str, root: Path) -> str:
    if "://" in video or Path(video).is_absolute():
        return video
    return str((root / video).resolve())


def _write(rows: list[dict], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MANIFEST_NAME
    extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in ("video", "label")]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["video", "label", *extra])
        writer.writeheader()
        writer.writerows({**r, "label": REFERENCE_LABEL} for r in rows)
    return path


def load_reference(
    source: str | Path,
    index_config: IndexConfig,
    store: Store,
    embedder: Embedder,
    out_dir: Path,
    layout: DatasetLayout,
    progress=None,
) -> ReferenceFootage:
    """Index the reference footage like the dataset (its model and its stored sampling) and load clips and vectors."""
    source = Path(source)
    manifest = reference_manifest(source, out_dir, index_config.read.video_root)
    sampling = SamplingConfig.recorded(layout.sampling) if layout.sampling else index_config.sampling
    config = replace(
        index_config, dataset=reference_dataset(index_config.dataset), manifest_format="auto", sampling=sampling
    )
    report = run_indexing(manifest, config, store=store, embedder=embedder, progress=progress)
    ref_layout = store.layout(config.dataset, embedder.model_id)
    if ref_layout is None:
        reasons = "; ".join(f"{f.video or f.row}: {f.reason}" for f in report.failed[:5])
        raise StoreError(f"none of the reference footage in {source} could be indexed ({reasons})")
    failed = {f.row for f in report.failed}
    wanted = {c.clip_id for c in report.manifest.clips if c.row not in failed}
    matrix = store.clip_matrix(ref_layout, wanted)
    not_indexed = [{"row": f.row, "video": f.video, "reason": f.reason} for f in report.failed]
    log.info("reference footage: %d clips indexed as %s, %d not", len(matrix.table), config.dataset, len(failed))
    return ReferenceFootage(
        matrix.table, matrix.vectors, config.dataset, str(source.resolve()), not_indexed, ref_layout
    )
