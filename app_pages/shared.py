"""The sidebar (Milvus URI, audit folder) and the cached loaders every page shares.

The app reads the audit folder; it opens Milvus only for thumbnails and live search, and for a
Milvus Lite file only for the moment of each query, so a running job can still take the file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import streamlit as st

from auditor import service
from auditor.workspace import find_audits, load_decisions, load_edits, load_report
from taxonomy_core.store import StoreError, default_uri

AUDIT_ENV = "AUDITOR_AUDIT_DIR"


def launch_args() -> argparse.Namespace:
    """`streamlit run app.py -- --audit DIR --uri URI`; environment variables otherwise."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--audit", default=os.environ.get(AUDIT_ENV))
    parser.add_argument("--uri", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args


def sidebar() -> None:
    args = launch_args()
    with st.sidebar:
        st.header("taxonomy-auditor")
        audits = [str(p) for p in find_audits()]
        default = args.audit or (audits[0] if audits else "audit_out")
        st.session_state.setdefault("audit_dir", default)
        if audits:
            st.selectbox(
                "Recent audits",
                audits,
                index=None,
                placeholder="pick one…",
                key="recent_audit",
                on_change=lambda: st.session_state.update(audit_dir=st.session_state["recent_audit"]),
            )
        st.text_input("Audit folder", key="audit_dir", help="The --out folder of `auditor audit` (holds report.json).")
        st.session_state.setdefault("uri", args.uri or default_uri())
        st.text_input("Milvus URI", key="uri", help="A Milvus Lite file or http://host:19530 (env AUDITOR_MILVUS_URI).")
        report = current_report(stop=False)
        if report:
            st.caption(f"dataset **{report['dataset']}** · model `{report['model']}` · {len(report['clips'])} clips")


def current_report(stop: bool = True) -> dict | None:
    """The chosen audit's report, or a clear message (and the page stops) when there is none."""
    folder = Path(st.session_state.get("audit_dir", "audit_out"))
    try:
        return cached_report(str(folder), (folder / "report.json").stat().st_mtime)
    except (FileNotFoundError, OSError):
        if stop:
            st.info(
                f"No audit at `{folder}`. Run `auditor audit MANIFEST --out {folder}` (or `auditor demo`) "
                "and pick its folder in the sidebar."
            )
            st.stop()
        return None


@st.cache_data(show_spinner="Reading the audit…")
def cached_report(folder: str, mtime: float) -> dict:
    return load_report(Path(folder))


def edits_and_decisions() -> tuple[list, dict]:
    folder = Path(st.session_state["audit_dir"])
    return load_edits(folder), load_decisions(folder)


@st.cache_data(show_spinner=False, max_entries=256)
def thumbnails(uri: str, dataset: str, model: str, clip_ids: tuple[str, ...]) -> dict[str, bytes]:
    """JPEG bytes per clip id; {} with a warning when Milvus cannot be read right now."""
    try:
        return service.thumbnails(uri, dataset, model, list(clip_ids))
    except StoreError as e:
        st.warning(f"Thumbnails unavailable: {e}")
        return {}


def check_model(report: dict) -> None:
    """An audit made with another model than the store's dataset cannot be mixed with it."""
    uri = st.session_state["uri"]
    try:
        models = service.stored_models(uri, report["dataset"])
    except StoreError as e:
        st.warning(f"Milvus at `{uri}` cannot be read now ({str(e).splitlines()[0]}); showing the audit's own data.")
        return
    if not models:
        st.warning(f"Milvus at `{uri}` has no dataset {report['dataset']!r}: thumbnails and live search are off.")
    elif report["model"] not in models:
        st.error(
            f"This audit was made with `{report['model']}` but the store holds {report['dataset']!r} embedded with "
            f"{', '.join(models)}: re-run the audit with that model."
        )
        st.stop()


def clip_gallery(
    report: dict, clips: list[dict], columns: int = 6, play: bool = False, highlight: set[str] = frozenset()
) -> None:
    """Thumbnails with row, label and findings; optionally each clip playable from its start to its end."""
    if not clips:
        st.caption("no clips")
        return
    images = thumbnails(st.session_state["uri"], report["dataset"], report["model"], tuple(c["clip_id"] for c in clips))
    for start in range(0, len(clips), columns):
        for col, clip in zip(st.columns(columns), clips[start : start + columns]):
            with col:
                mark = "★ " if clip["clip_id"] in highlight else ""
                if clip["clip_id"] in images:
                    st.image(images[clip["clip_id"]], width="stretch")
                st.caption(
                    f"{mark}row {clip['row']} · **{clip['label']}** · {clip.get('split') or '–'}"
                    + (f" · {', '.join(clip.get('findings', []))}" if clip.get("findings") else "")
                )
                if play:
                    play_clip(report, clip)


def play_clip(report: dict, clip: dict) -> None:
    """Only files the audited dataset names are served, each from its segment's start to its end."""
    known = {c["video"] for c in report["clips"]}
    path = Path(clip["video"])
    if clip["video"] not in known:
        st.error("not a video of this dataset")
    elif not path.exists():
        st.warning(f"missing video file: {path}")
    else:
        st.video(str(path), start_time=float(clip["start"]), end_time=float(clip["end"]))
