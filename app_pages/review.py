"""Review: the findings as a queue, most severe and most certain first, decided from the keyboard.

Each finding shows its accused clip beside its evidence, playing together. A accepts, X rejects, S skips,
U undoes, B goes back; a note travels with each decision. Every decision is saved to decisions.json at
once (a restart resumes), and the page exports it with the fixed manifest holding only accepted edits.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages.evidence import evidence_strip
from app_pages.shared import SEVERITY_BADGES, clip_index, current_audit, fixed_manifest_button, plan_of
from app_pages.words import code, fix_text, kind_help, kind_name, plain, tip
from auditor import decisions as D
from auditor import service

audit = current_audit()
report, folder = audit.report, audit.folder
st.title("Review")


plan = plan_of(audit)
try:
    decisions = D.load(folder, plan, str(report.get("run_id") or ""))
except D.DecisionsError as e:
    st.error(f"The saved decisions cannot be read: {e}")
    if st.button("Start the decisions afresh (overwrites decisions.json)", key="review_reset"):
        D.save(folder, D.Decisions(run_id=str(report.get("run_id") or "")), plan)
        st.rerun()
    st.stop()
by_row = clip_index(audit).by_row

with st.expander("Which findings: filter, and decide many at once", expanded=False):
    c1, c2, c3 = st.columns([2, 2, 1])
    kinds = c1.multiselect(
        "Kind", sorted({f["kind"] for f in plan.findings}), key="review_kinds", format_func=kind_name
    )
    classes = c2.multiselect(
        "Class", sorted({x for f in plan.findings for x in f.get("labels") or []}), key="review_classes"
    )
    least = c3.slider(
        "Confidence at least", 0.0, 1.0, 0.0, 0.05, key="review_confidence", help=tip(report, "confidence")
    )


def wanted(f: dict) -> bool:
    return (
        (not kinds or f["kind"] in kinds)
        and (not classes or bool(set(f.get("labels") or []) & set(classes)))
        and float(f.get("confidence") or 0) >= least
    )


queue = [k for k, f in zip(plan.keys, plan.findings) if wanted(f)]
pending = [k for k in queue if decisions.state(k) == "pending"]


def save_and_go(target: str | None) -> None:
    D.save(folder, decisions, plan)
    st.session_state["review_at"] = target


def after(key: str) -> str | None:
    """The next pending finding after `key` in the queue, wrapping; None when every other one is decided."""
    start = queue.index(key) if key in queue else -1
    return next(
        (k for k in queue[start + 1 :] + queue[: start + 1] if decisions.state(k) == "pending" and k != key), None
    )


def before(key: str) -> str | None:
    """The finding before `key` in the queue, wrapping."""
    return queue[(queue.index(key) - 1) % len(queue)] if key in queue else None


def decide(key: str, state: str) -> None:
    decisions.decide([key], state, st.session_state.get(f"note:{key}", ""))
    save_and_go(after(key) or key)


def decide_all(keys: list[str], state: str) -> None:
    decisions.decide(keys, state)
    save_and_go(st.session_state.get("review_at"))


def undo() -> None:
    touched = decisions.undo()
    save_and_go(touched[0] if touched else st.session_state.get("review_at"))


def keep_note(key: str) -> None:
    decisions.note(key, st.session_state.get(f"note:{key}", ""))
    D.save(folder, decisions, plan)


done, total = decisions.progress(queue)
accepted = sum(1 for k in queue if decisions.state(k) == "accepted")
st.progress(
    done / total if total else 1.0,
    text=f"{done} of {total} decided · {accepted} accepted · "
    f"{done - accepted} rejected" + (f" (of {len(plan.keys)} findings; filtered)" if total < len(plan.keys) else ""),
)

bulk = st.columns([1, 1, 1, 3])
bulk[0].button(
    f"Accept {len(pending)} pending",
    key="review_accept_all",
    disabled=not pending,
    on_click=decide_all,
    args=(pending, "accepted"),
    help="Every pending finding the filter shows",
)
bulk[1].button(
    f"Reject {len(pending)} pending",
    key="review_reject_all",
    disabled=not pending,
    on_click=decide_all,
    args=(pending, "rejected"),
    help="Every pending finding the filter shows",
)
bulk[2].button(
    "Undo",
    key="review_undo",
    shortcut="U",
    disabled=not decisions.history,
    on_click=undo,
    help="Undo the last decision (one bulk decision is one step)",
)

current = st.session_state.get("review_at")
if current not in queue:
    current = pending[0] if pending else (queue[0] if queue else None)
    st.session_state["review_at"] = current
if current is None:
    st.info("No finding matches the filter." if plan.keys else "The audit found nothing to review.")
else:
    finding = plan.finding(current)
    state = decisions.state(current)
    edits = plan.edits.get(current, [])
    with st.container(border=True, key="review_card"):
        head, where = st.columns([5, 1])
        badge = SEVERITY_BADGES.get(finding["severity"], finding["severity"])
        head.markdown(
            f"{badge} **{kind_name(finding['kind'])}** · confidence {float(finding.get('confidence') or 0):.2f}"
            + (f" · {', '.join(code(x) for x in finding['labels'])}" if finding.get("labels") else ""),
            help=kind_help(report, finding["kind"]),
        )
        where.markdown(f"**{queue.index(current) + 1}** of {len(queue)} · `{state}`")
        plain(finding.get("action") or finding["message"], strong=True)
        plain(finding["message"], small=True)
        if edits:
            plain("Accepting applies: " + "; ".join(fix_text(e, by_row.get(e.row)) for e in edits), small=True)
        else:
            st.caption("No mechanical fix: accepting records that you agree and will act on it (e.g. add footage).")
        at_once = service.plays_at_once(st.session_state["uri"], len(audit.clips))
        play = st.toggle(
            "Play the clips", value=at_once, key="review_play",
            help=None if at_once else "Off at first on a big Lite file: each clip played loads the store's shard "
            "holding it (about a second each at 10^6 clips); the thumbnails come from the audit folder.",
        )  # fmt: skip
        evidence_strip(audit, finding, key="review", play=play)
        saved = decisions.findings.get(current)
        st.session_state.setdefault(f"note:{current}", saved.note if saved else "")
        st.text_input(
            "Note (saved with the decision)",
            key=f"note:{current}",
            on_change=keep_note,
            args=(current,),
            placeholder="why, or what to do later",
        )
        buttons = st.columns(5)
        buttons[0].button(
            "Accept",
            key="review_accept",
            shortcut="A",
            type="primary",
            on_click=decide,
            args=(current, "accepted"),
            disabled=state == "accepted",
        )
        buttons[1].button(
            "Reject",
            key="review_reject",
            shortcut="X",
            on_click=decide,
            args=(current, "rejected"),
            disabled=state == "rejected",
        )
        buttons[2].button(
            "Skip", key="review_skip", shortcut="S", on_click=save_and_go, args=(after(current) or current,)
        )
        buttons[3].button("Back", key="review_back", shortcut="B", on_click=save_and_go, args=(before(current),))
        if buttons[4].button("Show on the map", key="review_map"):
            st.session_state["picked_rows"] = [r for r in finding.get("rows") or [] if r in by_row]
            st.session_state["map_finding"] = current
            st.switch_page("app_pages/map.py")
    st.caption("Keys: **A** accept · **X** reject · **S** skip · **B** back · **U** undo (not while typing a note)")

with st.expander(f"The queue ({len(queue)})"):
    table = pd.DataFrame(
        {
            "#": i + 1,
            "severity": f["severity"],
            "kind": kind_name(f["kind"]),
            "confidence": float(f.get("confidence") or 0),
            "rows": ", ".join(map(str, f.get("rows") or [])) or "–",
            "decision": decisions.state(k),
            "note": decisions.findings[k].note if k in decisions.findings else "",
        }
        for i, (k, f) in enumerate((k, plan.finding(k)) for k in queue)
    )
    picked = st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key="review_table",
        column_config={"confidence": st.column_config.NumberColumn(format="%.2f")},
    )
    rows = picked.selection.rows if picked and picked.selection else []
    if rows and queue[rows[0]] != current:
        st.session_state["review_at"] = queue[rows[0]]
        st.rerun()

st.subheader("Export")
edit_states = decisions.accepted_edits(plan)
n_accepted = sum(1 for v in edit_states.values() if v == "accepted")
left, right = st.columns(2)
left.download_button(
    "Download decisions.json",
    D.to_json(decisions, plan),
    file_name=D.DECISIONS_FILE,
    key="review_export_decisions",
    mime="application/json",
)
fixed_manifest_button(
    right,
    audit,
    edit_states,
    f"Download the fixed manifest ({n_accepted} accepted of {len(audit.edits)} edits)",
    "review_export_manifest",
)
st.caption(f"Saved as you decide in {code(folder / D.DECISIONS_FILE)}; reopening the audit resumes here.")
