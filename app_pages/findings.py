"""Findings: what to do about each problem, and the proposed fixes to accept or reject; download the fixed manifest."""

import math

import streamlit as st

from app_pages.evidence import cast, evidence_strip
from app_pages.shared import (
    clip_index,
    clip_title,
    current_audit,
    finding_title,
    fixed_manifest_button,
    plan_of,
    thumbnails,
)
from app_pages.words import escape, fix_text, plain
from auditor import decisions as D

PER_PAGE = 20

audit = current_audit()
report, edits, folder = audit.report, audit.edits, audit.folder
st.title("Findings")
plan = plan_of(audit)
try:
    decided = D.load(folder, plan, str(report.get("run_id") or ""))
except D.DecisionsError as e:
    st.error(f"The saved decisions cannot be read: {escape(e)}")
    if st.button("Start the decisions afresh (overwrites decisions.json)", key="reset_broken"):
        D.save(folder, D.Decisions(run_id=str(report.get("run_id") or "")), plan)
        st.rerun()
    st.stop()
decisions = decided.accepted_edits(plan)  # edit key -> state, from the decision about its finding
st.page_link("app_pages/review.py", label="Work through them as a queue, from the keyboard: Review", icon="⌨️")

index = clip_index(audit)
by_row = index.by_row
findings = report["findings"]


def finding_of(edit) -> dict | None:
    """The finding that proposed an edit."""
    key = plan.proposer.get(edit.key)
    return plan.finding(key) if key else None


def decide(edit, state: str) -> None:
    """A decision about one fix is a decision about the finding that proposed it (and its other fixes)."""
    key = plan.proposer.get(edit.key)
    if key:
        decided.decide([key], state)
        D.save(folder, decided, plan)


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
order = {k: i for i, k in enumerate(plan.keys)}  # fixes in review order: most severe, most certain first
fixes = [
    (e, finding_of(e)) for e in sorted(edits, key=lambda e: (order.get(plan.proposer.get(e.key), len(order)), e.row))
]
classes_of = index.labels_of([e.row for e, _ in fixes]) if classes else [None] * len(fixes)  # asked only to filter
fixes = [(e, f) for (e, f), c in zip(fixes, classes_of) if wanted(f, set(f["labels"] if f else []) | {c})]
fixes_tab, findings_tab = st.tabs(
    [f"Proposed fixes ({len(fixes)} of {len(edits)})", f"All findings ({len(shown)} of {len(findings)})"]
)


def show_fix(edit, finding: dict | None, images: dict[str, bytes]) -> None:
    """One proposed fix: the clip's picture, what the fix does and why, accept or reject, play, find on the map."""
    clip = by_row.get(edit.row)
    state = decisions.get(edit.key, "pending")
    beside = bool(finding and len(cast(audit, finding)) > 1)  # evidence to show beside the accused clip
    with st.container(border=True, key=f"fix_{edit.action}_{edit.row}"):
        picture, body, choice = st.columns([1, 4, 1]) if not beside else (None, *st.columns([5, 1]))
        if picture and clip and clip["clip_id"] in images:
            picture.image(images[clip["clip_id"]], width="stretch")
        elif picture and not clip:
            picture.caption("not indexed: no picture")
        kind = finding["kind"] if finding else edit.kind
        why = (finding.get("action") or finding["message"]) if finding else ""
        with body:
            plain(fix_text(edit, clip), strong=True)
            plain(f"{kind} · {why}" + (f" · {clip_title(clip)}" if clip else ""), small=True)
        choice.markdown(f"`{state}`")
        for label, value in (("Accept", "accepted"), ("Reject", "rejected")):
            choice.button(
                label, key=f"{value}:{edit.key}", disabled=state == value, on_click=decide, args=(edit, value)
            )
        if clip:
            play, locate = body.columns(2)
            if locate.button("Show on the map", key=f"map:{edit.key}"):
                show_on_map(finding, [edit.row])
            playing = play.toggle("Play" + (" with its evidence, together" if beside else ""), key=f"play:{edit.key}")
            if beside or playing:
                with body:
                    evidence_strip(audit, finding, key=f"fix_{edit.action}_{edit.row}", play=playing)


def cast_ids(found: list[dict]) -> list[str]:
    """The clips the evidence strips of these findings show."""
    return [clip["clip_id"] for finding in found for clip, _, _ in cast(audit, finding)]


def show_on_map(finding: dict | None, rows: list[int]) -> None:
    """The Map opens with the finding's accused clips picked and its evidence highlighted."""
    st.session_state["picked_rows"] = [r for r in rows if r in by_row]
    st.session_state["map_finding"] = D.finding_key(finding) if finding else None
    st.switch_page("app_pages/map.py")


with fixes_tab:
    if not edits:
        st.caption("The audit proposed no mechanical fixes.")
    buttons = st.columns([1, 1, 4])
    if buttons[0].button("Accept shown", key="accept_all", disabled=not fixes):
        decided.decide(
            list(dict.fromkeys(plan.proposer[e.key] for e, _ in fixes if e.key in plan.proposer)), "accepted"
        )
        D.save(folder, decided, plan)
        decisions = decided.accepted_edits(plan)
    fix_pages = max(1, math.ceil(len(fixes) / PER_PAGE))
    fix_page = st.number_input("Page", 1, fix_pages, 1, key="fixes_page") if fix_pages > 1 else 1
    page_fixes = fixes[(fix_page - 1) * PER_PAGE : fix_page * PER_PAGE]
    accused = [clip["clip_id"] for clip in by_row.many([e.row for e, _ in page_fixes]).values()]  # one read
    images = thumbnails(report, accused + cast_ids([f for _, f in page_fixes if f]))  # the page's, in one read
    for edit, finding in page_fixes:
        show_fix(edit, finding, images)

    accepted = sum(1 for e in edits if decisions.get(e.key) == "accepted")
    label = f"Download the fixed manifest ({accepted} accepted of {len(edits)} proposed fixes)"
    fixed_manifest_button(st, audit, decisions, label, "download")

with findings_tab:
    pages = max(1, math.ceil(len(shown) / PER_PAGE))
    page = st.number_input("Page", 1, pages, 1, key="findings_page") if pages > 1 else 1
    page_findings = shown[(page - 1) * PER_PAGE : page * PER_PAGE]
    thumbnails(report, cast_ids(page_findings))  # read in one call; each card's strip finds its own
    for i, finding in enumerate(page_findings):
        key = D.finding_key(finding)
        with st.container(border=True, key=f"findingcard_{i}"):
            st.markdown(finding_title(finding) + f" · `{decided.state(key)}`")
            plain(finding.get("action") or finding["message"], strong=True)
            rows = f"rows {', '.join(map(str, finding['rows']))}: " if finding["rows"] else ""
            evidence = f" · {evidence_text(finding)}" if finding.get("evidence") else ""
            plain(f"{rows}{finding['message']}{evidence}", small=True)
            play, locate = st.columns(2)
            evidence_strip(audit, finding, key=f"findingcard_{i}", play=play.toggle("Play together", key=f"fplay_{i}"))
            if finding["rows"] and locate.button("Show on the map", key=f"fmap_{i}"):
                show_on_map(finding, finding["rows"])
