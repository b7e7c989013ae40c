"""Findings: what to do about each problem, and the proposed fixes to accept or reject; download the fixed manifest."""

import math

import streamlit as st

from app_pages.literal import literal
from app_pages.shared import clip_title, current_audit, finding_title, live, player, thumbnails
from auditor import service
from auditor.workspace import AuditFolderError, load_decisions, manifest_download, save_decisions

PER_PAGE = 20

audit = current_audit()
report, edits, folder = audit.report, audit.edits, audit.folder
st.title("Findings")
try:
    decisions = load_decisions(folder)
except AuditFolderError as e:
    st.error(f"The saved decisions cannot be read: {literal(e)}")
    if st.button("Start the decisions afresh (overwrites decisions.json)", key="reset_broken"):
        save_decisions(folder, {})
        st.rerun()
    st.stop()

by_row = {c["row"]: c for c in report["clips"]}
findings = report["findings"]


accusing_row: dict[int, list[dict]] = {}  # once per run: a scan of every finding per edit is 10^7 steps at 100k
for f in findings:
    for r in f["rows"]:
        accusing_row.setdefault(r, []).append(f)


def finding_of(edit) -> dict | None:
    """The finding that proposed an edit: of its kind and accusing its row (else any finding accusing the row)."""
    accusing = accusing_row.get(edit.row, [])
    return next((f for f in accusing if f["kind"] == edit.kind), accusing[0] if accusing else None)


def fix_text(edit, clip: dict | None) -> str:
    """An edit as a sentence: what happens to which row."""
    if edit.action == "relabel":
        was = f" from '{clip['label']}'" if clip else ""
        return f"Relabel row {edit.row}{was} to '{edit.value}'"
    if edit.action == "trim":
        now = f" (now {clip['start']:.2f}–{clip['end']:.2f} s)" if clip else ""
        return f"Trim row {edit.row} to {edit.value[0]:.2f}–{edit.value[1]:.2f} s{now}"
    if edit.action == "split":
        return f"Move row {edit.row} to the '{edit.value}' split"
    return f"Drop row {edit.row}" + (f": {edit.value}" if edit.value else "")


def evidence_text(finding: dict) -> str:
    parts = [
        f"row {e['row']} ({e['role'].replace('_', ' ')}" + (f", {e['similarity']:.2f})" if e.get("similarity") else ")")
        for e in finding.get("evidence") or []
    ]
    return "evidence: " + ", ".join(parts[:8]) + (" …" if len(parts) > 8 else "") if parts else ""


c1, c2, c3 = st.columns(3)
kinds = c1.multiselect("Kind", sorted({f["kind"] for f in findings}), key="finding_kinds")
severities = c2.multiselect("Severity", ["error", "warning", "info"], key="finding_severities")
classes = c3.multiselect("Class", sorted({label for f in findings for label in f["labels"]}), key="finding_classes")


def wanted(finding: dict | None, labels: set[str]) -> bool:
    if finding is None:
        return not (kinds or severities or classes)
    return (
        (not kinds or finding["kind"] in kinds)
        and (not severities or finding["severity"] in severities)
        and (not classes or bool(labels & set(classes)))
    )


shown = [f for f in findings if wanted(f, set(f["labels"]))]
fixes = [(e, finding_of(e)) for e in edits]
fixes = [(e, f) for e, f in fixes if wanted(f, set(f["labels"] if f else []) | {by_row.get(e.row, {}).get("label")})]
fixes_tab, findings_tab = st.tabs(
    [f"Proposed fixes ({len(fixes)} of {len(edits)})", f"All findings ({len(shown)} of {len(findings)})"]
)


def show_fix(edit, finding: dict | None, images: dict[str, bytes]) -> None:
    """One proposed fix: the clip's picture, what the fix does and why, accept or reject, play, find on the map."""
    clip = by_row.get(edit.row)
    state = decisions.get(edit.key, "pending")
    with st.container(border=True, key=f"fix_{edit.action}_{edit.row}"):
        picture, body, choice = st.columns([1, 4, 1])
        if clip and clip["clip_id"] in images:
            picture.image(images[clip["clip_id"]], width="stretch")
        elif not clip:
            picture.caption("not indexed: no picture")
        body.markdown(f"**{fix_text(edit, clip)}**")
        kind = finding["kind"] if finding else edit.kind
        why = (finding.get("action") or finding["message"]) if finding else ""
        body.caption(f"{kind} · {literal(why)}" + (f"  \n{literal(clip_title(clip))}" if clip else ""))
        choice.markdown(f"`{state}`")
        for label, value in (("Accept", "accepted"), ("Reject", "rejected")):
            if choice.button(label, key=f"{value}:{edit.key}", disabled=state == value):
                save_decisions(folder, {**decisions, edit.key: value})
                st.rerun()
        if clip:
            play, locate = body.columns(2)
            if locate.button("Show on the map", key=f"map:{edit.key}"):
                st.session_state["picked_rows"] = [edit.row]
                st.switch_page("app_pages/map.py")
            if play.toggle("Play", key=f"play:{edit.key}"):
                with body:
                    player(report, clip)


with fixes_tab:
    if not edits:
        st.caption("The audit proposed no mechanical fixes.")
    buttons = st.columns([1, 1, 4])
    if buttons[0].button("Accept shown", key="accept_all", disabled=not fixes):
        decisions = {**decisions, **{e.key: "accepted" for e, _ in fixes}}
        save_decisions(folder, decisions)
    if buttons[1].button("Reset shown", key="reset_all", disabled=not fixes):
        decisions = {k: v for k, v in decisions.items() if k not in {e.key for e, _ in fixes}}
        save_decisions(folder, decisions)
    fix_pages = max(1, math.ceil(len(fixes) / PER_PAGE))
    fix_page = st.number_input("Page", 1, fix_pages, 1, key="fixes_page") if fix_pages > 1 else 1
    page_fixes = fixes[(fix_page - 1) * PER_PAGE : fix_page * PER_PAGE]
    images = thumbnails(report, [by_row[e.row]["clip_id"] for e, _ in page_fixes if e.row in by_row])
    for edit, finding in page_fixes:
        show_fix(edit, finding, images)

    accepted = sum(1 for e in edits if decisions.get(e.key) == "accepted")
    stored = live(service.stored_manifest, st.session_state["uri"], report["dataset"], report["model"])
    try:
        name, content = manifest_download(audit, decisions, stored)
        st.download_button(
            f"Download the fixed manifest ({accepted} accepted of {len(edits)} proposed fixes)",
            content,
            file_name=name,
            key="download",
            type="primary",
        )
    except AuditFolderError as e:
        st.info(f"No download: {literal(e)}")
    except (OSError, ValueError) as e:
        st.error(f"The input manifest cannot be read to apply the fixes: {literal(e)}")

with findings_tab:
    pages = max(1, math.ceil(len(shown) / PER_PAGE))
    page = st.number_input("Page", 1, pages, 1, key="findings_page") if pages > 1 else 1
    for finding in shown[(page - 1) * PER_PAGE : page * PER_PAGE]:
        with st.container(border=True):
            st.markdown(
                finding_title(finding) + (f" · {literal(', '.join(finding['labels']))}" if finding["labels"] else "")
            )
            st.markdown(literal(finding.get("action") or finding["message"]))
            rows = f"rows {', '.join(map(str, finding['rows']))}: " if finding["rows"] else ""
            evidence = f"  \n{evidence_text(finding)}" if finding.get("evidence") else ""
            st.caption(f"{rows}{literal(finding['message'])}{evidence}")
