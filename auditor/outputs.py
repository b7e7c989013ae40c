"""An audit folder's files as one set: report.json is written last and holds the edits, so it is the commit point.

A run killed part-way leaves the previous report.json (a complete audit, edits included) beside newer
report.html / edits.json / fixed manifest; their run ids tell, and readers trust report.json alone. The bulk side
files (the clip table, the search copies, the thumbnails) carry their run in their name: report.json's run reads its
own, and a killed run's are left over until the next complete run removes them.
"""

from __future__ import annotations

import json
from pathlib import Path

from auditor.cliptable import table_name
from auditor.searchcopies import copies_name
from auditor.thumbfile import thumbs_name
from taxonomy_core.edits import EDITS_FILE, read_edits_of_run

REPORT_FILE, HTML_FILE = "report.json", "report.html"
SIDE_PATTERNS = ("clips.*.parquet", "vectors.*.npy", "thumbs.*.bin")


def side_files(run_id: str) -> tuple[str, str, str]:
    """The clip table, the search copies and the thumbnails of a run."""
    return table_name(run_id), copies_name(run_id), thumbs_name(run_id)


def stale_side_files(folder: Path, run_id: str) -> list[Path]:
    """Side files in the folder of runs other than `run_id` (an interrupted run's, or an older one's)."""
    try:
        own = set(side_files(run_id))
    except ValueError:  # a run id that names no file: every side file is another run's
        own = set()
    found = {p for pattern in SIDE_PATTERNS for p in Path(folder).glob(pattern)}
    return sorted(p for p in found if p.name not in own)


def remove_stale(folder: Path, run_id: str) -> None:
    """After report.json names this run, the other runs' side files belong to no audit."""
    for path in stale_side_files(folder, run_id):
        path.unlink(missing_ok=True)


def interrupted(folder: Path) -> str | None:
    """Why the folder's files do not all come from the run report.json names, or None when they do."""
    folder = Path(folder)
    try:
        run_id = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8")).get("run_id", "")
    except (OSError, ValueError) as e:
        return f"{folder / REPORT_FILE} cannot be read ({e}): re-run the audit"
    stale = []
    edits_run, _ = read_edits_of_run(folder / EDITS_FILE)
    if (folder / EDITS_FILE).exists() and edits_run != run_id:
        stale.append(EDITS_FILE)
    html = folder / HTML_FILE
    if html.exists() and f"name='audit-run' content='{run_id}'" not in html.read_text(encoding="utf-8")[:2000]:
        stale.append(HTML_FILE)
    stale += [p.name for p in stale_side_files(folder, run_id)]
    if stale:
        return (
            f"{', '.join(stale)} in {folder} come from another run than report.json (run {run_id}): an audit was "
            "interrupted; report.json and the edits inside it are the last complete audit; re-run to refresh the rest"
        )
    return None
