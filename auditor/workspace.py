"""What the app reads and writes beside an audit: the report, proposed edits, the curator's decisions.

An audit folder is opened only under the allowed roots (AUDITOR_AUDIT_ROOTS, default the working directory)
or when the CLI wrote it (recorded in the state folder), and its files are checked before a page trusts them:
a report is data to show, never a list of files to serve.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from auditor.cliptable import ClipTable, ClipTableError, table_name
from auditor.searchcopies import SearchCopies, copies_name
from auditor.thumbfile import ThumbnailFile, thumbs_name
from taxonomy_core.atomic import write_atomic
from taxonomy_core.edits import EDITS_FILE, Edit, edits_from_records, read_edits
from taxonomy_core.formats import ReadOptions, read_manifest, write_fixed_manifest

log = logging.getLogger(__name__)
T = TypeVar("T")

REPORT_FILE = "report.json"
DECISIONS_FILE = "decisions.json"
WRITTEN_FILE = "audits.json"  # in the state folder: the audit folders the CLI (or an app job) wrote
ROOTS_ENV = "AUDITOR_AUDIT_ROOTS"  # os.pathsep-separated folders under which the app may open audits
STATE_ENV = "AUDITOR_STATE_DIR"
SCHEMA_VERSION = 4
READABLE_SCHEMAS = (3, 4)  # 3: the clips inside report.json (slow to open past ~10^5 clips); 4: beside it
DECISIONS = ("accepted", "rejected")
MAX_REMEMBERED = 100
SCAN_DEPTH = 3  # how deep under a root the app looks for report.json
SKIPPED_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", "site-packages"}


class AuditFolderError(ValueError):
    """An audit folder the app will not open, or a file in it that does not hold together; the message says why."""


class NoAudit(AuditFolderError):
    """The folder holds no report.json (yet)."""


@dataclass(frozen=True)
class Audit:
    """An opened audit folder: its report, its clips and proposed edits, checked against each other."""

    folder: Path
    report: dict[str, Any]
    edits: list[Edit]
    clips: ClipTable

    def search_copies(self) -> SearchCopies | None:
        """The 8-bit copies of the clips' vectors the audit wrote for Search (None before schema 4)."""
        return self._side_file(copies_name, lambda path: SearchCopies(path, self.clips.column("clip_id")))

    def thumbnail_file(self) -> ThumbnailFile | None:
        """Every clip's thumbnail as the audit copied it from the store (None before it did: read the store)."""
        return self._side_file(thumbs_name, lambda path: ThumbnailFile(path, self.report["run_id"], len(self.clips)))

    def _side_file(self, name_of: Callable[[str], str], opened: Callable[[Path], T]) -> T | None:
        """A side file of the run report.json names, opened, or None where this audit has none."""
        if self.report.get("schema_version") != SCHEMA_VERSION:
            return None
        try:
            path = _inside(self.folder, name_of(self.report["run_id"]))
            return opened(path) if path.is_file() else None
        except ClipTableError as e:
            raise AuditFolderError(str(e)) from e


# --- where audits may be opened from --------------------------------------------------------


