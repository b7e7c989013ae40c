"""Evidence beside the accused: a finding's accused clips and the clips that support it, side by side.

Each clip plays exactly its segment; "Play together" starts them all at their own start, and a clip that
ends waits for the others so they restart together. Under each: its role, its similarity to the accused
clip and whether that makes it the same footage (the duplicates check's threshold).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from app_pages.shared import PLAYERS, clip_index, player, thumbnails
from app_pages.words import code
from auditor.workspace import Audit

ROLES = {
    "train_original": "training original",
    "near_identical_other_label": "near-identical, other label",
    "neighbour": "nearest neighbour",
    "kept_copy": "copy that is kept",
    "same_source_video": "same source video",
    "kept": "kept (first of the repeats)",
    "typical": "typical clip of its class",
    "typical_suggested": "typical clip of the suggested class",
}

_SYNC_JS = """
export default function (component) {
  const { data, parentElement } = component;
  const box = () => document.querySelector(`.st-key-${data.group}`);
  const videos = () => Array.from((box() || document).querySelectorAll("video"));
  const button = parentElement.querySelector("button");
  const restartWhenAllEnded = () => {
    const all = videos();
    if (all.length && all.every((v) => v.ended || v.paused)) all.forEach((v) => { v.currentTime = 0; v.play(); });
  };
  const playAll = () => {
    videos().forEach((v) => {
      v.muted = true; v.loop = false; v.currentTime = 0; v.play();
      if (!v.dataset.synced) { v.dataset.synced = "1"; v.addEventListener("ended", restartWhenAllEnded); }
    });
    box()?.setAttribute("data-playing", "together");
  };
  const stopAll = () => { videos().forEach((v) => v.pause()); box()?.removeAttribute("data-playing"); };
  const set = (on) => {
    button.dataset.on = on ? "1" : "0";
    button.textContent = on ? "Pause all" : "Play all together";
  };
  button.onclick = () => { const on = button.dataset.on !== "1"; set(on); (on ? playAll : stopAll)(); };
  if (data.autoplay) { set(true); setTimeout(playAll, 300); }
  return () => stopAll();
}
"""
_SYNC_HTML = (
    '<button type="button" data-testid="playTogether" style="padding:.3rem .8rem;border-radius:.5rem;'
    'border:1px solid #bbb;background:#fff;cursor:pointer">Play all together</button>'
)
_sync = st.components.v2.component("taxonomy_auditor.play_together", html=_SYNC_HTML, js=_SYNC_JS)


def duplicate_threshold(report: dict[str, Any]) -> float:
    return float(((report.get("thresholds") or {}).get("checks") or {}).get("duplicates", {}).get("similarity", 0.95))


def typical(audit: Audit, label: str, avoid: set[int], n: int = 1) -> list[dict]:
    """The class's most typical clips (closest to their class, accused by nothing)."""
    return [c for c in clip_index(audit).typical.get(label, []) if c["row"] not in avoid][:n]


def cast(audit: Audit, finding: dict[str, Any], limit: int = PLAYERS) -> list[tuple[dict, str, str]]:
    """(clip, role, note) for the accused clips, then the evidence, then typical clips: at most `limit`."""
    by_row = clip_index(audit).by_row
    accused = [r for r in finding.get("rows") or [] if r in by_row]
    shown: list[tuple[dict, str, str]] = [(by_row[r], "accused", "") for r in accused[: max(1, limit // 3)]]
    roles: dict[int, list[str]] = {}
    similarity: dict[int, float] = {}
    for e in finding.get("evidence") or []:
        if e.get("row") in by_row and e["row"] not in accused:
            roles.setdefault(e["row"], []).append(str(e.get("role", "related")))
            if e.get("similarity") is not None:
                similarity[e["row"]] = max(similarity.get(e["row"], 0.0), float(e["similarity"]))
    threshold = duplicate_threshold(audit.report)
    reason = (finding.get("suggestion") or {}).get("reason")
    for row, row_roles in roles.items():
        note = ""
        if row in similarity:
            same = similarity[row] >= threshold or reason == "same_frames"
            note = f"similarity {similarity[row]:.2f} · " + (
                "same footage" if same else f"similar, not a copy (copies from {threshold:.2f})"
            )
        elif reason == "same_source_video" or "same_source_video" in row_roles:
            note = "cut from the same source video"
        shown.append(
            (by_row[row], " · ".join(ROLES.get(r, r.replace("_", " ")) for r in dict.fromkeys(row_roles)), note)
        )
    if finding["kind"] in {"likely_mislabel", "outlier"} and accused:
        own = by_row[accused[0]]["label"]
        used = {c["row"] for c, _, _ in shown}
        shown += [(c, "typical", f"of {own}") for c in typical(audit, own, used)]
        suggested = (finding.get("suggestion") or {}).get("label")
        if suggested:
            shown += [(c, "typical_suggested", f"of {suggested}") for c in typical(audit, suggested, used)]
    return shown[:limit]


def caption(clip: dict, role: str, note: str) -> str:
    who = "**accused**" if role == "accused" else ROLES.get(role, role)
    lines = [f"{who} · row {clip['row']} · {code(clip['label'])} · {clip.get('split') or '–'}"]
    lines.append(f"{clip['start']:.2f}–{clip['end']:.2f} s" + (f" · {note}" if note else ""))
    return "  \n".join(lines)


def evidence_strip(audit: Audit, finding: dict[str, Any], key: str, play: bool = True) -> None:
    """The accused clip(s) beside their evidence, playing in sync (or thumbnails with `play=False`)."""
    report = audit.report
    shown = cast(audit, finding)
    if not shown:
        rows = finding.get("rows") or []
        st.caption(
            f"Nothing to play: row(s) {', '.join(map(str, rows))} were not indexed."
            if rows
            else "No clip to show: this finding is about a class or the whole dataset, with no example rows."
        )
        return
    images = {} if play else thumbnails(report, [c["clip_id"] for c, _, _ in shown])
    with st.container(key=f"evidence_{key}"):
        if play and len(shown) > 1:
            _sync(data={"group": f"evidence_{key}", "autoplay": False}, key=f"sync_{key}", height=40)
        columns = st.columns(min(len(shown), 4))
        for i, (clip, role, note) in enumerate(shown):
            with columns[i % len(columns)]:
                with st.container(border=role == "accused", key=f"ev_{key}_{clip['row']}"):
                    if play:
                        player(report, clip)
                    elif clip["clip_id"] in images:
                        st.image(images[clip["clip_id"]], width="stretch")
                    st.caption(caption(clip, role, note))
