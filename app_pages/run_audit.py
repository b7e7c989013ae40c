"""Run an audit from the app: a manifest path in, a progress bar, then the new audit opens."""

from pathlib import Path

import streamlit as st

from auditor.config import AuditConfig
from indexer.embedders import DEFAULT_MODEL, OFFLINE_MODEL
from indexer.pipeline import IndexConfig

st.title("Run an audit")
st.caption(
    "Indexes what is missing, runs every check and writes the report; the Milvus file is held only while it runs."
)
manifest = st.text_input("Manifest", placeholder="/data/sports/manifest.csv", key="run_manifest")
c1, c2, c3 = st.columns(3)
dataset = c1.text_input("Dataset name", value=Path(manifest).stem if manifest else "", key="run_dataset")
model = c2.selectbox(
    "Model", [OFFLINE_MODEL, DEFAULT_MODEL], help="clip needs its weights (hub or local checkpoint)", key="run_model"
)
out = c3.text_input("Output folder", value="audit_out", key="run_out")

if st.button("Run the audit", type="primary", disabled=not (manifest and dataset), key="run_go"):
    from auditor.audit import run_audit
    from indexer.embedders import EmbedderUnavailable
    from taxonomy_core.formats import ManifestError
    from taxonomy_core.store import StoreError

    bar = st.progress(0.0, text="indexing")

    def on_index(p):
        bar.progress(p.done / max(p.total, 1), text=f"indexing {p.done}/{p.total} clips · {p.clips_per_s:.2f} clips/s")

    def on_check(name, result):
        bar.progress(1.0, text=f"check {name} done ({result.seconds:.1f}s)")

    try:
        outcome = run_audit(
            Path(manifest),
            IndexConfig(dataset=dataset, model=model, uri=st.session_state["uri"]),
            AuditConfig(),
            Path(out),
            index_progress=on_index,
            check_progress=on_check,
        )
    except (ManifestError, StoreError, EmbedderUnavailable, ValueError, FileNotFoundError) as e:
        st.error(str(e))
        st.stop()
    st.session_state["run_result"] = str(outcome.out_dir)
    st.success(
        f"{len(outcome.report['findings'])} findings, {outcome.index.indexed} clips indexed now, "
        f"{len(outcome.index.failed)} rows not indexed. Pick `{outcome.out_dir}` in the sidebar to open it."
    )
