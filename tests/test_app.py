"""Every page of the Streamlit app on the audited demo (Milvus Lite in a temp folder), through AppTest.

The real-browser checks of the same pages are in test_browser.py; the security ones in test_app_security.py.
"""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from auditor import decisions as D
from auditor import service
from auditor.media import cut_segment
from auditor.workspace import manifest_download, open_audit, remember_audit
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
    literal = [html.unescape(re.sub("<[^>]+>", "", h.proto.body)) for h in at.get("html")]  # user text, escaped
    return "\n".join([unescaped(x.value) for x in parts] + literal)


def class_table(at: AppTest):
    return next(d.value for d in at.dataframe if "label" in d.value.columns)


def load_decisions(folder: Path) -> dict[str, str]:
    """Edit key -> state, as the fixed manifest applies them."""
    audit = open_audit(folder, (folder,))
    plan = D.Plan.of(audit.report["findings"], audit.edits)
    return D.load(folder, plan).accepted_edits(plan)


def unescaped(markdown: object) -> str:
    return re.sub(r"\\(.)", r"\1", str(markdown))


def test_overview_summary_and_class_filter(app, demo):
    outcome = demo[0]
    assert app.title[0].value == "Audit of demo"
    assert [m.value for m in app.metric][:2] == [str(len(outcome.clips)), "3"]
    assert len(class_table(app)) == 3
    app.text_input(key="class_filter").set_value("rab").run()
    assert list(class_table(app)["label"]) == ["rabbit"]


def test_overview_shows_the_class_by_split_table_of_the_fix_set(app, demo):
    plan = demo[0].report["fix_plan"]
    assert "The fix set, applied whole" in [s.value for s in app.subheader]
    [table] = [d.value for d in app.dataframe if "status" in d.value.columns]
    assert list(table["class"]) == [row["label"] for row in plan["table"]]
    phone = table[table["class"] == "phone_call"].iloc[0]
    before = next(r["before"] for r in plan["table"] if r["label"] == "phone_call")
    assert phone["test"] == f"{before['test']} → {before['test'] - 1}"  # the planted copy in test is dropped


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
    rows = sorted(c["row"] for c in demo[0].clips.records())[:10]
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
    helps = {m.label: m.proto.help for m in at.metric}
    assert all(helps.values()) and "0.90" in helps["Probe F1"]  # every metric has its glossary entry and threshold
    at.selectbox(key="class_label").set_value("phone_call").run()
    spatial = demo[1].loose_in_space
    assert f"crop row {spatial} to the box" in texts(at)


def test_search_page_picks_examples_by_row_and_says_text_search_is_weak(app, demo):
    at = page(app, "app_pages/search.py")
    at.selectbox(key="search_label").set_value("phone_call").run()
    deadline = time.time() + 300
    while any("Loading the text model" in i.value for i in at.info) and time.time() < deadline:
        time.sleep(2)  # the text model loads in a background thread; the page shows without it
        at.run()
    assert at.subheader[0].value.startswith("phone\\_call:")  # the label, escaped: shown literally
    assert any("ImageNet" in i.value for i in at.info)  # the offline model's text search is weak, and the page says so
    row = next(c["row"] for c in demo[0].clips.records() if c["label"] == "phone_call")
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
        assert at.title[0].value == "Audit of demo" and len(class_table(at)) == 3
        assert [w.value for w in at.warning if service.BUSY in w.value]
        at = page(app, "app_pages/map.py")
        at.multiselect(key="picked_rows").set_value([demo[1].loose_in_time]).run()
        assert not at.exception and any(service.BUSY in w.value for w in at.warning)
        assert "temporal_looseness" in texts(at)  # the audit's own findings still show
        at = page(app, "app_pages/search.py")  # searches the audit's copies; only their exact re-scoring waits
        assert any(service.BUSY in w.value for w in at.warning)
        assert "(from the audit)" not in at.subheader[0].value and "Ranked on the audit's 8-bit copies" in texts(at)
        at = page(app, "app_pages/findings.py")
        assert any(service.BUSY in w.value for w in at.warning) and fix_keys(at)
        at = page(app, "app_pages/review.py")  # the queue works from the audit folder alone
        assert any(service.BUSY in w.value for w in at.warning) and at.button(key="review_accept")


