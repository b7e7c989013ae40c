"""Every page of the Streamlit app on the audited demo (Milvus Lite in a temp folder), through AppTest.

The real-browser checks of the same pages are in test_browser.py; the security ones in test_app_security.py.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from auditor import service
from auditor.media import cut_segment
from auditor.workspace import load_decisions, manifest_download, open_audit, remember_audit
from indexer.synthetic import write_video

APP = str(Path(__file__).parents[1] / "app.py")
CLASS_LEVEL = {"split_candidate", "low_diversity", "too_few_examples", "shortcut_risk", "search_inconsistency"}


@contextmanager
def held_store(uri: str):
    """Another process holds the Milvus Lite file (as an indexing job does) until the block ends."""
    code = (
        "import sys; from taxonomy_core.store import open_store; s = open_store(sys.argv[1]); "
        "print('held', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    """The tools' state folder (audits the CLI wrote, jobs) in a temp folder, not the user's home."""
    monkeypatch.setenv("AUDITOR_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def app(demo, monkeypatch):
    outcome, _, _, _, uri = demo
    monkeypatch.setenv("AUDITOR_AUDIT_DIR", str(outcome.out_dir))
    monkeypatch.setenv("AUDITOR_MILVUS_URI", uri)
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    return at


def page(at: AppTest, path: str) -> AppTest:
    at.switch_page(str(Path(APP).parent / path)).run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    """What the page shows, as read: user text reaches markdown escaped (app_pages.literal), shown unescaped."""
    parts = [*at.markdown, *at.caption, *at.info, *at.warning, *at.error, *at.success, *at.subheader]
    return "\n".join(unescaped(x.value) for x in parts)


def unescaped(markdown: object) -> str:
    return re.sub(r"\\(.)", r"\1", str(markdown))


def test_overview_summary_and_class_filter(app, demo):
    outcome = demo[0]
    assert app.title[0].value == "Audit of demo"
    assert [m.value for m in app.metric][:2] == [str(len(outcome.report["clips"])), "3"]
    assert len(app.dataframe[0].value) == 3
    app.text_input(key="class_filter").set_value("rab").run()
    assert list(app.dataframe[0].value["label"]) == ["rabbit"]


def test_map_lists_only_the_findings_that_accuse_the_selection(app, demo):
    at = page(app, "app_pages/map.py")
    planted = demo[1]
    at.multiselect(key="picked_rows").set_value([planted.loose_in_time]).run()
    assert any("1 selected clip" in s.value for s in at.subheader)
    shown = texts(at)
    assert "temporal_looseness" in shown and "trim row" in shown
    assert not [kind for kind in CLASS_LEVEL if kind in shown]


def test_map_says_why_only_eight_clips_play(app, demo):
    at = page(app, "app_pages/map.py")
    rows = sorted(c["row"] for c in demo[0].report["clips"])[:10]
    at.multiselect(key="picked_rows").set_value(rows).run()
    assert any("Players for the first 8 of the 10 selected clips" in i.value for i in at.info)
    assert len(at.get("video")) == 8


def test_class_page_tells_one_story_about_sub_groups_and_boxes(app, demo):
    at = page(app, "app_pages/class_page.py")
    at.selectbox(key="class_label").set_value("rabbit").run()
    assert unescaped(at.subheader[0].value).startswith("rabbit")
    shown = texts(at)
    assert "HDBSCAN clusters [" not in shown and "1 clips" not in shown
    assert "falls into two distinct groups" in shown  # the split candidate leads; clusters are said in words
    assert "No clip of rabbit is cut loosely in space" in shown
    at.selectbox(key="class_label").set_value("phone_call").run()
    spatial = demo[1].loose_in_space
    assert f"crop row {spatial} to the box" in texts(at)


def test_search_page_picks_examples_by_row_and_says_text_search_is_weak(app, demo):
    at = page(app, "app_pages/search.py")
    at.selectbox(key="search_label").set_value("phone_call").run()
    assert unescaped(at.subheader[0].value).startswith("phone_call:")
    assert any("ImageNet" in i.value for i in at.info)  # the offline model's text search is weak, and the page says so
    row = next(c["row"] for c in demo[0].report["clips"] if c["label"] == "phone_call")
    at.checkbox(key=f"example:phone_call:{row}").check().run()
    assert not at.exception, at.exception
    assert any(f"Examples → video** (rows {row})" in m.value for m in at.markdown)
    at.text_input(key="search_text").set_value("a man wearing a bow tie").run()
    assert not at.exception and "text precision" in at.metric[0].label


def fix_keys(at: AppTest) -> list[str]:
    return [b.key.split(":", 1)[1] for b in at.button if b.key and b.key.startswith("accepted:")]


def test_findings_fixes_read_as_sentences_follow_the_filters_and_change_the_manifest(app, demo):
    outcome, planted = demo[0], demo[1]
    folder = outcome.out_dir
    (folder / "decisions.json").unlink(missing_ok=True)
    at = page(app, "app_pages/findings.py")
    shown = texts(at)
    assert f"Relabel row {planted.mislabel} from 'phone_call' to 'rabbit'" in shown
    assert "{'" not in shown and '{"' not in shown  # no raw JSON suggestions
    audit = open_audit(folder, (folder,))
    for edit in audit.edits:  # a fix's kind is its finding's kind
        assert any(f["kind"] == edit.kind and edit.row in f["rows"] for f in audit.report["findings"])
    relabel = next(e for e in audit.edits if e.action == "relabel" and e.row == planted.mislabel)
    stored = service.stored_manifest(demo[4], "demo", "effnet-lite0")
    _, before = manifest_download(audit, {}, stored)
    at.button(key=f"accepted:{relabel.key}").click().run()
    assert not at.exception, at.exception
    decisions = load_decisions(folder)
    assert decisions == {relabel.key: "accepted"}
    _, after = manifest_download(audit, decisions, stored)
    line = next(x for x in after.decode().splitlines() if "rabbit_extra" in x)
    assert before != after and line.endswith(",rabbit,train")
    at.multiselect(key="finding_kinds").set_value(["temporal_looseness"]).run()
    assert fix_keys(at) == [f"trim:{planted.loose_in_time}"]  # the kind filter filters the fixes too


def test_a_decisions_file_that_is_not_an_object_is_a_message(app, demo):
    folder = demo[0].out_dir
    (folder / "decisions.json").write_text("[1, 2]")
    try:
        at = page(app, "app_pages/findings.py")
        assert any("decisions" in e.value for e in at.error)
        at.button(key="reset_broken").click().run()
        assert not at.exception and load_decisions(folder) == {}
    finally:
        (folder / "decisions.json").unlink(missing_ok=True)


def test_a_crlf_manifest_downloads_with_crlf(demo, tmp_path):
    outcome, _, manifest, _, _ = demo
    folder = tmp_path / "audit"
    shutil.copytree(outcome.out_dir, folder)
    crlf = tmp_path / "manifest.csv"
    crlf.write_bytes(manifest.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    report = json.loads((folder / "report.json").read_text())
    (folder / "report.json").write_text(json.dumps({**report, "manifest": str(crlf)}))
    remember_audit(folder, crlf)  # as `auditor audit` does
    audit = open_audit(folder)
    _, content = manifest_download(audit, {e.key: "accepted" for e in audit.edits}, None)
    assert content.count(b"\r\n") == content.count(b"\n") > 10


def test_busy_store_pages_say_so_and_show_the_audit(app, demo):
    import streamlit as st

    st.cache_data.clear()  # as a freshly started app: nothing from Milvus cached yet
    st.cache_resource.clear()
    with held_store(demo[4]):
        at = page(app, "app_pages/overview.py")
        assert at.title[0].value == "Audit of demo" and len(at.dataframe[0].value) == 3
        assert [w.value for w in at.warning if service.BUSY in w.value]
        at = page(app, "app_pages/map.py")
        at.multiselect(key="picked_rows").set_value([demo[1].loose_in_time]).run()
        assert not at.exception and any(service.BUSY in w.value for w in at.warning)
        assert "temporal_looseness" in texts(at)  # the audit's own findings still show
        at = page(app, "app_pages/search.py")
        assert any(service.BUSY in w.value for w in at.warning)
        assert "(from the audit)" in at.subheader[0].value
        at = page(app, "app_pages/findings.py")
        assert any(service.BUSY in w.value for w in at.warning) and fix_keys(at)


def test_no_audit_gives_a_message_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITOR_AUDIT_DIR", str(tmp_path / "nothing"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception and "No audit at" in at.info[0].value


def test_app_starts_without_torch():
    modules = "app_pages.shared, app_pages.hover, auditor.workspace, auditor.service, auditor.jobs, auditor.media"
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_segment_plays_from_its_exact_start_to_its_exact_end(tmp_path):
    video = tmp_path / "v.mp4"
    write_video(video, frames=50, fps=25, pattern="moving")
    cut = cut_segment(video, 0.32, 1.92)
    assert cut.frames == 40 and cut.seconds == pytest.approx(1.6)  # not whole seconds: 1.6 s, not 1 s
    import av

    with av.open(io.BytesIO(cut.data)) as played:
        assert played.duration / 1e6 == pytest.approx(1.6, abs=0.05)


def test_run_an_audit_from_the_app(app, demo, tmp_path, monkeypatch):
    outcome, _, manifest, _, _ = demo
    monkeypatch.setenv("AUDITOR_AUDIT_ROOTS", str(tmp_path))
    monkeypatch.setenv("AUDITOR_DATA_ROOTS", str(manifest.parent))  # the operator's: what the app may read
    monkeypatch.setenv("AUDITOR_OUTPUT_ROOT", str(tmp_path))  # and where it may write
    at = page(app, "app_pages/run_audit.py")
    at.text_input(key="run_manifest").set_value(str(manifest)).run()
    assert at.text_input(key="run_dataset").value == "manifest"  # filled from the manifest's name
    at.text_input(key="run_dataset").set_value("demo").run()
    at.text_input(key="run_out").set_value(str(tmp_path / "from_app")).run()
    at.button(key="run_go").click().run()
    assert not at.exception, at.exception
    job = Path(at.session_state["run_job"])
    deadline = time.time() + 900
    while not service.read_job(job).finished and time.time() < deadline:
        time.sleep(2)
    status = service.read_job(job)
    assert status.state == "done", (status.message, (job / "log.txt").read_text()[-2000:])
    at.run()
    assert at.success and "findings" in at.success[0].value and "Recent audits" in at.success[0].value
    assert (tmp_path / "from_app" / "report.json").exists()
    assert str((tmp_path / "from_app").resolve()) in at.selectbox(key="recent_audit").options
