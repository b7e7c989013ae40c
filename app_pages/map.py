"""Map: the UMAP projection as the state of the review.

Colour by label, cluster, split, severity or finding kind (a clip with several findings is filled by its
worst and ringed by each other one, so every kind is in the legend and on hover). Picked clips are drawn as
stars and their evidence as rings; accepted relabels are drawn in their new class. Clicking or lassoing
points opens their clips and findings below; "Show on the map" from a finding arrives here picked.
"""

from __future__ import annotations

import base64
import html
import os

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import pyarrow as pa
import streamlit as st

from app_pages.evidence import evidence_strip
from app_pages.hover import hover_thumbnails
from app_pages.shared import (
    PLAYERS,
    audit_stamp,
    clip_gallery,
    clip_index,
    current_audit,
    finding_title,
    plan_of,
    thumbnails_at,
)
from app_pages.words import kind_name, plain
from auditor import decisions as D
from auditor import service
from auditor.cliptable import ClipTable
from auditor.workspace import Audit

# Points drawn besides the clips with findings (what a browser draws smoothly); filters and selections apply to all.
MAX_DRAWN = int(os.environ.get("AUDITOR_MAP_POINTS", 20_000))
MAX_GROUPS = int(os.environ.get("AUDITOR_MAP_COLOURS", 40))  # colours at most; smaller groups share one (`grouped`)
FLOOR = 100  # a class drawn from a sample keeps at least this many of its clips (where it has them)
HOVER_THUMBNAILS = 400  # thumbnails sent to the browser for hovering (each is a few kB)
PALETTE = px.colors.qualitative.D3 + px.colors.qualitative.Dark24  # distinct hues first: blue, orange, green, red…
SEVERITY_COLOURS = {"error": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4", "none": "#c4c4c4"}
RANK = {"error": 0, "warning": 1, "info": 2}


def map_frame(audit: Audit, accused: dict[int, list[dict]]) -> pd.DataFrame:
    """The placed clips with what the map draws of them: made once per audit, shared (never changed in place)."""
    return _map_frame(audit_stamp(audit), audit.clips, accused)


@st.cache_resource(show_spinner="Placing the clips…", max_entries=2)
def _map_frame(stamp: tuple, _clips: ClipTable, _accused: dict[int, list[dict]]) -> pd.DataFrame:
    """From the clip table's Arrow columns: no clip record is made, and no Python string a clip (the classes,
    clusters and splits as categories, files as Arrow strings, positions in the table instead of clip ids)."""
    x, y = _clips.umap()
    placed = np.isfinite(x)
    rows = _clips.column("row")[placed].astype(int)
    n, none = len(rows), ()
    kinds, severity, finding = np.empty(n, object), np.full(n, "none", object), np.full(n, "none", object)
    kinds.fill(none)  # most clips have no finding: one shared empty tuple, set only where there is one
    accused = [r for r in _accused if _accused[r]]
    for at, r in zip(pd.Index(rows).get_indexer(accused), accused):
        if at >= 0:
            found = _accused[r]
            kinds[at] = tuple(f["kind"] for f in found)
            severity[at] = min((f["severity"] for f in found), key=RANK.get)
            finding[at] = kinds[at][0]  # the worst: findings are in review order
    keep = pa.array(placed)

    def column(name: str) -> pa.ChunkedArray | None:
        return _clips.arrow(name).filter(keep) if name in _clips.columns else None

    return pd.DataFrame(
        {
            "row": rows,
            "position": np.flatnonzero(placed),  # in the clip table: thumbnails by position, no id column read
            "label": _categories(column("label"), n),
            "x": x[placed],
            "y": y[placed],
            "cluster": _categories(column("cluster"), n, missing="nan"),
            "split": _categories(column("split"), n, missing="–"),
            "video": column("video").to_pandas(types_mapper=pd.ArrowDtype),  # often a file a clip: no categories
            "kinds": kinds,
            "severity": severity,
            "finding": finding,
        },
    )


def _categories(values: pa.ChunkedArray | None, n: int, missing: str = "") -> pd.Categorical:
    """Strings (or numbers, as text) as a pandas Categorical: a Python string a distinct value, not one a clip;
    `missing` where null, or for every clip where the table has no such column."""
    if values is None:
        return pd.Categorical.from_codes(np.zeros(n, np.int8), [missing])
    values = values if pa.types.is_string(values.type) else values.cast(pa.string())
    return values.fill_null(missing).dictionary_encode().to_pandas().array


@st.cache_resource(show_spinner=False, max_entries=8)
def _drawn(stamp: tuple, view_key: tuple, _view: pd.DataFrame) -> list[pd.DataFrame]:
    """The layers of one view of one audit (`view_key`: what picked the view), drawn once and shared: at 10^6 clips
    the stratified sample took half a second on every run of the page."""
    return drawn_layers(_view)


def drawn_layers(view: pd.DataFrame) -> list[pd.DataFrame]:
    """What the map draws, bottom layer first: every clip in view, or above MAX_DRAWN a seeded sample of the clips
    without findings stratified by class, under every clip with one."""
    if len(view) <= MAX_DRAWN:
        return [view]
    flagged = view["finding"].to_numpy() != "none"
    others = np.flatnonzero(~flagged)  # positions: the sample is taken from the labels, then one take of its rows
    labels = view["label"]  # a class a code: the same draw as from the names, without a string a clip
    labels = labels.cat.codes.to_numpy() if isinstance(labels.dtype, pd.CategoricalDtype) else labels.to_numpy()
    sample = stratified(labels[others], max(MAX_DRAWN - int(flagged.sum()), MAX_DRAWN // 4))
    return [view.iloc[others[sample]], view[flagged]]


def as_shown(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of some clips with the class each is drawn in (its new one where a relabel was accepted)."""
    return frame.assign(shown_label=[relabelled.get(r, x) for r, x in zip(frame["row"], frame["label"])])


def stratified(labels: np.ndarray, budget: int) -> np.ndarray:
    """Positions of about `budget` of these clips, each class in proportion to its size and at least FLOOR of it
    (seeded), in order."""
    if len(labels) <= budget:
        return np.arange(len(labels))
    codes = pd.factorize(labels)[0]
    counts = np.bincount(codes)
    floor = min(FLOOR, max(1, budget // (2 * len(counts))))  # every class shows, however small the budget
    quota = np.minimum(counts, np.maximum(floor, (budget * counts / len(labels)).astype(int)))
    order = np.random.default_rng(0).permutation(len(labels))
    shuffled = codes[order]
    by_class = np.argsort(shuffled, kind="stable")  # each class's clips in shuffled order, class after class
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(labels), np.int64)
    rank[by_class] = np.arange(len(labels)) - starts[shuffled[by_class]]  # a clip's place in its class's draw
    return np.sort(order[rank < quota[shuffled]])


audit = current_audit()
report = audit.report
st.title("Map")
plan = plan_of(audit)
accused: dict[int, list[dict]] = {}
for finding in plan.findings:
    for r in finding.get("rows") or []:
        accused.setdefault(r, []).append(finding)
clips = map_frame(audit, accused)
if clips.empty:
    st.info("This audit has no map (no clip has a UMAP position).")
    st.stop()

try:
    decided = D.load(audit.folder, plan)
except D.DecisionsError:
    decided = D.Decisions()
relabelled = {
    e.row: str(e.value) for key, edits in plan.edits.items() if decided.state(key) == "accepted"
    for e in edits if e.action == "relabel"
}  # fmt: skip

c1, c2 = st.columns([1, 2])
colour = c1.selectbox(
    "Colour by",
    ["label", "severity", "finding kind", "cluster", "split"],
    key="map_colour",
    help="finding kind: a clip is filled by its worst finding and ringed by each other one; hover lists them all",
)
labels = c2.multiselect("Classes", sorted(clips["label"].unique()), placeholder="all classes", key="map_classes")
only_flagged = st.toggle("Only clips with findings", key="map_flagged")
moved_in = [r for r, new in relabelled.items() if new in labels]
view = clips[clips["label"].isin(labels) | clips["row"].isin(moved_in)] if labels else clips
if only_flagged:
    view = view[view["finding"] != "none"]
view_key = (tuple(sorted(labels)), tuple(sorted(moved_in)), only_flagged, MAX_DRAWN)
layers = [as_shown(layer) for layer in _drawn(audit_stamp(audit), view_key, view)]
drawn = pd.concat(layers)
if len(drawn) < len(view):
    st.caption(
        f"drawing {len(drawn):,} of {len(view):,} clips: every clip with a finding ({len(layers[1]):,}, drawn on top) "
        "and a seeded sample of the others, stratified by class (each in proportion to its size, small classes "
        "topped up so that every class shows); the filters and selections use all of them"
    )

by_row = clip_index(audit).by_row
picked_state = st.session_state.get("map_selected", [])
typed = [r for r in st.session_state.get("picked_rows", []) if r in by_row]
rows = list(dict.fromkeys(picked_state + typed))
focus = st.session_state.get("map_finding")
focus_finding = plan.finding(focus) if focus in plan.keys else None
linked = {e["row"] for r in rows for f in accused.get(r, []) for e in f.get("evidence") or []}
if focus_finding:
    linked |= {e["row"] for e in focus_finding.get("evidence") or []}
linked -= set(rows)


def hover(frame: pd.DataFrame) -> list[str]:
    """Row, class (and the class it was relabelled from), split, file and every finding, escaped."""
    texts = []
    for r, label, shown, split, video in zip(
        frame["row"], frame["label"], frame["shown_label"], frame["split"], frame["video"]
    ):
        found = accused.get(r, [])
        lines = [
            f"<b>row {r}</b> · {html.escape(str(shown))}" + (f" (was {html.escape(label)})" if shown != label else "")
        ]
        lines.append(f"{html.escape(str(split))} · {html.escape(os.path.basename(video))}")
        lines += [f"{f['severity']}: {kind_name(f['kind'])}" for f in found] or ["no findings"]
        texts.append("<br>".join(lines))
    return texts


def group_colour(column: str, values: list[str]) -> dict[str, str]:
    if column == "severity":
        return {v: SEVERITY_COLOURS.get(v, "#888") for v in values}
    ordered = sorted(v for v in values if v != "none")
    return {**{v: PALETTE[i % len(PALETTE)] for i, v in enumerate(ordered)}, "none": "#c4c4c4"}


def grouped(layers: list[pd.DataFrame], column: str) -> tuple[list[pd.DataFrame], str]:
    """Above MAX_GROUPS values (HDBSCAN's clusters of a big audit: ~13,000 at 3 x 10^5; a 700-class taxonomy) the
    largest MAX_GROUPS - 1 keep their colour and the rest share one "other" group: a trace a value took 21 s to draw
    and a legend nobody can read. The hover still names each clip's own value."""
    frame = pd.concat(layers)
    counts = frame[column].astype(str).value_counts()
    if len(counts) <= MAX_GROUPS:
        return layers, column
    kept = set(counts.index[: MAX_GROUPS - 1]) - {"none"}
    other = f"{len(counts) - len(kept)} other {'clusters' if column == 'cluster' else 'values'} (smaller)"
    return [
        layer.assign(colour_group=np.where(layer[column].astype(str).isin(kept), layer[column].astype(str), other))
        for layer in layers
    ], "colour_group"


def figure(layers: list[pd.DataFrame]) -> go.Figure:
    """Each layer's points by colour, later layers on top (the sampled clips, then those with findings)."""
    column = {"label": "shown_label", "finding kind": "finding"}.get(colour, colour)
    layers, column = grouped(layers, column)
    frame = pd.concat(layers)
    values = sorted(frame[column].astype(str).unique(), key=lambda v: (v == "none", RANK.get(v, 9), v))
    colours = {v: "#d9d9d9" if v.endswith("(smaller)") else c for v, c in group_colour(column, values).items()}
    fig = go.Figure()
    in_legend: set[str] = set()
    for layer in layers:
        texts = layer[column].astype(str).to_numpy()  # once a layer, not once a colour
        for value in values:
            part = layer[texts == value]
            if part.empty:
                continue
            name = "no finding" if value == "none" else kind_name(value) if column == "finding" else value
            relabel = part["row"].isin(relabelled.keys())
            symbols = ["diamond" if x else "circle" for x in relabel] if relabel.any() else "circle"  # one: fast
            fig.add_trace(
                go.Scattergl(
                    x=part["x"].tolist(), y=part["y"].tolist(), mode="markers", name=name, legendgroup=value,
                    showlegend=value not in in_legend, marker={"size": 8, "color": colours[value], "symbol": symbols},
                    customdata=part[["row"]].values.tolist(), hovertext=hover(part), hoverinfo="text",
                )
            )  # fmt: skip
            in_legend.add(value)
    if column == "finding":  # every other finding of a clip as a ring in its kind's colour
        every = sorted({k for kinds in frame["kinds"] for k in kinds})
        colours = {**group_colour(column, every + ["none"]), **colours}
        for kind in every:
            ringed = frame[frame["kinds"].map(lambda k, kind=kind: kind in k[1:])]
            if len(ringed):
                fig.add_trace(
                    go.Scattergl(
                        x=ringed["x"].tolist(), y=ringed["y"].tolist(), mode="markers", name=kind_name(kind),
                        legendgroup=kind, showlegend=kind not in values,
                        marker={"size": 15, "color": colours[kind], "symbol": "circle-open", "line": {"width": 2}},
                        customdata=ringed[["row"]].values.tolist(), hovertext=hover(ringed), hoverinfo="text",
                    )
                )  # fmt: skip
    ring = {"size": 18, "symbol": "circle-open", "color": "#111", "line": {"width": 2}}
    star = {"size": 20, "symbol": "star-open", "color": "#111", "line": {"width": 2}}
    for chosen, name, marker in ((linked, "evidence of the picked", ring), (set(rows), "picked", star)):
        part = as_shown(view[view["row"].isin(chosen)])  # drawn even where the sample left them out
        if len(part):
            fig.add_trace(
                go.Scattergl(
                    x=part["x"].tolist(), y=part["y"].tolist(), mode="markers", name=name, marker=marker,
                    customdata=part[["row"]].values.tolist(), hovertext=hover(part), hoverinfo="text",
                )
            )  # fmt: skip
    fig.update_layout(
        height=520,
        margin={"l": 0, "r": 0, "t": 10, "b": 0},
        xaxis={"title": None, "showticklabels": False},
        yaxis={"title": None, "showticklabels": False},
        legend={"orientation": "h", "yanchor": "top", "y": -0.05, "xanchor": "left", "x": 0, "title": {"text": colour}},
    )
    return fig


def remember_selection() -> None:
    event = st.session_state.get("map")
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    st.session_state["map_selected"] = [int(p["customdata"][0]) for p in points if p.get("customdata")]
    st.session_state.pop("map_finding", None)


if focus_finding:
    plain(f"Showing: {focus_finding.get('action') or focus_finding['message']}", strong=True)
    st.caption("★ the accused clip(s) · ○ their evidence. Click or lasso points to pick others.")
st.plotly_chart(figure(layers), key="map", on_select=remember_selection, selection_mode=("points", "box", "lasso"))
if relabelled:
    st.caption(f"◆ {len(relabelled)} accepted relabel(s) drawn in their new class (hover says which class they left)")
hovered = pd.concat(layers[::-1]).head(HOVER_THUMBNAILS)  # those with findings first
images = thumbnails_at(report, hovered["position"].tolist())
hover_thumbnails(
    "map", {str(r): f"data:image/jpeg;base64,{base64.b64encode(images[p]).decode()}"
            for r, p in zip(hovered["row"], hovered["position"]) if p in images},
)  # fmt: skip
if len(drawn) > HOVER_THUMBNAILS:
    st.caption(f"hover thumbnails for {HOVER_THUMBNAILS} of the {len(drawn):,} drawn clips: filter classes for more")

choices = clips["row"] if len(clips) <= MAX_DRAWN else pd.concat([drawn["row"], pd.Series(typed, dtype=int)])
st.multiselect(
    "…or pick rows", sorted(set(choices.tolist())), key="picked_rows",
    help=None if len(clips) <= MAX_DRAWN else "rows of the clips drawn (a list of every row would slow every rerun)",
)  # fmt: skip
if not rows:
    st.caption(
        "Click a point (or pick rows, or choose the lasso or box tool in the chart's toolbar) to see its findings."
    )
    st.stop()

chosen = [by_row[r] for r in rows if r in by_row]
st.subheader(f"{len(chosen)} selected clip(s)")
at_once = service.plays_at_once(st.session_state["uri"], len(audit.clips))
play = st.toggle(
    "Play the picked clips", value=at_once, key="map_play",
    help=None if at_once else "Off at first on a big Lite file: each clip played loads the store's shard holding it "
    "(about a second each at 10^6 clips); the thumbnails come from the audit folder.",
)  # fmt: skip
if play and len(chosen) > PLAYERS:
    st.info(
        f"Players for the first {PLAYERS} of the {len(chosen)} selected clips (each cuts its segment from the "
        "file); thumbnails for the rest. Select fewer points, or pick rows, to play others."
    )
clip_gallery(report, chosen[:PLAYERS], columns=4, play=play)
if chosen[PLAYERS:]:
    clip_gallery(report, chosen[PLAYERS:48], columns=6)
if len(chosen) > 48:
    st.caption(f"…and {len(chosen) - 48} more selected clips")

about = [(k, f) for k, f in zip(plan.keys, plan.findings) if set(f.get("rows") or []) & set(rows)]
st.subheader(f"Findings about these clips ({len(about)})")
for i, (key, finding) in enumerate(about):
    with st.container(border=True, key=f"map_finding_{i}"):
        st.markdown(finding_title(finding) + f" · `{decided.state(key)}`")
        plain(finding.get("action") or finding["message"], strong=True)
        plain(finding["message"], small=True)
        if st.toggle("Evidence beside it", key=f"map_evidence_{i}", value=i < 3):
            evidence_strip(audit, finding, key=f"map_{i}", play=False)
if not about:
    st.caption("No finding accuses these clips (class-level findings are on the Class and Findings pages).")
