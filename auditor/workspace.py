"""What the app reads and writes beside an audit: the report, proposed edits, the curator's decisions."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from taxonomy_core.edits import EDITS_FILE, Edit, read_edits
from taxonomy_core.formats import ReadOptions, read_manifest, write_fixed_manifest

REPORT_FILE = "report.json"
DECISIONS_FILE = "decisions.json"
SEARCH_ROOTS = (Path("audit_out"), Path("auditor-demo"))


def find_audits(roots: tuple[Path, ...] = SEARCH_ROOTS) -> list[Path]:
    """Audit folders under the usual places, newest first."""
    found = [p.parent for root in roots if root.exists() for p in root.rglob(REPORT_FILE)]
    return sorted(found, key=lambda p: (p / REPORT_FILE).stat().st_mtime, reverse=True)


def load_report(folder: Path) -> dict[str, Any]:
    path = Path(folder) / REPORT_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {REPORT_FILE} in {folder}: run `auditor audit MANIFEST --out {folder}` first")
    return json.loads(path.read_text())


def load_edits(folder: Path) -> list[Edit]:
    return read_edits(Path(folder) / EDITS_FILE)


def load_decisions(folder: Path) -> dict[str, str]:
    """Edit key -> "accepted" | "rejected"; a second visit resumes where the first stopped."""
    path = Path(folder) / DECISIONS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def save_decisions(folder: Path, decisions: dict[str, str]) -> None:
    path = Path(folder) / DECISIONS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(decisions, indent=1, sort_keys=True))
    tmp.replace(path)


def fixed_manifest_bytes(report: dict[str, Any], edits: list[Edit], decisions: dict[str, str]) -> tuple[str, bytes]:
    """The input manifest with the accepted edits applied, in its own format: (file name, content)."""
    manifest = read_manifest(
        report["manifest"], report["manifest_format"], ReadOptions.from_dict(report.get("read_options", {}))
    )
    accepted = [e for e in edits if decisions.get(e.key) == "accepted"]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_fixed_manifest(manifest, accepted, Path(tmp))
        return path.name, path.read_bytes()
