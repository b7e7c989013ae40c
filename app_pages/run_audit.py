"""Run an audit from the app: a manifest in, a job process the page follows, then the new audit opens."""

import time
from pathlib import Path

import streamlit as st

from app_pages.literal import literal
from app_pages.shared import current_audit, readable_roots, recent_audits, store_uri, writable_root
from auditor import service
from auditor.access import AccessRefused, readable_input, writable_folder
from taxonomy_core.names import suggest_dataset_name


def fill_dataset() -> None:
    """The dataset name follows the manifest (the open audit's dataset for its own manifest, else the file's
    name) until someone types their own."""
    if st.session_state.get("run_dataset_auto", True):
        manifest = st.session_state.get("run_manifest", "").strip()
        same = opened and manifest and Path(manifest) == Path(opened.report.get("manifest") or "")
        st.session_state["run_dataset"] = (
            opened.report["dataset"] if same else (suggest_dataset_name(Path(manifest).stem) if manifest else "")
        )


opened = current_audit(stop=False)  # the defaults: the dataset, manifest and model the open audit was made with
if opened:
    st.session_state.setdefault("run_manifest", str(opened.report.get("manifest") or ""))
    st.session_state.setdefault("run_dataset", opened.report["dataset"])
    if opened.report["model"] in service.MODEL_CHOICES:
        st.session_state.setdefault("run_model", opened.report["model"])


def open_audit(folder: str) -> None:
    st.session_state["audit_dir"] = folder
    recent_audits.clear()


def follow(job: str) -> None:
    """The job's progress, re-read every second while it runs."""
    status = service.read_job(Path(job))
    if status.finished:
        recent_audits.clear()
    if status.state == "done":
        s = status.summary
        st.success(
            f"Done: {s.get('findings')} findings; {s.get('indexed')} clips indexed now, {s.get('already_present')} "
            f"already present, {s.get('not_indexed')} rows not indexed. The audit is in {literal(status.out)} "
            "and under Recent audits."
        )
        if st.button("Open it", type="primary", key="run_open", on_click=open_audit, args=(status.out,)):
            st.switch_page("app_pages/overview.py")  # the whole app reruns (this is a fragment) on the new audit
    elif status.state in ("failed", "lost"):
        st.error(f"The audit did not finish: {literal(status.message)}")
    elif status.state == "stopped":
        st.info("Stopped. Whatever was indexed stays in Milvus; running the audit again resumes from there.")
    else:
        started = (Path(job) / "spec.json").stat().st_mtime  # written when the job started
        st.progress(status.fraction, text=literal(f"{status.message} · {time.time() - started:.0f} s so far"))
        st.caption("Milvus is busy while the job runs: a Lite file is held by the job until it ends.")
        if st.button("Stop the job", key="run_stop"):
            service.stop_job(Path(job))
            st.rerun()
    if st.session_state.get("run_was_running") and status.finished:
        st.session_state["run_was_running"] = False
        st.rerun()  # the whole page: stop polling, enable the button
    st.session_state["run_was_running"] = not status.finished


st.title("Run an audit")
st.caption(
    "Indexes what is missing, runs every check and writes the report, in a separate process; the Milvus Lite file "
    "is held only while it runs."
)
try:
    roots, out_root = readable_roots(), writable_root()
except AccessRefused as e:  # the operator's settings are wrong (an output root inside the code): say so
    st.error(literal(e))
    st.stop()
manifest = st.text_input(
    "Manifest",
    placeholder="/data/sports/manifest.csv",
    key="run_manifest",
    on_change=fill_dataset,
    help="A manifest file or a folder of class folders, under the data folders the operator configured.",
).strip()
st.caption(
    "Reads under: " + (", ".join(literal(r) for r in roots) or "no data folder (the operator sets --data-root)")
    + f" · writes under: {literal(out_root)} · Milvus: {literal(store_uri())}"
)  # fmt: skip
c1, c2, c3 = st.columns(3)
dataset = c1.text_input(
    "Dataset name", key="run_dataset", on_change=lambda: st.session_state.update(run_dataset_auto=False)
).strip()
model = c2.selectbox(
    "Model", service.MODEL_CHOICES, help="clip needs its weights (hub or local checkpoint)", key="run_model"
)
out = c3.text_input(
    "Output folder", value="audit_out", key="run_out", help="A folder name under the output root"
).strip()

job = st.session_state.get("run_job") or service.running_job()
running = bool(job) and not service.read_job(Path(job)).finished
if st.button("Run the audit", type="primary", disabled=not (manifest and dataset and out) or running, key="run_go"):
    try:
        source, folder = readable_input(manifest, roots), writable_folder(out, out_root)
        spec = service.JobSpec(
            manifest=str(source),
            dataset=dataset,
            model=model,
            uri=store_uri(),
            out=str(folder),
            data_roots=[str(r) for r in roots],
        )
    except (AccessRefused, ValueError) as e:
        st.error(literal(e))
        st.stop()
    job = st.session_state["run_job"] = str(service.start_audit_job(spec))
    running = True
if job:
    st.fragment(follow, run_every=1.0 if running else None)(job)
