"""A real browser on every page: `streamlit run app.py` on a free localhost port, driven by Playwright in Chromium.

Each test starts its own app (fresh caches) on the audited demo. Screenshots go to test-artifacts/ (the
source of docs/screenshots/). Debian's chromium is used as it is: no browser download.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.test_app import CLASS_LEVEL, held_store

ROOT = Path(__file__).parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SLOW = 300_000  # ms: the first search loads the text model on 2 shared cores

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_app(audit: Path, uri: str, state: Path, roots: Path | None = None):
    """The app as users start it (`streamlit run app.py`), on 127.0.0.1; yields its URL."""
    port = free_port()
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        AUDITOR_AUDIT_DIR=str(audit),
        AUDITOR_MILVUS_URI=uri,
        AUDITOR_STATE_DIR=str(state),
    )
    if roots:
        env["AUDITOR_AUDIT_ROOTS"] = str(roots)
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    log = state / f"streamlit-{port}.log"
    state.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"streamlit did not start: {log.read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert "ScriptRunContext" not in log.read_text(), "the server log has missing-ScriptRunContext warnings"


@pytest.fixture
def server(demo, tmp_path, monkeypatch):
    outcome, _, manifest, _, uri = demo
    (outcome.out_dir / "decisions.json").unlink(missing_ok=True)
    monkeypatch.setenv("AUDITOR_DATA_ROOTS", str(manifest.parent))  # what "Run an audit" may read
    monkeypatch.setenv("AUDITOR_OUTPUT_ROOT", str(tmp_path))  # and where it may write
    with streamlit_app(outcome.out_dir, uri, tmp_path / "state", roots=tmp_path) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    tab = context.new_page()
    tab.outside = []  # requests that left 127.0.0.1
    tab.on(
        "request",
        lambda r: None if r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else tab.outside.append(r.url),
    )
    yield tab
    context.close()


def settle(page, timeout_ms: int = SLOW) -> None:
    """Wait until the app has finished its run (no 'running' status) and late elements drew."""
    page.wait_for_timeout(500)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms, polling=250
    )
    page.wait_for_timeout(800)


def visit(page, url: str, ready: str) -> None:
    page.goto(url)
    page.wait_for_selector(ready, timeout=SLOW)
    settle(page)
    no_traceback(page)


def no_traceback(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]'
    ).all_inner_texts()
    assert "Traceback" not in page.inner_text("body")


def shot(page, name: str, scroll_to: str | None = None, height: int = 1000) -> None:
    """A screenshot of the viewport (Streamlit scrolls inside the page), optionally from one text on."""
    page.set_viewport_size({"width": 1400, "height": height})
    if scroll_to:
        page.get_by_text(scroll_to).first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(800)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})


def pick(page, label: str, option: str) -> None:
    """Choose an option of a selectbox or multiselect by its label."""
    widget = page.locator('[data-testid="stSelectbox"], [data-testid="stMultiSelect"]').filter(has_text=label).first
    widget.locator("input").first.click()
    widget.locator("input").first.fill(option)
    page.locator('[role="option"]').filter(has_text=option).first.click()
    page.keyboard.press("Escape")
    settle(page)


def type_into(page, label: str, text: str) -> None:
    field = page.get_by_role("textbox", name=label, exact=True)
    field.fill(text)
    field.press("Enter")
    settle(page)


def report_of(demo) -> dict:
    """report.json with its clips (from the clip table beside it) under "clips", as schema 3 held them."""
    from auditor.cliptable import folder_clips

    folder = demo[0].out_dir
    return {**json.loads((folder / "report.json").read_text()), "clips": folder_clips(folder).records()}


def test_overview_offline_without_deploy_button(server, page):
    visit(page, server, 'h1:has-text("Audit of demo")')
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=SLOW)  # the page renders top to bottom
    assert page.locator('[data-testid="stAppDeployButton"]').count() == 0
    assert page.get_by_text("Deploy", exact=True).count() == 0
    shot(page, "overview")
    for path in ["map", "class_page", "findings"]:
        visit(page, f"{server}/{path}", "h1")
    assert page.outside == [], f"requests left the machine: {page.outside}"  # icons, fonts, favicons are local


def test_map_plays_segments_exactly_and_shows_thumbnails_on_hover(server, page, demo):
    report, planted = report_of(demo), demo[1]
    visit(page, f"{server}/map", ".js-plotly-plot")
    chart = page.evaluate(
        """() => { const gd = document.querySelector('.st-key-map .js-plotly-plot');
                   return {colours: gd.data.map(t => t.marker.color), names: gd.data.map(t => t.name),
                           legendY: gd.layout.legend.y}; }"""
    )
    assert len(set(chart["colours"])) == len(chart["names"]) == 3 and chart["legendY"] < 0  # below the toolbar
    x, y = page.evaluate(
        """([x, y]) => { const gd = document.querySelector('.st-key-map .js-plotly-plot');
                         const fl = gd._fullLayout; const box = gd.getBoundingClientRect();
                         return [box.left + fl._size.l + fl.xaxis.l2p(x), box.top + fl._size.t + fl.yaxis.l2p(y)]; }""",
        report["clips"][0]["umap"],
    )
    page.mouse.move(x - 40, y - 40)
    page.mouse.move(x, y, steps=5)
    thumb = page.locator('img[data-testid="hoverThumbnail"]')
    thumb.wait_for(state="visible", timeout=10_000)
    assert thumb.get_attribute("src").startswith("data:image/jpeg;base64,")
    page.mouse.move(5, 5)

    fractional = next(c for c in report["clips"] if c["end"] != int(c["end"]))  # e.g. a 0-0.96 s clip
    pick(page, "…or pick rows", str(fractional["row"]))
    pick(page, "…or pick rows", str(planted.loose_in_time))
    page.locator("video").first.wait_for(timeout=SLOW)
    played = page.evaluate(
        """async () => { const v = document.querySelector('video'); v.muted = true;
            if (v.readyState < 1) await new Promise(r => v.addEventListener('loadedmetadata', r, {once: true}));
            const duration = v.duration; v.currentTime = Math.max(0, duration - 0.3);
            await v.play(); await new Promise(r => v.addEventListener('ended', r, {once: true}));
            return {duration, stopped: v.currentTime}; }"""
    )
    length = fractional["end"] - fractional["start"]
    assert played["duration"] == pytest.approx(length, abs=0.05), (played, length)  # not cut at a whole second
    assert played["stopped"] == pytest.approx(length, abs=0.05)
    section = page.locator('[data-testid="stVerticalBlock"]').filter(has_text="Findings about these clips").last
    assert "temporal_looseness" in section.inner_text()
    assert not [kind for kind in CLASS_LEVEL if kind in section.inner_text()]
    shot(page, "map", height=1500)

    for row in sorted(c["row"] for c in report["clips"])[:8]:
        pick(page, "…or pick rows", str(row))
    assert page.get_by_text("Players for the first 8 of the").count() == 1
    assert page.locator("video").count() == 8
    no_traceback(page)


def test_class_page_in_words_and_boxes_only_for_fixes(server, page, demo):
    visit(page, f"{server}/class_page", 'h1:has-text("Class")')
    pick(page, "Class", "rabbit")
    body = page.inner_text("body")
    assert "HDBSCAN clusters [" not in body and " 1 clips" not in body
    assert "No clip of rabbit is cut loosely in space" in body
    pick(page, "Class", "phone_call")
    assert page.get_by_text("suggested crop in red").count() == 1
    assert f"crop row {demo[1].loose_in_space} to the box" in page.inner_text("body")
    shot(page, "class", scroll_to="Temporal tightness", height=1300)
    no_traceback(page)


def test_search_picks_examples_by_row_and_says_when_text_search_is_weak(server, page, demo):
    visit(page, f"{server}/search", 'text="Text → video"')
    pick(page, "Class", "phone_call")
    row = next(c["row"] for c in report_of(demo)["clips"] if c["label"] == "phone_call")
    page.get_by_text("Example clips:").click()
    page.get_by_text(f"row {row}", exact=True).first.click()
    settle(page)
    page.get_by_text(f"(rows {row})").first.wait_for(timeout=SLOW)  # the rerun's search may end after the settle
    assert page.get_by_text(f"(rows {row})").count() >= 1
    assert "ImageNet" in page.inner_text("body")  # next to the text results: the offline model's text search is weak
    shot(page, "search", scroll_to="phone_call:", height=1300)
    no_traceback(page)


def test_findings_fixes_are_sentences_with_pictures_and_follow_the_filters(server, page, demo):
    planted = demo[1]
    visit(page, f"{server}/findings", 'h1:has-text("Findings")')
    relabel = page.locator(f".st-key-fix_relabel_{planted.mislabel}")
    relabel.get_by_text(f"Relabel row {planted.mislabel} from").first.wait_for(timeout=SLOW)
    assert f"Relabel row {planted.mislabel} from 'phone_call' to 'rabbit'" in relabel.inner_text()
    assert relabel.locator('[data-testid="stImage"]').count() >= 4  # the accused clip beside its evidence
    assert "nearest neighbour" in relabel.inner_text() and "similarity 0." in relabel.inner_text()
    cards = page.locator('[class*="st-key-fix_"]')
    assert cards.count() >= 5 and not [t for t in cards.all_inner_texts() if "{" in t]  # no raw JSON
    shot(page, "findings")
    relabel.get_by_role("button", name="Accept").click()
    settle(page)
    assert "accepted" in page.locator(f".st-key-fix_relabel_{planted.mislabel}").inner_text()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the fixed manifest").click()
    fixed = Path(download.value.path()).read_text()
    assert next(x for x in fixed.splitlines() if "rabbit_extra" in x).endswith(",rabbit,train")
    pick(page, "Kind", "temporal_looseness")
    assert page.locator('[class*="st-key-fix_"]').count() == 1  # the kind filter filters the fixes too
    no_traceback(page)


def test_every_page_says_milvus_is_busy_while_a_job_holds_the_file(demo, page, tmp_path):
    """Every page that asks the store says so; the Class page, whose thumbnails the audit folder holds, asks nothing."""
    outcome, planted, _, _, uri = demo
    busy = "Milvus is busy (an indexing job holds this file)"
    with held_store(uri), streamlit_app(outcome.out_dir, uri, tmp_path / "state") as url:
        for path, title in [
            ("", "Audit of demo"),
            ("map", "Map"),
            ("class_page", "Class"),
            ("search", "Are my examples visually similar?"),
            ("findings", "Findings"),
        ]:
            visit(page, f"{url}/{path}", f'h1:has-text("{title}")')
            if path == "map":
                pick(page, "…or pick rows", str(planted.loose_in_time))
            body = page.inner_text("body")
            assert "ConnectionConfigException" not in body and "StoreError" not in body, path
            if path == "class_page":  # it needs nothing but thumbnails, which the audit folder holds
                assert busy not in body and page.locator('[data-testid="stImage"] img').count(), path
                continue
            assert busy in body, path
            if path == "search":  # answers from the audit's copies; only their exact re-scoring waits
                assert "Ranked on the audit's 8-bit copies" in body and "(from the audit)" not in body
                shot(page, "busy")


def test_run_an_audit_as_a_job_the_page_follows(server, page, demo, tmp_path):
    manifest = demo[2]
    visit(page, f"{server}/run_audit", 'h1:has-text("Run an audit")')
    type_into(page, "Manifest", str(manifest))
    assert page.get_by_role("textbox", name="Dataset name", exact=True).input_value() == "demo"  # the open audit's
    type_into(page, "Output folder", str(tmp_path / "from_browser"))
    page.get_by_role("button", name="Run the audit").click()
    page.locator('[data-testid="stProgress"]').wait_for(timeout=60_000)
    progress = page.locator('[data-testid="stProgress"]').inner_text()
    assert "None" not in progress
    page.get_by_text("Done:").wait_for(timeout=900_000)
    assert "under Recent audits" in page.inner_text("body")
    shot(page, "run_audit")
    page.get_by_role("button", name="Open it").click()
    page.locator('h1:has-text("Audit of demo")').wait_for(timeout=60_000)
    settle(page)
    audit_folder = page.get_by_role("textbox", name="Audit folder").input_value()
    assert audit_folder == str((tmp_path / "from_browser").resolve())
    no_traceback(page)


# --- the review loop ---------------------------------------------------------------------------


def card(page) -> str:
    return page.locator(".st-key-review_card").inner_text()


def press(page, key: str) -> None:
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press(key)
    settle(page)


def test_review_from_the_keyboard_with_evidence_playing_together_and_export(server, page, demo):
    planted, folder = demo[1], demo[0].out_dir
    visit(page, f"{server}/review", ".st-key-review_card")
    assert "error" in card(page).split("\n")[0]  # the most severe first
    for _ in range(12):
        if f"relabel row {planted.mislabel} from" in card(page):
            break
        press(page, "s")
    assert f"Relabel row {planted.mislabel} from 'phone_call' to 'rabbit'" in card(page)
    evidence = page.locator(".st-key-evidence_review")
    assert "accused" in evidence.inner_text() and "nearest neighbour" in evidence.inner_text()
    assert "similarity 0." in evidence.inner_text() and "typical clip of its class" in evidence.inner_text()
    page.locator(".st-key-evidence_review video").first.wait_for(timeout=SLOW)
    page.get_by_test_id("playTogether").click()
    page.wait_for_timeout(1500)
    players = page.evaluate(
        "() => Array.from(document.querySelectorAll('.st-key-evidence_review video'))"
        ".map(v => [v.paused, v.currentTime])"
    )
    assert len(players) >= 4 and all(not paused for paused, _ in players)  # every clip plays, together
    assert max(t for _, t in players) - min(t for _, t in players) < 0.3
    shot(page, "review", height=1300)
    note = page.get_by_role("textbox", name="Note (saved with the decision)")
    note.fill("a rabbit, plain as day")  # typing a, s, x in a note is not a shortcut
    note.press("Enter")
    settle(page)
    assert "pending" in card(page)
    press(page, "a")
    saved = json.loads((folder / "decisions.json").read_text())
    key = f"likely_mislabel:{planted.mislabel}"
    assert saved["findings"][key] | {"at": 0} == {"decision": "accepted", "note": "a rabbit, plain as day", "at": 0}
    assert f"relabel row {planted.mislabel} from" not in card(page)  # on to the next pending finding
    press(page, "u")
    assert f"relabel row {planted.mislabel} from" in card(page) and "pending" in card(page)
    press(page, "a")
    page.reload()  # a restart of the page resumes from decisions.json
    visit(page, f"{server}/review", ".st-key-review_card")
    assert "1 of" in page.locator('[data-testid="stProgress"]').inner_text()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the fixed manifest").click()
    fixed = Path(download.value.path()).read_text()
    assert next(x for x in fixed.splitlines() if "rabbit_extra" in x).endswith(",rabbit,train")
    assert len(fixed.splitlines()) == len(demo[3].splitlines())  # only the accepted edit: nothing dropped
    with page.expect_download() as download:
        page.get_by_role("button", name="Download decisions.json").click()
    assert json.loads(Path(download.value.path()).read_text())["edits"] == {f"relabel:{planted.mislabel}": "accepted"}
    no_traceback(page)


def test_review_bulk_reject_by_kind(server, page, demo):
    visit(page, f"{server}/review", ".st-key-review_card")
    page.get_by_text("Which findings: filter").click()
    page.locator('[data-testid="stMultiSelect"]').filter(has_text="Kind").first.wait_for(state="visible")
    settle(page)
    leaks = sum(1 for f in report_of(demo)["findings"] if f["kind"] == "split_leak")  # the demo's planted copy
    pick(page, "Kind", "split leak")
    page.get_by_role("button", name=f"Reject {leaks} pending").click()
    settle(page)
    saved = json.loads((demo[0].out_dir / "decisions.json").read_text())
    assert sorted(v["decision"] for v in saved["findings"].values()) == ["rejected"] * leaks
    assert f"{leaks} of {leaks} decided" in page.locator('[data-testid="stProgress"]').inner_text()
    press(page, "u")
    assert f"0 of {leaks} decided" in page.locator('[data-testid="stProgress"]').inner_text()


def plotted(page) -> dict:
    return page.evaluate(
        """() => { const gd = document.querySelector('.st-key-map .js-plotly-plot');
                   return Object.fromEntries(gd.data.map(t => [t.name, Array.from(t.customdata).map(c => c[0])])); }"""
    )


def enumerate_findings(demo) -> list[tuple[int, str]]:
    """(row, kind) of every accused row of the demo audit."""
    return [(r, f["kind"]) for f in report_of(demo)["findings"] for r in f["rows"]]


def test_map_shows_the_finding_picked_colours_kinds_and_opens_a_clicked_point(server, page, demo):
    planted = demo[1]
    visit(page, f"{server}/findings", 'h1:has-text("Findings")')
    page.locator(f".st-key-fix_relabel_{planted.mislabel}").get_by_role("button", name="Show on the map").click()
    page.wait_for_selector(".st-key-map .js-plotly-plot", timeout=SLOW)
    settle(page)
    traces = plotted(page)
    assert traces["picked"] == [planted.mislabel] and traces["evidence of the picked"]  # Show on the map selects it
    pick(page, "Colour by", "finding kind")
    traces = plotted(page)
    assert {"temporal looseness", "spatial looseness", "likely mislabel", "near duplicate"} <= set(traces)
    for _ in range(5):  # the chart may still be settling its axes: click only once the pointer is over the point
        row, x, y = page.evaluate(
            """(rows) => { const gd = document.querySelector('.st-key-map .js-plotly-plot');
                const fl = gd._fullLayout, box = gd.getBoundingClientRect(), points = [];
                gd.data.forEach(t => Array.from(t.customdata).forEach((c, i) => points.push(
                    [c[0], box.left + fl._size.l + fl.xaxis.l2p(t.x[i]),
                     box.top + fl._size.t + fl.yaxis.l2p(t.y[i])])));
                const gap = ([r, x, y]) => Math.min(
                    ...points.filter(p => p[0] != r).map(p => Math.hypot(p[1] - x, p[2] - y)));
                return points.filter(p => rows.includes(p[0])).sort((a, b) => gap(b) - gap(a))[0]; }""",
            [r for r, c in enumerate_findings(demo)],
        )  # the accused clip standing furthest from any other point: a click there can only hit it
        page.mouse.move(x - 20, y - 20)
        page.mouse.move(x, y, steps=4)
        page.wait_for_timeout(500)
        if page.locator('img[data-testid="hoverThumbnail"]').get_attribute("data-row") == str(row):
            break
    page.mouse.click(x, y)
    settle(page)
    assert row in plotted(page)["picked"]  # a click picks the point…
    section = page.locator('[data-testid="stVerticalBlock"]').filter(has_text="Findings about these clips").last
    assert any(kind in section.inner_text() for r, kind in enumerate_findings(demo) if r == row)  # …and its findings
    page.mouse.move(5, 5)  # the hover thumbnail away from the screenshot
    shot(page, "map", height=1400)
    no_traceback(page)


def test_accepted_relabels_are_drawn_in_their_new_class(server, page, demo):
    planted = demo[1]
    visit(page, f"{server}/findings", 'h1:has-text("Findings")')
    page.locator(f".st-key-fix_relabel_{planted.mislabel}").get_by_role("button", name="Accept").click()
    settle(page)
    visit(page, f"{server}/map", ".st-key-map .js-plotly-plot")
    assert planted.mislabel in plotted(page)["rabbit"]


def test_search_shows_at_once_and_loads_the_text_model_in_the_background(server, page):
    started = time.time()
    page.goto(f"{server}/search")
    page.wait_for_selector('h1:has-text("Are my examples visually similar?")', timeout=SLOW)
    title = time.time() - started
    page.wait_for_selector('text="Examples → video"', timeout=SLOW)
    results = time.time() - started
    page.get_by_text("Loading the text model").wait_for(state="detached", timeout=SLOW)
    print(f"search: title {title:.1f} s, example results {results:.1f} s, text model {time.time() - started:.1f} s")
    assert title < 5, title  # the page shows at once; the model loads behind it
    assert "#1 · score 0." in page.locator('[class*="st-key-result_examples_"]').first.inner_text()
    assert "0.80" in page.inner_text("body")  # the verdict says its threshold
    pick(page, "Class", "phone_call")
    shot(page, "search", scroll_to="phone_call:", height=1300)
    no_traceback(page)


def test_overview_starts_here_and_guidance_explains(server, page, demo):
    errors = sum(1 for f in report_of(demo)["findings"] if f["severity"] == "error")
    visit(page, server, 'h1:has-text("Audit of demo")')
    assert page.locator(".st-key-start_here").get_by_role("button", name="Review").count() >= 1
    page.get_by_role("button", name=f"See the {errors} errors").click()
    page.wait_for_selector('h1:has-text("Findings")', timeout=SLOW)
    settle(page)
    assert page.locator('[class*="st-key-findingcard_"]').count() == errors
    visit(page, f"{server}/guidance", 'h1:has-text("Guidance")')
    body = page.inner_text("body")
    assert "evaluate tab" not in body and "None" not in body
    shot(page, "guidance", scroll_to="Split populations", height=1300)
