"""How long each page of the app takes on a big audit: its first load, then each later render.

    python bench/app_scale.py --audit AUDIT_DIR --uri STORE_URI

Pages run through streamlit's AppTest (the script as the server runs it, without a browser: what the browser
adds, drawing the map's points with WebGL, is not measured). The audit folder is one `bench/audit_scale.py
--store` made (it prints where); the store is the one it audited: a Milvus Lite file, or a `milvus-lite server
--data-dir FILE` serving it (then --uri http://127.0.0.1:PORT). Caches start empty, as in a freshly started app;
the first page's first load includes opening the audit (report.json, and the clip table beside it from schema 4).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from streamlit.testing.v1 import AppTest

from auditor.outputs import SIDE_PATTERNS

ROOT = Path(__file__).parents[1]
PAGES = ["app.py", "app_pages/review.py", "app_pages/map.py", "app_pages/class_page.py", "app_pages/search.py",
         "app_pages/findings.py", "app_pages/guidance.py", "app_pages/run_audit.py"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audit", required=True)
    parser.add_argument("--uri", required=True)
    args = parser.parse_args()
    os.environ["AUDITOR_AUDIT_DIR"], os.environ["AUDITOR_MILVUS_URI"] = args.audit, args.uri
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=1800)
    report = Path(args.audit) / "report.json"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {date.today()}; store {args.uri}")
    sides = sorted(p for pattern in SIDE_PATTERNS for p in Path(args.audit).glob(pattern))
    sizes = [f"{p.name} {p.stat().st_size / 1e6:.0f} MB" for p in [report, *sides]]
    print(f"audit folder: {', '.join(sizes)}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'page':28s} {'first load':>11s} {'next render':>12s} {'interaction':>12s}")
    for page in PAGES:
        first = timed(at.switch_page(str(ROOT / page)).run)
        again = timed(at.run)
        for n, (what, action) in enumerate(interactions(page)):
            took = timed(action, at)
            problem = f"  EXCEPTION {at.exception[0].message}" if at.exception else ""
            times = f"{first:10.2f}s {again:11.2f}s" if n == 0 else " " * 24
            print(f"{page if n == 0 else '':28s} {times} {took:11.2f}s ({what}){problem}", flush=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def interactions(page: str) -> list[tuple[str, Callable[[AppTest], object]]]:
    """The changes a curator makes on the page, in turn (each then renders the page again)."""
    if page.endswith("map.py"):
        return [
            ("colour by cluster", lambda at: at.selectbox(key="map_colour").set_value("cluster").run()),
            ("two classes", lambda at: at.multiselect(key="map_classes").set_value(other(at, "map_classes", 2)).run()),
            ("pick a clip", lambda at: at.multiselect(key="picked_rows").set_value(other(at, "picked_rows", 1)).run()),
        ]
    if page.endswith("class_page.py"):
        return [("another class", lambda at: at.selectbox(key="class_label").set_value(last(at, "class_label")).run())]
    if page.endswith("search.py"):
        return [
            ("another class", lambda at: at.selectbox(key="search_label").set_value(last(at, "search_label")).run()),
            ("K = 20", lambda at: at.number_input(key="search_k").set_value(20).run()),
            ("tick an example", lambda at: next(c for c in at.checkbox if c.key.startswith("example:")).check().run()),
        ]
    if page.endswith("findings.py"):
        return [
            ("a kind filter", lambda at: at.multiselect(key="finding_kinds").set_value(["spatial_looseness"]).run())
        ]
    if page.endswith("review.py"):
        return [("a kind filter", lambda at: one_kind(at, "review_kinds"))]
    if page.endswith(("guidance.py", "run_audit.py")):
        return [("rerun", lambda at: at.run())]  # nothing to change: the page reads the report
    return [("class filter", lambda at: at.text_input(key="class_filter").set_value("class_01").run())]


def one_kind(at: AppTest, key: str) -> None:
    at.multiselect(key=key).set_value(["spatial_looseness"]).run()


def last(at: AppTest, key: str):
    return at.selectbox(key=key).options[-1]


def other(at: AppTest, key: str, n: int) -> list:
    """The last n options of a multiselect, as values (its options are their labels)."""
    return [int(x) if x.isdigit() else x for x in at.multiselect(key=key).options[-n:]]


def timed(action, *args) -> float:
    t0 = time.perf_counter()
    action(*args)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