def state_dir() -> Path:
    """Where the tools remember things between runs (AUDITOR_STATE_DIR, else the XDG state folder)."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "taxonomy-auditor"


def allowed_roots() -> list[Path]:
    """The configured roots (AUDITOR_AUDIT_ROOTS), else the working directory."""
    configured = [p for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [Path(p).expanduser().resolve() for p in configured or [os.getcwd()]]


def remember_audit(folder: Path, manifest: str | Path) -> None:
    """Record a folder the CLI wrote (and the manifest it audited); the app may open it from anywhere."""
    entry = {"folder": str(Path(folder).resolve()), "manifest": str(Path(manifest).resolve()), "written": time.time()}
    kept = [e for e in written_audits(existing_only=False) if e["folder"] != entry["folder"]]
    path = state_dir() / WRITTEN_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps([entry, *kept][:MAX_REMEMBERED], indent=1))
    except OSError as e:  # the audit itself succeeded; only the app's list of recent audits misses it
        log.warning("cannot record the audit folder in %s: %s", path, e)


def written_audits(existing_only: bool = True) -> list[dict[str, Any]]:
    """Audit folders the CLI wrote, newest first (a damaged record file counts as empty)."""
    try:
        records = json.loads((state_dir() / WRITTEN_FILE).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(records, list):
        return []
    valid = [r for r in records if isinstance(r, dict) and isinstance(r.get("folder"), str)]
    return [r for r in valid if not existing_only or (Path(r["folder"]) / REPORT_FILE).is_file()]


def find_audits(extra: tuple[Path, ...] = ()) -> list[Path]:
    """Audit folders the app may open: those the CLI wrote and those under the allowed roots, newest first."""
    found = {Path(r["folder"]) for r in written_audits()} | {Path(p).resolve() for p in extra}
    for root in allowed_roots():
        found |= {p.parent.resolve() for p in _scan(root, SCAN_DEPTH)}
    found = {p for p in found if (p / REPORT_FILE).is_file()}
    return sorted(found, key=lambda p: (p / REPORT_FILE).stat().st_mtime, reverse=True)


def _scan(folder: Path, depth: int) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    found = [Path(e.path) for e in entries if e.name == REPORT_FILE and e.is_file()]
    if depth > 0:
        for entry in entries:
            hidden = entry.name in SKIPPED_DIRS or entry.name.startswith(".")
            if not hidden and entry.is_dir(follow_symlinks=False):
                found += _scan(Path(entry.path), depth - 1)
    return found


def check_folder(folder: str | Path, extra: tuple[Path, ...] = ()) -> Path:
    """The folder, resolved, if the app may open it: under an allowed root, written by the CLI, or in `extra`."""
    resolved = Path(folder).expanduser().resolve()
    written = {Path(r["folder"]).resolve() for r in written_audits()} | {Path(p).resolve() for p in extra}
    roots = allowed_roots()
    if resolved in written or any(resolved.is_relative_to(root) for root in roots):
        return resolved
    raise AuditFolderError(
        f"`{folder}` is outside the folders the app opens audits from ({', '.join(map(str, roots))}) and no "
        f"`auditor audit` run wrote it: start the app from a folder above it, list it in {ROOTS_ENV}, "
        "or pass `-- --audit FOLDER` when starting the app"
    )


# --- reading an audit folder -----------------------------------------------------------------

NUMBER = (int, float)
_CLIP_FIELDS = {"row": int, "clip_id": str, "label": str, "video": str, "start": NUMBER, "end": NUMBER}
_FINDING_FIELDS = {
    "kind": str, "severity": str, "rows": list, "labels": list, "message": str, "evidence": list, "confidence": NUMBER,
}  # fmt: skip
_CLASS_FIELDS = {"label": str, "count": int}
# Fields that may be null but, when present, must have this type (the pages compute with them).
_OPTIONAL = {
    "clip": {"umap": list, "cluster": int, "timeline": dict, "findings": list, "split": str, "crop_gain": NUMBER},
    "finding": {"action": str, "suggestion": dict},
    "class": {k: NUMBER for k in ("probe_f1", "knn_agreement", "cohesion", "separation", "search_consistency")},
}


def open_audit(folder: str | Path, extra: tuple[Path, ...] = ()) -> Audit:
    """The audit in `folder` if the app may open it and its report, clips and edits hold together; else why not."""
    folder = check_folder(folder, extra)
    report = _read_json(folder, REPORT_FILE, dict)
    version = report.get("schema_version")
    if version not in READABLE_SCHEMAS:
        raise AuditFolderError(
            f"{folder / REPORT_FILE} has schema version {version!r}; this app reads versions "
            f"{', '.join(map(str, READABLE_SCHEMAS))}: re-run `auditor audit` to rewrite it"
        )
    for key, kind in {"dataset": str, "model": str, "classes": list, "findings": list}.items():
        if not isinstance(report.get(key), kind):
            raise AuditFolderError(f"{folder / REPORT_FILE} has no valid `{key}`: re-run `auditor audit`")
    clips = _clips(folder, report)
    _check_records(folder, report["findings"], _FINDING_FIELDS, "finding")
    _check_records(folder, report["classes"], _CLASS_FIELDS, "class")
    try:  # report.json, written last, holds the edits of its own run (edits.json may be a newer, interrupted one)
        edits = edits_from_records(report["edits"]) if "edits" in report else read_edits(folder / EDITS_FILE)
    except (ValueError, KeyError, TypeError) as e:
        raise AuditFolderError(f"the edits of {folder} cannot be read ({e}): re-run `auditor audit`") from e
    accused = {row for f in report["findings"] for row in f["rows"]}
    strays = sorted({e.row for e in edits} - accused)
    if strays:
        raise AuditFolderError(
            f"the audit in {folder} proposes edits of rows {strays[:5]} that no finding accuses: "
            "its files were changed by hand or come from different runs. Re-run `auditor audit` into this folder"
        )
    return Audit(folder, report, edits, clips)


def _clips(folder: Path, report: dict[str, Any]) -> ClipTable:
    """The clip table of the run report.json names (schema 4), or the records inside report.json (schema 3)."""
    if report["schema_version"] == 3:
        if not isinstance(report.get("clips"), list):
            raise AuditFolderError(f"{folder / REPORT_FILE} has no valid `clips`: re-run `auditor audit`")
        _check_records(folder, report["clips"], _CLIP_FIELDS, "clip")
        try:
            return ClipTable.from_records(report.pop("clips"), f"{folder / REPORT_FILE}'s clips")
        except ClipTableError as e:
            raise AuditFolderError(str(e)) from e
    try:
        path = _inside(folder, table_name(report.get("run_id", "")))
        if not path.is_file():
            raise AuditFolderError(
                f"{folder} holds no {path.name}, the clip table of run {report.get('run_id')} that report.json "
                "names: re-run `auditor audit` into this folder"
            )
        clips = ClipTable.read(path, report["run_id"])
        clips.check_types()
    except ClipTableError as e:
        raise AuditFolderError(str(e)) from e
    if len(clips) != report.get("clip_count"):
        raise AuditFolderError(
            f"{path} holds {len(clips)} clips, report.json counts {report.get('clip_count')!r}: re-run `auditor audit`"
        )
    return clips


def _inside(folder: Path, name: str) -> Path:
    """A file the app opens in the audit folder: by a name it made itself, never through a link leaving the folder."""
    path = folder / name
    if path.exists() and not path.resolve().is_relative_to(folder):
        raise AuditFolderError(f"{path} links outside its folder; the app does not follow it")
    return path


def _read_json(folder: Path, name: str, kind: type) -> Any:
    path = folder / name
    if not path.is_file():
        raise NoAudit(f"no {name} in {folder}: run `auditor audit MANIFEST --out {folder}` first")
    if not path.resolve().is_relative_to(folder):
        raise AuditFolderError(f"{path} links outside its folder; the app does not follow it")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise AuditFolderError(f"{path} is not readable JSON ({e}): re-run `auditor audit`") from e
    if not isinstance(value, kind):
        raise AuditFolderError(f"{path} holds a JSON {type(value).__name__}, not an {kind.__name__}")
    return value


def _check_records(folder: Path, records: list, fields: dict[str, Any], what: str) -> None:
    optional = _OPTIONAL[what]
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise AuditFolderError(f"{folder / REPORT_FILE}: {what} {i} is not an object: re-run `auditor audit`")
        bad = [k for k, kind in fields.items() if not isinstance(record.get(k), kind)]
        bad += [k for k, kind in optional.items() if record.get(k) is not None and not isinstance(record[k], kind)]
        if bad:
            raise AuditFolderError(
                f"{folder / REPORT_FILE}: {what} {i} lacks a valid {', '.join(bad)}: re-run `auditor audit`"
            )


# --- the curator's decisions -----------------------------------------------------------------


def load_decisions(folder: Path) -> dict[str, str]:
    """Edit key -> "accepted" | "rejected"; a second visit resumes where the first stopped."""
    path = Path(folder) / DECISIONS_FILE
    if not path.exists():
        return {}
    value = _read_json(Path(folder), DECISIONS_FILE, dict)
    bad = [k for k, v in value.items() if v not in DECISIONS]
    if bad:
        raise AuditFolderError(f"{path}: decisions must be 'accepted' or 'rejected'; {bad[0]!r} is {value[bad[0]]!r}")
    return value


def save_decisions(folder: Path, decisions: dict[str, str]) -> None:
    write_atomic(Path(folder) / DECISIONS_FILE, json.dumps(decisions, indent=1, sort_keys=True))


# --- the fixed manifest ----------------------------------------------------------------------


def vouched_manifests(folder: Path, stored: str | None) -> set[str]:
    """Manifests the report may name: the one the store indexed the dataset from, and the one the CLI audited here."""
    written = {r.get("manifest") for r in written_audits() if Path(r["folder"]) == Path(folder).resolve()}
    return {m for m in written | {stored} if m}


def manifest_download(audit: Audit, decisions: dict[str, str], stored_manifest: str | None) -> tuple[str, bytes]:
    """The fixed manifest with the accepted edits, from a manifest the store or the CLI vouches for, not the report."""
    claimed = audit.report.get("manifest")
    if claimed not in vouched_manifests(audit.folder, stored_manifest):
        raise AuditFolderError(
            f"the report names the manifest {claimed!r}, but neither the store nor an `auditor audit` run into this "
            "folder used it: re-run `auditor audit` to download a fixed manifest"
        )
    name, content = fixed_manifest_bytes(audit.report, audit.edits, decisions)
    return name, content  # the format's writer keeps the input's line endings


def fixed_manifest_bytes(report: dict[str, Any], edits: list[Edit], decisions: dict[str, str]) -> tuple[str, bytes]:
    """The input manifest with the accepted edits applied, in its own format: (file name, content)."""
    manifest = read_manifest(
        report["manifest"], report["manifest_format"], ReadOptions.from_dict(report.get("read_options", {}))
    )
    accepted = [e for e in edits if decisions.get(e.key) == "accepted"]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_fixed_manifest(manifest, accepted, Path(tmp))
        return path.name, path.read_bytes()
