"""A real browser: `streamlit run app.py` on a free localhost port, driven by Playwright in Debian's Chromium.

Screenshots go to test-artifacts/ (and are the source of docs/screenshots/).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(demo):
    outcome, _, _, _, uri = demo
    port = free_port()
    env = dict(os.environ, AUDITOR_AUDIT_DIR=str(outcome.out_dir), AUDITOR_MILVUS_URI=uri)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "app.py"),
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def visit(page, url: str, name: str, ready: str) -> None:
    page.goto(url)
    page.wait_for_selector(ready, timeout=300_000)  # the search page loads the text model first
    page.wait_for_timeout(1500)  # let late elements (thumbnails) settle
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0, f"{name} shows an exception"
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0, f"{name} shows an error"


def test_overview_map_and_search_in_chromium(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        visit(page, server, "overview", 'h1:has-text("Audit of demo")')
        assert page.locator('[data-testid="stDataFrame"]').count() >= 1
        visit(page, f"{server}/map", "map", ".js-plotly-plot")
        assert page.locator(".js-plotly-plot").count() == 1
        visit(page, f"{server}/search", "search", '[data-testid="stImage"]')
        assert page.locator('[data-testid="stImage"]').count() >= 2  # both result grids
        browser.close()
