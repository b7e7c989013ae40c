"""An audit folder's files as one set: report.json is written last and holds the edits, so it is the commit point.

A run killed part-way leaves the previous report.json (a complete audit, edits included) beside newer
report.html / edits.json / fixed manifest; their run ids tell, and readers trust report.json alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from taxonomy_core.edits import EDITS_FILE, read_edits_of_run

REPORT_FILE, HTML_FILE = "report.json", "report.html"


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
    if stale:
        return (
            f"{', '.join(stale)} in {folder} come from another run than report.json (run {run_id}): an audit was "
            "interrupted; report.json and the edits inside it are the last complete audit; re-run to refresh the rest"
        )
    return None