def test_pages_show_the_audits_thumbnails_while_the_store_cannot_answer(app, demo, monkeypatch):
    """The thumbnails come from the audit folder's thumbs.<run_id>.bin: a held Lite file hides none of them."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    asked, store_thumbnails = [], service.thumbnails
    monkeypatch.setattr(service, "thumbnails", lambda *args: asked.append(args) or store_thumbnails(*args))
    with held_store(demo[4]):
        for path in ("app_pages/findings.py", "app_pages/class_page.py", "app_pages/search.py"):
            at = page(app, path)
            assert at.get("image"), path
        page(app, "app_pages/map.py")  # its hover thumbnails too
    assert not asked  # every thumbnail shown came from the file
    own = demo[0].out_dir / open_audit(demo[0].out_dir, (demo[0].out_dir,)).report["thumbnails"]
    own.rename(moved := own.with_name("moved.bin"))
    try:
        st.cache_resource.clear()
        with held_store(demo[4]):  # without the file (an older audit), the same page waits for the store
            at = page(app, "app_pages/findings.py")
            assert not at.get("image") and any(service.BUSY in w.value for w in at.warning)
    finally:
        moved.rename(own)


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
    assert at.text_input(key="run_dataset").value == "demo"  # the open audit's dataset for its own manifest
    assert at.selectbox(key="run_model").value == "effnet-lite0"  # and its model
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


# --- the review loop ---------------------------------------------------------------------------


@pytest.fixture
def fresh(demo):
    """The demo audit with no decisions yet (and none left behind)."""
    path = demo[0].out_dir / D.DECISIONS_FILE
    path.unlink(missing_ok=True)
    yield demo
    path.unlink(missing_ok=True)


def review_card(at: AppTest) -> str:
    return texts(at)


def test_review_queue_orders_decides_notes_undoes_and_resumes(app, fresh):
    outcome, planted = fresh[0], fresh[1]
    folder = outcome.out_dir
    at = page(app, "app_pages/review.py")
    severities = [m.value for m in at.markdown if "badge[" in m.value]
    assert severities and severities[0].startswith(":red-badge[error]")  # errors first
    for _ in range(12):  # skip to the headline mislabel
        if f"relabel row {planted.mislabel} from 'phone_call' to 'rabbit'" in texts(at):
            break
        at.button(key="review_skip").click().run()
    key = f"likely_mislabel:{planted.mislabel}"
    assert f"Relabel row {planted.mislabel} from 'phone_call' to 'rabbit'" in texts(at)  # what accepting applies
    at.text_input(key=f"note:{key}").set_value("the rabbit is plain to see").run()
    at.button(key="review_accept").click().run()
    assert not at.exception, at.exception
    saved = json.loads((folder / D.DECISIONS_FILE).read_text())
    assert saved["findings"][key]["decision"] == "accepted" and saved["findings"][key]["note"].startswith("the rabbit")
    assert saved["edits"] == {f"relabel:{planted.mislabel}": "accepted"}
    assert "1 of" in at.get("progress")[0].proto.text  # progress: n of m decided
    assert key not in texts(at).split("Keys:")[0] or "pending" in texts(at)  # moved on to the next pending one
    again = AppTest.from_file(APP, default_timeout=300)  # a restart resumes from the file
    again.run()
    again = page(again, "app_pages/review.py")
    assert "1 of" in again.get("progress")[0].proto.text
    again.button(key="review_undo").click().run()
    assert load_decisions(folder) == {}
    assert f"relabel row {planted.mislabel}" in texts(again)  # undo returns to the finding it reverted


def test_review_and_map_show_thumbnails_of_a_big_lite_audit_until_asked_to_play(app, fresh, monkeypatch):
    """On a Lite file of many clips each player loads the store shard holding its clip (~1 s at 10^6 clips)."""
    at = page(app, "app_pages/review.py")
    assert at.toggle(key="review_play").value  # the demo: its clips play as the page opens
    monkeypatch.setattr(service, "PLAY_LITE_CLIPS", 3)  # as if the demo were a big audit in a Lite file
    big = page(AppTest.from_file(APP, default_timeout=300), "app_pages/review.py")
    assert not big.toggle(key="review_play").value
    for _ in range(12):  # to the first finding with clips (class-wide ones come first)
        assert not big.get("video")
        if big.get("image"):
            break
        big.button(key="review_skip").click().run()
    assert big.get("image")  # the audit folder's thumbnails
    big.toggle(key="review_play").set_value(True).run()
    assert not big.exception and big.get("video") and not big.get("image")
    picked = page(big, "app_pages/map.py")
    picked.multiselect(key="picked_rows").set_value([fresh[1].loose_in_time]).run()
    assert not picked.toggle(key="map_play").value and not picked.get("video") and picked.get("image")
    picked.toggle(key="map_play").set_value(True).run()
    assert not picked.exception and picked.get("video")


def test_review_bulk_by_kind_and_export_only_accepted_edits(app, fresh):
    outcome, planted = fresh[0], fresh[1]
    at = page(app, "app_pages/review.py")
    at.multiselect(key="review_kinds").set_value(["temporal_looseness"]).run()
    at.button(key="review_accept_all").click().run()
    assert load_decisions(outcome.out_dir) == {f"trim:{planted.loose_in_time}": "accepted"}
    at.multiselect(key="review_kinds").set_value(["split_leak"]).run()
    at.button(key="review_reject_all").click().run()
    states = load_decisions(outcome.out_dir)
    assert states[f"trim:{planted.loose_in_time}"] == "accepted" and "rejected" in states.values()
    audit = open_audit(outcome.out_dir, (outcome.out_dir,))
    _, fixed = manifest_download(audit, states, service.stored_manifest(fresh[4], "demo", "effnet-lite0"))
    assert b"rabbit_extra" in fixed  # no drop applied: the split leaks were rejected
    assert any("Download the fixed manifest (1 accepted" in b.label for b in at.get("download_button"))


def test_decisions_file_reads_the_first_version_and_refuses_damage(tmp_path, demo):
    audit = open_audit(demo[0].out_dir, (demo[0].out_dir,))
    plan = D.Plan.of(audit.report["findings"], audit.edits)
    relabel = next(e for e in audit.edits if e.action == "relabel")
    (tmp_path / D.DECISIONS_FILE).write_text(json.dumps({relabel.key: "accepted"}))  # version 1: edit -> state
    decisions = D.load(tmp_path, plan)
    assert decisions.accepted_edits(plan) == {relabel.key: "accepted"}
    decisions.decide([plan.keys[0], plan.keys[1]], "rejected")
    assert decisions.undo() == [plan.keys[0], plan.keys[1]] and decisions.progress(plan.keys)[0] == 1
    D.save(tmp_path, decisions, plan)
    assert D.load(tmp_path, plan).accepted_edits(plan) == {relabel.key: "accepted"}
    assert not list(tmp_path.glob(".*.tmp"))  # written whole, by one rename
    (tmp_path / D.DECISIONS_FILE).write_text(json.dumps({"version": 2, "findings": {plan.keys[0]: "maybe"}}))
    with pytest.raises(D.DecisionsError, match="accepted' or 'rejected"):
        D.load(tmp_path, plan)


def test_unknown_finding_kinds_and_edit_actions_render_generically(app, demo, tmp_path, monkeypatch):
    folder = tmp_path / "audit"
    shutil.copytree(demo[0].out_dir, folder)
    report = json.loads((folder / "report.json").read_text())
    first = demo[0].clips.record(0)
    row = first["row"]
    report["findings"].insert(0, {
        "kind": "label_conflict", "severity": "error", "rows": [row], "labels": [first["label"]],
        "message": "two annotators disagree", "evidence": [], "confidence": 0.9, "action": "settle the label",
        "suggestion": {"reason": "annotators"}, "videos": [], "group": 3,
    })  # fmt: skip
    report["edits"].append({"row": row, "action": "merge", "value": None, "kind": "label_conflict",
                            "key": f"merge:{row}", "group": 3})  # fmt: skip
    (folder / "report.json").write_text(json.dumps(report))
    monkeypatch.setenv("AUDITOR_AUDIT_DIR", str(folder))
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at = page(at, "app_pages/review.py")
    at.multiselect(key="review_kinds").set_value(["label_conflict"]).run()
    assert "label conflict" in texts(at) and f"Merge row {row}" in texts(at)
    for path in ("app_pages/findings.py", "app_pages/map.py", "app_pages/overview.py"):
        page(at, path)


def test_overview_starts_here_and_links_counts_to_findings(app):
    shown = texts(app)
    assert "Start here" in shown and app.button(key="start_review")
    app.button(key="see_error").click().run()
    assert not app.exception, app.exception
    assert app.title[0].value == "Findings" and app.multiselect(key="finding_severities").value == ["error"]


def test_map_colours_every_finding_kind_and_highlights_the_picked(app, fresh):
    planted = fresh[1]
    at = page(app, "app_pages/map.py")
    at.selectbox(key="map_colour").set_value("severity").run()
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t["name"] for t in figure["data"]} <= {"error", "warning", "info", "no finding"}
    at.selectbox(key="map_colour").set_value("finding kind").run()
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = {t["name"] for t in figure["data"]}
    assert {"temporal looseness", "spatial looseness", "likely mislabel", "split leak"} <= names
    at.multiselect(key="picked_rows").set_value([planted.mislabel]).run()
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    traces = {t["name"]: t for t in figure["data"]}
    assert traces["picked"]["customdata"] == [[planted.mislabel]] and traces["evidence of the picked"]["customdata"]


def test_guidance_explains_its_columns(app):
    at = page(app, "app_pages/guidance.py")
    shown = texts(at)
    assert "evaluate tab" not in shown and "held-out clips" in shown
    frames = [d.value for d in at.dataframe]
    assert not any("None" in str(frame.to_string()) for frame in frames)


# --- at scale: the store's own index, samples on the map (docs/benchmarks.md, "The app at 10^6") -------------


def test_search_answers_from_the_store_index_as_the_audit_does(demo):
    """The store's searches give the numbers the audit's search check computes from the whole context."""
    from auditor.context import AuditContext
    from auditor.search import class_consistency
    from taxonomy_core import schema as S

    outcome, uri = demo[0], demo[4]
    clips = {c["clip_id"]: c for c in outcome.clips.records()}
    with service.store_session(uri) as store:
        ctx = AuditContext.from_store(store, service.find_layout(store, "demo", "effnet-lite0"), set(clips))
        # k = 10: the audit's own neighbours (knn_agreement, from the int8 copies the audit reads); k = 5: searched
        # in the store's float32 vectors, so judged against neighbours of those (int8's ~0.5 % flips near-ties)
        exact = store.exact_vectors(ctx.layout, list(ctx.clip_ids))
        searched = AuditContext(
            ctx.clips, np.stack([exact[c][S.VECTOR] for c in ctx.clip_ids]), layout=ctx.layout, store=store
        )
        expected = {(label, 10): class_consistency(ctx, label, 10) for label in ctx.classes}
        expected |= {(label, 5): class_consistency(searched, label, 5) for label in ctx.classes}
    for (label, k), want in expected.items():
        members = [c for c, clip in clips.items() if clip["label"] == label]
        got = service.search_class(uri, "demo", "effnet-lite0", label, k, clips=clips, members=members, audit_k=10)
        assert got.measured == got.seeds == got.averaged == len(members)
        assert got.consistency.example_precision == pytest.approx(want.example_precision)
        assert got.consistency.centroid_precision == pytest.approx(want.centroid_precision)
        centre = ctx.vectors[ctx.members(label)].mean(axis=0)
        closest = sorted(ctx.vectors[want.example_results] @ (centre / np.linalg.norm(centre)), reverse=True)
        assert [got.scores["examples"][c] for c in got.example_hits] == pytest.approx(closest, abs=5e-3)  # ties: any
        pulled = [(p["row"], p["pulls_in"]) for p in got.consistency.pulled]
        assert pulled == [(p["row"], p["pulls_in"]) for p in want.pulled]
        assert [p["precision"] for p in got.consistency.pulled] == pytest.approx([p["precision"] for p in want.pulled])


def ranked(comparison: service.QueryComparison, side: str) -> list[str]:
    """The hits best first, ties (within float32 noise) by id."""
    return sorted(comparison.scores[side], key=lambda c: (-round(comparison.scores[side][c], 5), c))


def test_search_on_the_audit_copies_ranks_as_the_store_does(demo):
    """The Search page's answers from the audit's 8-bit copies: re-scored with the store's float32 vectors they are
    the store's own exact search (ids, scores, every number of the verdict); on the copies alone, within int8's
    reach."""
    outcome, uri = demo[0], demo[4]
    audit = open_audit(outcome.out_dir, (outcome.out_dir,))
    copies = audit.search_copies()
    clips = {c["clip_id"]: c for c in outcome.clips.records()}
    towards = np.random.default_rng(0).normal(size=384).astype(np.float32)  # a text query in the ConSE space

    def encoder(prompts):
        return np.tile(towards, (len(prompts), 1))

    for label in sorted({c["label"] for c in clips.values()}):
        members = [c for c, clip in clips.items() if clip["label"] == label]
        for k, examples in ((5, ()), (10, ()), (3, tuple(members[:2]))):
            ask = dict(clips=clips, members=members, examples=examples, encoder=encoder, prompts=[label], audit_k=10)
            store = service.search_class(uri, "demo", "effnet-lite0", label, k, **ask)
            exact = service.search_class(uri, "demo", "effnet-lite0", label, k, **ask, copies=copies, exact=True)
            assert exact.exact
            for side in ("examples", "text"):  # the same clips in the same order (exact ties, e.g. two examples
                assert ranked(exact, side) == ranked(store, side)  # equidistant from their centroid: either first)
                assert exact.scores[side] == pytest.approx(store.scores[side], abs=1e-5)
            assert exact.consistency == store.consistency
            approx = service.search_class(uri, "demo", "effnet-lite0", label, k, **ask, copies=copies, exact=False)
            assert not approx.exact
            for side, hits in (("examples", store.example_hits), ("text", store.text_hits)):
                got, want = approx.scores[side], store.scores[side]
                assert all(abs(got[c] - want[c]) < 5e-3 for c in set(got) & set(want))
                kth = min(want.values())
                assert {c for c in hits if want[c] > kth + 0.01} <= set(got)  # only near-ties may swap


def test_search_page_never_reads_every_vector_and_samples_a_large_class(app, demo, monkeypatch):
    import streamlit as st

    from taxonomy_core.store import MilvusStore

    def whole_matrix(*args, **kwargs):
        raise AssertionError("the Search page read every clip's vector")

    monkeypatch.setattr(MilvusStore, "clip_matrix", whole_matrix)
    monkeypatch.setattr(service, "SEARCH_SEEDS", 3)  # every demo class is "large" for this test
    st.cache_data.clear()
    at = page(app, "app_pages/search.py")
    at.selectbox(key="search_label").set_value("rabbit").run()
    assert not at.exception, at.exception
    assert at.subheader[0].value.startswith("rabbit:")
    assert "measured on the neighbours of" not in texts(at)  # at the audit's K, its neighbours give every example
    at.number_input(key="search_k").set_value(5).run()
    members = sum(c["label"] == "rabbit" for c in demo[0].clips.records())
    assert f"measured on the neighbours of 3 of the {members} examples" in texts(at)
    before = [m.value for m in at.metric]
    at.run()  # the same seeded sample: the same numbers
    assert [m.value for m in at.metric] == before


def test_map_above_its_budget_draws_a_stratified_sample_under_every_clip_with_a_finding(app, demo, monkeypatch):
    monkeypatch.setenv("AUDITOR_MAP_POINTS", "12")
    at = page(app, "app_pages/map.py")
    report = demo[0].report
    placed = [c for c in demo[0].clips.records() if c.get("umap")]
    flagged = {r for f in report["findings"] for r in f["rows"]} & {c["row"] for c in placed}
    assert any(f"of {len(placed):,} clips: every clip with a finding ({len(flagged):,}" in c.value for c in at.caption)
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    drawn = [[row for [row] in t["customdata"]] for t in figure["data"]]
    on_top = next(i for i, rows in enumerate(drawn) if set(rows) <= flagged and rows)
    assert flagged == {r for rows in drawn[on_top:] for r in rows}  # every accused clip, in the last layer
    sample = {r for rows in drawn[:on_top] for r in rows}
    assert not sample & flagged and 0 < len(sample) < len(placed) - len(flagged)
    by_row = {c["row"]: c["label"] for c in placed}
    assert {by_row[r] for r in sample} == {c["label"] for c in placed if c["row"] not in flagged}  # each class


def test_map_colours_the_largest_groups_and_draws_the_rest_as_one(app, demo, monkeypatch):
    """HDBSCAN finds ~13,000 clusters in a 3 x 10^5 audit: a trace each took 21 s; above the budget the largest keep
    their colour and the rest are one grey group, every clip still drawn and clickable."""
    monkeypatch.setenv("AUDITOR_MAP_COLOURS", "2")
    at = page(app, "app_pages/map.py")
    at.selectbox(key="map_colour").set_value("label").run()
    assert not at.exception, at.exception
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = {t["name"] for t in figure["data"] if t.get("showlegend", True)} - {"picked", "evidence of the picked"}
    placed = [c for c in demo[0].clips.records() if c.get("umap")]
    counts = Counter(c["label"] for c in placed)
    other = f"{len(counts) - 1} other values (smaller)"
    kept = names - {other}
    assert len(counts) > 2 and other in names and len(kept) == 1 and kept <= set(counts)
    assert min(counts[k] for k in kept) >= max(n for label, n in counts.items() if label not in kept)  # the largest
    drawn = {row for t in figure["data"] if t["name"] in names for [row] in t["customdata"]}
    assert drawn == {c["row"] for c in placed}  # every clip drawn, the small classes under "other"


def test_above_its_size_the_fixed_manifest_is_built_when_asked_and_kept_until_a_decision(app, fresh, monkeypatch):
    from app_pages import shared

    monkeypatch.setattr(shared, "EAGER_DOWNLOAD", 0)  # the demo counts as large: no manifest read per run
    at = page(app, "app_pages/findings.py")
    assert not at.get("download_button") and at.button(key="download:prepare")
    at.button(key="download:prepare").click().run()
    assert not at.exception, at.exception
    [button] = at.get("download_button")
    assert "Download the fixed manifest (0 accepted" in button.label
    at.run()  # kept: no second build, the button stays
    assert at.get("download_button")
    at.button(key=f"accepted:{fix_keys(at)[0]}").click().run()  # a decision: the kept one is out of date
    assert not at.get("download_button") and "1 accepted" in at.button(key="download:prepare").label
