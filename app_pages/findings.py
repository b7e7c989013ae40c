"""Findings: filter, accept or reject each proposed fix, download the fixed manifest in the input's format."""

import pandas as pd
import streamlit as st

from app_pages.shared import current_report, edits_and_decisions
from auditor.workspace import fixed_manifest_bytes, save_decisions

report = current_report()
st.title("Findings")
edits, decisions = edits_and_decisions()
folder = st.session_state["audit_dir"]

findings = report["findings"]
c1, c2, c3 = st.columns(3)
kinds = c1.multiselect("Kind", sorted({f["kind"] for f in findings}), key="finding_kinds")
severities = c2.multiselect("Severity", ["error", "warning", "info"], key="finding_severities")
classes = c3.multiselect("Class", sorted({label for f in findings for label in f["labels"]}), key="finding_classes")
shown = [
    f
    for f in findings
    if (not kinds or f["kind"] in kinds)
    and (not severities or f["severity"] in severities)
    and (not classes or set(f["labels"]) & set(classes))
]
st.dataframe(
    pd.DataFrame(shown, columns=["severity", "kind", "confidence", "action", "rows", "labels", "message"]),
    hide_index=True,
    width="stretch",
)

st.subheader(f"Proposed fixes ({len(edits)})")
if not edits:
    st.caption("The audit proposed no mechanical fixes.")
buttons = st.columns(2)
if buttons[0].button("Accept all", key="accept_all"):
    decisions = {e.key: "accepted" for e in edits}
    save_decisions(folder, decisions)
if buttons[1].button("Reset all", key="reset_all"):
    decisions = {}
    save_decisions(folder, decisions)
for edit in edits:
    value = f"{edit.value[0]:.2f}-{edit.value[1]:.2f}s" if edit.action == "trim" else str(edit.value)
    state = decisions.get(edit.key, "pending")
    cols = st.columns([4, 1, 1, 1])
    cols[0].write(f"row **{edit.row}** · {edit.action} → {value[:140]} · _{edit.kind}_")
    cols[1].write(f"`{state}`")
    for col, choice in ((cols[2], "accepted"), (cols[3], "rejected")):
        if col.button(choice[:-2].capitalize(), key=f"{choice}:{edit.key}", disabled=state == choice):
            decisions[edit.key] = choice
            save_decisions(folder, decisions)
            st.rerun()

accepted = sum(1 for e in edits if decisions.get(e.key) == "accepted")
try:
    name, content = fixed_manifest_bytes(report, edits, decisions)
    st.download_button(
        f"Download the fixed manifest ({accepted} accepted fixes)", content, file_name=name, key="download"
    )
except (FileNotFoundError, OSError, ValueError) as e:
    st.error(f"The input manifest cannot be read to apply fixes: {e}")
