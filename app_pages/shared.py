"""The sidebar (audit folder; the operator's store), the loaders every page shares, clip cards and players.

Pages read the audit folder through `current_audit()` and ask Milvus through `live()`. The store is
opened only for the moment of each query (a Milvus Lite file only one process can hold); when it
cannot answer, the page says so once, at its top, and shows what the audit folder alone can show.
The store, the data roots and the output root are the operator's (flags or environment, docs/security.md):
nothing on a page can change them. User text goes through `literal` before it reaches markdown.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import streamlit as st

from app_pages.literal import literal
from auditor import decisions as D
from auditor import service
from auditor.access import data_roots, output_root
from auditor.cliptable import ClipTable
from auditor.workspace import Audit, AuditFolderError, NoAudit, find_audits, manifest_download, open_audit
from taxonomy_core.store import StoreError, default_uri

AUDIT_ENV = "AUDITOR_AUDIT_DIR"
PLAYERS = 8  # players drawn at once: each cuts its segment from the file
THUMBNAILS_KEPT = 50_000  # thumbnails the app keeps in memory (~2 KB each), read again after
EAGER_DOWNLOAD = 20_000  # clips up to which the fixed manifest is built on every run of a page that offers it
T = TypeVar("T")


def launch_args() -> argparse.Namespace:
    """`streamlit run app.py -- --audit DIR --uri URI --data-root DIR… --output-root DIR`; environment otherwise."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--audit", default=os.environ.get(AUDIT_ENV))
    parser.add_argument("--uri", default=None)
    parser.add_argument("--data-root", action="append", default=None)
    parser.add_argument("--output-root", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args


def store_uri() -> str:
    """The operator's store (--uri, else AUDITOR_MILVUS_URI, else ./auditor.db), absolute: never typed in a page."""
    return service.absolute_uri(launch_args().uri or default_uri())


def readable_roots() -> list[Path]:
    """The folders whose manifests and videos the app reads (auditor.access.data_roots)."""
    return data_roots(launch_args().data_root)


def writable_root() -> Path:
    """The folder under which the app writes audits (auditor.access.output_root)."""
    return output_root(launch_args().output_root)


def launch_folders() -> tuple[Path, ...]:
    """The folder named when the app was started may be opened wherever it is (the operator chose it)."""
    audit = launch_args().audit
    return (Path(audit),) if audit else ()


def sidebar() -> None:
    """The audit and store pickers; also resets the once-per-run store notice."""
    args = launch_args()
    st.session_state["store_notice_shown"] = False
    with st.sidebar:
        st.header("taxonomy-auditor")
        audits = [str(p) for p in recent_audits(launch_folders())]
        st.session_state.setdefault("audit_dir", args.audit or (audits[0] if audits else "audit_out"))
        if audits:
            st.selectbox(
                "Recent audits",
                audits,
                index=None,
                placeholder="pick one…",
                key="recent_audit",
                on_change=lambda: st.session_state.update(audit_dir=st.session_state["recent_audit"]),
            )
        st.text_input(
            "Audit folder",
            key="audit_dir",
            help="The --out folder of `auditor audit` (holds report.json). The app opens folders under the working "
            "directory (or AUDITOR_AUDIT_ROOTS) and those `auditor audit` wrote.",
        )
        st.session_state["uri"] = store_uri()
        st.caption(f"Milvus: {literal(st.session_state['uri'])}", help="Set by whoever started the app (--uri or "
                   "AUDITOR_MILVUS_URI); a page cannot change it.")  # fmt: skip
        audit = current_audit(stop=False)
        if audit:
            report = audit.report
            st.caption(
                f"dataset **{literal(report['dataset'])}** · model {literal(report['model'])} · "
                f"{len(audit.clips)} clips"
            )


@st.cache_data(ttl=10, show_spinner=False)
def recent_audits(extra: tuple[Path, ...]) -> list[Path]:
    return find_audits(extra)


def current_audit(stop: bool = True) -> Audit | None:
    """The chosen audit, checked; or a clear message (and the page stops) when there is none or it is refused."""
    folder = Path(st.session_state.get("audit_dir") or "audit_out")
    try:
        stamps = tuple(_mtime(folder / name) for name in ("report.json", "edits.json"))
        return cached_audit(str(folder), stamps, launch_folders())
    except AuditFolderError as e:
        if stop:
            if isinstance(e, NoAudit):
                st.info(
                    f"No audit at {literal(folder)}. Run `auditor audit MANIFEST --out FOLDER` (or `auditor demo`) "
                    "and pick its folder in the sidebar."
                )
            else:
                st.error(f"This audit folder cannot be opened: {literal(e)}")
            st.stop()
        return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@st.cache_resource(show_spinner="Reading the audit…", max_entries=4)
def cached_audit(folder: str, stamps: tuple[float, ...], extra: tuple[Path, ...]) -> Audit:
    """Shared, not copied: pages must not change what it returns."""
    return open_audit(Path(folder), extra)


class Records(Mapping):
    """Clip records by a key (row or clip id), each made from the clip table when first asked for and kept.

    `locate` finds many keys' positions at once without the dict of every key (`many`, `field`)."""

    def __init__(self, made: Made, positions: Callable[[], dict], locate: Callable[[list], dict] | None = None):
        self._made, self._make = made, positions
        self._locate = locate or (lambda keys: {k: self._positions[k] for k in keys if k in self._positions})

    def many(self, keys: Sequence) -> dict:
        """The records of those of `keys` that are clips, made in one read of the table."""
        found = self._locate(list(dict.fromkeys(keys)))
        return dict(zip(found, self._made(list(found.values()))))

    def field(self, name: str, keys: Sequence) -> dict:
        """One field of those of `keys` that are clips, as their records hold it (None where absent), read from its
        column: no record made."""
        found = self._locate(list(dict.fromkeys(keys)))
        if name not in self._made.table.columns:
            return dict.fromkeys(found)
        values = self._made.table.arrow(name).take(pa.array(list(found.values()), pa.int64()))
        return dict(zip(found, values.to_pylist()))

    @cached_property
    def _positions(self) -> dict:
        """Made when first used (a dict of 10^6 clip ids takes ~0.4 s; a page may never look clips up by id)."""
        return self._make()

    def __getitem__(self, key) -> dict:
        return self._made([self._positions[key]])[0]

    def __contains__(self, key) -> bool:
        return key in self._positions

    def __iter__(self):
        return iter(self._positions)

    def __len__(self) -> int:
        return len(self._positions)


class ByLabel(Mapping):
    """Some clips of each class as records (`positions` in the table, per class), made in one read when asked."""

    def __init__(self, made: Made, positions: dict[str, np.ndarray]):
        self._made, self.positions = made, positions

    def __getitem__(self, label: str) -> list[dict]:
        return self._made(self.positions[label].tolist())

    def records(self, positions: list[int]) -> list[dict]:
        """Some clips' records by position in the table (a page of a class, not all of it)."""
        return self._made(positions)

    def __iter__(self):
        return iter(self.positions)

    def __len__(self) -> int:
        return len(self.positions)


class Made:
    """The records made so far, by position in the clip table: one dict per clip, shared by every view."""

    def __init__(self, table: ClipTable):
        self.table, self._records = table, {}

    def __call__(self, positions: list[int]) -> list[dict]:
        missing = [p for p in dict.fromkeys(positions) if p not in self._records]
        if missing:
            self._records.update(zip(missing, self.table.records(missing)))
        return [self._records[p] for p in positions]


TYPICAL_KEPT = 64  # typical clips kept per class (a page shows one or two, avoiding a few rows)


class ClipIndex:
    """The audit's clips by id, by row and by class, made once per audit from its clip table's columns (at 10^5
    clips and more a pass over every record is what a page run would cost); each record is made when asked for."""

    def __init__(self, table: ClipTable):
        self.table, made = table, Made(table)
        rows = table.column("row")
        order = np.argsort(rows, kind="stable")
        self._positions = RowPositions(rows[order], order)
        self.by_id = Records(made, lambda: table.by_id, table.positions_of)
        self.by_row = Records(made, lambda: self._positions)
        encoded = table.arrow("label").combine_chunks().dictionary_encode()  # codes, no string a clip
        self._names = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
        codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        self._codes = codes
        small = codes.astype(np.int16) if len(self._names) < 2**15 else codes  # numpy radix-sorts 16 bits: 4x
        by_class = order[np.argsort(small[order], kind="stable")]  # each class's clips by row, class after class
        counts = np.bincount(codes[codes >= 0], minlength=len(self._names))
        parts = np.split(by_class[np.count_nonzero(codes < 0) :], np.cumsum(counts)[:-1])
        self.members = ByLabel(made, {self._names[i]: parts[i] for i in np.argsort(self._names)})  # by row
        own = table.column("own_similarity").astype(float) if "own_similarity" in table.columns else None
        clean = table.empty("findings")
        typical = {}
        for label, positions in self.members.positions.items():
            if own is None:
                typical[label] = positions[:0]
                continue
            kept = positions[clean[positions] & np.isfinite(own[positions])]
            typical[label] = kept[np.argsort(-own[kept], kind="stable")][:TYPICAL_KEPT]
        self.typical = ByLabel(made, typical)  # accused by nothing, closest to their class first

    def labels_of(self, rows: Sequence[int]) -> list[str | None]:
        """Rows' classes from the label codes in one search, no record made (a page filtering 10^4 fixes by class);
        None for a row that is no clip."""
        at = self._positions.find(rows)
        codes = np.where(at >= 0, self._codes[np.maximum(at, 0)], -1) if len(self._codes) else np.full(len(at), -1)
        return [None if c < 0 else self._names[c] for c in codes.tolist()]


class RowPositions(Mapping):
    """Each manifest row's position in the clip table, by binary search over the sorted rows: the lookups of a dict
    without making one (a dict of 10^6 rows took 0.25 s of every page's first load)."""

    def __init__(self, rows: np.ndarray, positions: np.ndarray):
        self._rows, self._at = rows, positions  # rows sorted; positions in the same order

    def find(self, rows: Sequence[int]) -> np.ndarray:
        """Positions of many rows at once (-1 for a row that is no clip's)."""
        wanted = np.asarray(rows, dtype=np.int64)
        i = np.minimum(np.searchsorted(self._rows, wanted), max(len(self._rows) - 1, 0))
        hit = (self._rows[i] == wanted) if len(self._rows) else np.zeros(len(wanted), bool)
        return np.where(hit, self._at[i] if len(self._rows) else -1, -1)

    def _find(self, row) -> int:
        """One row's position, -1 for anything that is no clip's row (as a dict of rows would miss "3" or 3.5)."""
        try:
            r = int(row)
        except (TypeError, ValueError):
            return -1
        return int(self.find([r])[0]) if r == row else -1

    def __getitem__(self, row) -> int:
        at = self._find(row)
        if at < 0:
            raise KeyError(row)
        return at

    def __contains__(self, row) -> bool:
        return self._find(row) >= 0

    def __iter__(self):
        return iter(self._rows.tolist())

    def __len__(self) -> int:
        return len(self._rows)


def audit_stamp(audit: Audit) -> tuple:
    """What tells one version of an audit from another: a cache key for what is made from it."""
    return str(audit.folder), audit.report.get("generated_at"), _mtime(audit.folder / "report.json"), len(audit.edits)


def plan_of(audit: Audit) -> D.Plan:
    """The audit's findings in review order with the fixes each proposes; made once per audit and shared (pages must
    not change it): at 10^6 clips a sort and a pass over ~3 x 10^4 findings and fixes took 0.3 s of each page."""
    return _plan(audit_stamp(audit), audit)


@st.cache_resource(show_spinner=False, max_entries=4)
def _plan(key: tuple, _audit: Audit) -> D.Plan:
    return D.Plan.of(_audit.report["findings"], _audit.edits)


def clip_index(audit: Audit) -> ClipIndex:
    """The index of an audit's clips; shared, not copied: pages must not change it."""
    return _clip_index(audit_stamp(audit), audit.clips)


@st.cache_resource(show_spinner=False, max_entries=4)
def _clip_index(key: tuple, _clips: ClipTable) -> ClipIndex:
    return ClipIndex(_clips)


# --- asking Milvus -----------------------------------------------------------------------------


def live(ask: Callable[..., T], *args: Any, default: T = None) -> T:
    """The store's answer, or `default` after one notice at the top of the page saying why there is none."""
    try:
        return ask(*args)
    except StoreError as e:
        store_notice(e)
        return default


def store_notice(error: StoreError) -> None:
    """Milvus cannot answer now: say it once per page run, in words a curator can act on."""
    if st.session_state.get("store_notice_shown"):
        return
    st.session_state["store_notice_shown"] = True
    slot = st.session_state.get("notice_slot")
    with slot.container() if slot is not None else st.container():
        if isinstance(error, service.StoreBusy):
            st.warning(f"{service.BUSY}. Thumbnails, players and live search are paused; the audit itself is below.")
        else:
            first, _, fix = str(error).partition("\nFix: ")
            st.warning(f"Milvus cannot answer now: {literal(first)}" + (f"  \nFix: {literal(fix)}" if fix else ""))
        st.button("Retry", key="store_retry", help="Ask Milvus again")


def audit_key(report: dict) -> tuple[str, str, str]:
    """The store's (uri, dataset, model) for this audit."""
    return st.session_state["uri"], report["dataset"], report["model"]


@st.cache_resource(show_spinner=False, max_entries=4)
def _thumbnail_memo(uri: str, dataset: str, model: str) -> dict[str, bytes | None]:
    """JPEG bytes by clip id as read so far (None: the store has none), shared by sessions."""
    return {}


def thumbnails(report: dict, clip_ids: list[str]) -> dict[str, bytes]:
    """JPEG bytes per clip id: from the audit's thumbnail file where it has one (no store opened), else from the
    store; {} for those (after the notice) when Milvus cannot answer now.

    What the memo lacks is read from the store in one call: a page asks once for all it will show (each call opens
    a Lite file and loads the shards it touches, seconds at 10^5 clips), and its parts then find theirs in the memo.
    """
    out = _from_file(report, clip_ids)
    memo = _thumbnail_memo(*audit_key(report))
    missing = list(dict.fromkeys(c for c in clip_ids if c not in out and c not in memo))
    if missing:
        found = live(service.thumbnails, *audit_key(report), missing, default=None)
        if found is not None:
            if len(memo) > THUMBNAILS_KEPT:
                memo.clear()
            memo.update({c: found.get(c) for c in missing})
    shown = {c: out[c] if c in out else memo.get(c) for c in clip_ids}
    return {c: jpeg for c, jpeg in shown.items() if jpeg is not None}


def thumbnails_at(report: dict, positions: list[int]) -> dict[int, bytes]:
    """JPEG bytes by position in the clip table: from the audit's thumbnail file without looking an id up (the Map
    reads no id column of 10^6 clips); the rest by clip id (`thumbnails`: an older audit, a damaged file)."""
    audit = current_audit(stop=False)
    file = _opened_thumbnail_file(audit, report)
    got = file.get(positions) if file is not None else {}
    out = {p: jpeg for p, jpeg in got.items() if jpeg is not None}
    rest = [p for p in positions if p not in got]
    if rest and audit is not None:
        ids = audit.clips.arrow("clip_id").take(pa.array(rest, pa.int64())).to_pylist()
        by_id = thumbnails(report, ids)
        out.update({p: by_id[c] for p, c in zip(rest, ids) if c in by_id})
    return out


def _opened_thumbnail_file(audit: Audit | None, report: dict):
    """The thumbnail file of the audit `report` belongs to, when it has a readable one."""
    if audit is None or audit.report is not report:
        return None
    try:
        return _thumbnail_file(audit_stamp(audit), audit)
    except AuditFolderError:
        return None  # a damaged file: the store answers, as for an older audit


def _from_file(report: dict, clip_ids: list[str]) -> dict[str, bytes | None]:
    """What the audit's thumbnail file holds of these clips (None: the store has no thumbnail of it)."""
    audit = current_audit(stop=False)
    file = _opened_thumbnail_file(audit, report)
    if file is None:
        return {}
    at = audit.clips.positions_of(clip_ids)
    got = file.get(list(at.values()))
    return {c: got[at[c]] for c in clip_ids if at.get(c) in got}


@st.cache_resource(show_spinner=False, max_entries=4)
def _thumbnail_file(stamp: tuple, _audit: Audit):
    """The audit's thumbnail file, memory-mapped once and shared by sessions."""
    return _audit.thumbnail_file()


@st.cache_data(show_spinner="Cutting the segment…", max_entries=64)
def _segment(uri: str, dataset: str, model: str, clip_id: str) -> service.Cut:
    return service.segment_video(service.clip_videos(uri, dataset, model, [clip_id]), clip_id)


# --- clips on a page ---------------------------------------------------------------------------


def clip_title(clip: dict) -> str:
    """row, file name and segment of a clip, for pickers (plain text; wrap it in `literal` for markdown)."""
    return f"row {clip['row']} · {Path(clip['video']).name} · {clip['start']:.2f}–{clip['end']:.2f} s"


def clip_caption(clip: dict, mark: str = "") -> str:
    """Label, split and findings, then row and time, then the file name: short lines for narrow columns."""
    kinds = f" · {literal(', '.join(clip['findings']))}" if clip.get("findings") else ""
    return (
        f"{mark}**{literal(clip['label'])}** · {literal(clip.get('split') or '–')}{kinds}  \n"
        f"row {clip['row']} · {clip['start']:.2f}–{clip['end']:.2f} s  \n{literal(Path(clip['video']).name)}"
    )


SEVERITY_BADGES = {"error": ":red-badge[error]", "warning": ":orange-badge[warning]", "info": ":blue-badge[info]"}


def clip_gallery(
    report: dict, clips: list[dict], columns: int = 6, play: bool = False, highlight: frozenset[str] = frozenset()
) -> None:
    """Thumbnails with row, label, file and time; with `play`, players (exact start to end) in their place."""
    if not clips:
        st.caption("no clips")
        return
    images = {} if play else thumbnails(report, [c["clip_id"] for c in clips])
    for start in range(0, len(clips), columns):
        for col, clip in zip(st.columns(columns), clips[start : start + columns]):
            with col:
                if play:
                    player(report, clip)
                elif clip["clip_id"] in images:
                    st.image(images[clip["clip_id"]], width="stretch")
                st.caption(clip_caption(clip, "★ " if clip["clip_id"] in highlight else ""))


def player(report: dict, clip: dict) -> None:
    """The clip's segment, exactly from its start to its end; only for a clip the store lists for the dataset."""
    try:
        cut = live(_segment, *audit_key(report), clip["clip_id"])
    except service.VideoRefused as e:
        st.error(f"not played: {literal(e)}")
        return
    except (FileNotFoundError, ValueError) as e:
        st.warning(literal(e))
        return
    if cut is None:
        st.caption("player paused: Milvus cannot say which files are the dataset's")
        return
    st.video(cut.data, format="video/mp4")
    if cut.truncated:
        st.caption(f"plays the first {cut.seconds:.0f} s of the segment ({cut.start:.2f} s on in the file)")


def finding_title(finding: dict) -> str:
    badge = SEVERITY_BADGES.get(finding["severity"], finding["severity"])
    return f"{badge} **{literal(finding['kind'])}** · confidence {finding.get('confidence', 0):.2f}"


def fixed_manifest_button(where, audit: Audit, states: dict[str, str], label: str, key: str) -> None:
    """The fixed manifest with the accepted edits, built from the manifest the store recorded, as a download
    button in `where` (a column or the page); why not, in words, when it cannot be built.

    Building reads every manifest row (~0.5 s at 2 x 10^4 rows): above EAGER_DOWNLOAD clips it is built when asked,
    once for each set of decisions, not on every run of the page.
    """
    if len(audit.clips) <= EAGER_DOWNLOAD:
        built = _fixed_manifest(where, audit, states)
    else:
        built = _prepared_manifest(where, audit, states, key)
    if built:
        where.download_button(label, built[1], file_name=built[0], key=key, type="primary")


def _prepared_manifest(where, audit: Audit, states: dict[str, str], key: str) -> tuple[str, bytes] | None:
    version = (audit_stamp(audit), tuple(sorted(states.items())))
    kept = st.session_state.get(f"{key}:built")
    if kept and kept[0] == version:
        return kept[1]
    accepted = sum(1 for state in states.values() if state == "accepted")
    if not where.button(
        f"Prepare the fixed manifest ({accepted} accepted fixes)", key=f"{key}:prepare",
        help="Applies the accepted fixes to every row of the input manifest; again after each new decision.",
    ):  # fmt: skip
        return None
    with st.spinner("Applying the accepted fixes to every row of the manifest…"):
        built = _fixed_manifest(where, audit, states)
    if built:
        st.session_state[f"{key}:built"] = (version, built)
    return built


def _fixed_manifest(where, audit: Audit, states: dict[str, str]) -> tuple[str, bytes] | None:
    report = audit.report
    stored = live(service.stored_manifest, st.session_state["uri"], report["dataset"], report["model"])
    try:
        return manifest_download(audit, states, stored)
    except AuditFolderError as e:
        where.info(f"No download: {literal(e)}")
    except (OSError, ValueError) as e:
        where.error(f"The input manifest cannot be read to apply the fixes: {literal(e)}")
    return None
