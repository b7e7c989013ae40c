"""Every page of the Streamlit app on the audited demo (Milvus Lite in a temp folder), through AppTest."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from auditor.workspace import fixed_manifest_bytes, load_decisions, load_edits

APP = str(Path(__file__).parents[1] / "app.py")


@pytest.fixture
def app(demo, monkeypatch):
    outcome, _, _, _, uri = demo
    monkeypatch.setenv("AUDITOR_AUDIT_DIR", str(outcome.out_dir))
    monkeypatch.setenv("AUDITOR_MILVUS_URI", uri)
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return at


def page(at: AppTest, path: str) -> AppTest:
    at.switch_page(str(Path(APP).parent / path)).run()
    assert not at.exception, at.exception
    return at


def test_overview_summary_and_class_filter(app, demo):
    outcome = demo[0]
    assert app.title[0].value == "Audit of demo"
    assert [m.value for m in app.metric][:2] == [str(len(outcome.report["clips"])), "3"]
    assert len(app.dataframe[0].value) == 3
    app.text_input(key="class_filter").set_value("rab").run()
    assert list(app.dataframe[0].value["label"]) == ["rabbit"]


def test_map_page_draws_and_shows_picked_clips(app, demo):
    at = page(app, "app_pages/map.py")
    assert at.title[0].value == "Map"
    planted = demo[1]
    at.multiselect(key="picked_rows").set_value([planted.loose_in_time]).run()
    assert any("1 selected clip" in s.value for s in at.subheader)
    assert any("temporal_looseness" in m.value for m in at.markdown)


def test_class_page_follows_the_selected_class(app):
    at = page(app, "app_pages/class_page.py")
    at.selectbox(key="class_label").set_value("rabbit").run()
    assert not at.exception
    assert at.subheader[0].value.startswith("rabbit")
    assert any(s.value == "Temporal tightness" for s in at.subheader)


def test_search_page_verdict_and_results(app):
    at = page(app, "app_pages/search.py")
    at.selectbox(key="search_label").set_value("phone_call").run()
    assert not at.exception, at.exception
    assert at.subheader[0].value.startswith("phone_call:")
    at.text_input(key="search_text").set_value("a man wearing a bow tie").run()
    assert not at.exception and "text precision" in at.metric[0].label


def test_findings_accept_changes_the_fixed_manifest(app, demo):
    outcome, planted = demo[0], demo[1]
    folder = outcome.out_dir
    (folder / "decisions.json").unlink(missing_ok=True)
    at = page(app, "app_pages/findings.py")
    report = outcome.report
    edits = load_edits(folder)
    relabel = next(e for e in edits if e.action == "relabel" and e.row == planted.mislabel)
    _, before = fixed_manifest_bytes(report, edits, load_decisions(folder))
    at.button(key=f"accepted:{relabel.key}").click().run()
    assert not at.exception
    decisions = load_decisions(folder)
    assert decisions == {relabel.key: "accepted"}
    _, after = fixed_manifest_bytes(report, edits, decisions)
    assert before != after
    line = next(x for x in after.decode().splitlines() if "rabbit_extra" in x)
    assert line.endswith(",rabbit,train")
    at.multiselect(key="finding_kinds").set_value(["spatial_looseness"]).run()
    assert list(at.dataframe[0].value["kind"]) == ["spatial_looseness"]


def test_no_audit_gives_a_message_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITOR_AUDIT_DIR", str(tmp_path / "nothing"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception and "No audit at" in at.info[0].value


def test_app_starts_without_torch():
    import subprocess
    import sys

    code = "import sys, app_pages.shared, auditor.workspace; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


def test_run_an_audit_from_the_app(app, demo, tmp_path):
    outcome, _, manifest, _, _ = demo
    at = page(app, "app_pages/run_audit.py")
    at.text_input(key="run_manifest").set_value(str(manifest)).run()
    at.text_input(key="run_dataset").set_value("demo").run()
    at.text_input(key="run_out").set_value(str(tmp_path / "from_app")).run()
    at.button(key="run_go").click().run()
    assert not at.exception, at.exception
    assert at.success and "findings" in at.success[0].value
    assert (tmp_path / "from_app" / "report.json").exists()
