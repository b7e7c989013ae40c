"""How long each page of the app takes on a big audit: its first load, then each later render.

    python bench/app_scale.py --audit AUDIT_DIR --uri STORE_URI

Pages run through streamlit's AppTest (the script as the server runs it, without a browser: what the browser
adds, drawing the map's points with WebGL, is not measured). The audit folder is one `bench/audit_scale.py
--store` made (it prints where); the store is the one it audited.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).parents[1]
PAGES = ["app.py", "app_pages/map.py", "app_pages/class_page.py", "app_pages/search.py", "app_pages/findings.py",
         "app_pages/guidance.py"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audit", required=True)
    parser.add_argument("--uri", required=True)
    args = parser.parse_args()
    os.environ["AUDITOR_AUDIT_DIR"], os.environ["AUDITOR_MILVUS_URI"] = args.audit, args.uri
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=1800)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'page':28s} {'first load':>11s} {'next render':>12s} {'interaction':>12s}")
    for page in PAGES:
        first = timed(at.switch_page(str(ROOT / page)).run)
        again = timed(at.run)
        interaction = timed(interact, at, page)
        problem = f"  EXCEPTION {at.exception[0].message}" if at.exception else ""
        print(f"{page:28s} {first:10.2f}s {again:11.2f}s {interaction:11.2f}s{problem}", flush=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def interact(at: AppTest, page: str) -> None:
    """One change a curator makes on the page (then the page renders again)."""
    if page.endswith("map.py"):
        next(s for s in at.selectbox if s.label == "Colour by").set_value("cluster").run()
    elif page.endswith("class_page.py"):
        key = at.selectbox(key="class_label")
        key.set_value(key.options[-1]).run()
    elif page.endswith("search.py"):
        key = at.selectbox(key="search_label")
        key.set_value(key.options[-1]).run()
    elif page.endswith("findings.py"):
        at.multiselect(key="finding_kinds").set_value(["spatial_looseness"]).run()
    elif page.endswith("guidance.py"):
        at.run()  # nothing to change: the page reads the report
    else:
        at.text_input(key="class_filter").set_value("class_01").run()


def timed(action, *args) -> float:
    t0 = time.perf_counter()
    action(*args)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
