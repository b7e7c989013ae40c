"""The app serves only the dataset's own videos, opens audit folders only under its roots, trusts no report's paths.

A crafted audit folder (its report naming /etc/passwd and a secret file as clip videos and as the manifest)
must not make the app serve either: videos come from the store's rows, inside the dataset's folders, and
the fixed manifest only from a manifest the store or the CLI vouches for.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from auditor.cliptable import ClipTable, folder_clips, write_table
from auditor.media import DatasetVideos, Segment, VideoRefused
from auditor.workspace import AuditFolderError, load_decisions, manifest_download, open_audit, remember_audit
from tests.test_browser import CHROMIUM, browser  # noqa: F401  (a fixture)

SECRET = "TOP-SECRET-4f1c9a: not part of any dataset"


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITOR_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def audit_copy(demo, tmp_path):
    """A copy of the demo's audit folder, to damage."""
    folder = tmp_path / "allowed" / "audit"
    shutil.copytree(demo[0].out_dir, folder)
    return folder


def rewrite(folder: Path, **changes) -> None:
    report = json.loads((folder / "report.json").read_text())
    (folder / "report.json").write_text(json.dumps({**report, **changes}))


def test_audit_folders_open_only_under_the_roots_or_where_the_cli_wrote(audit_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITOR_AUDIT_ROOTS", str(tmp_path / "allowed"))
    assert open_audit(audit_copy).report["dataset"] == "demo"
    outside = tmp_path / "elsewhere"
    shutil.copytree(audit_copy, outside)
    with pytest.raises(AuditFolderError, match="outside the folders the app opens"):
        open_audit(outside)
    (tmp_path / "allowed" / "link").symlink_to(outside)  # a link under a root that leaves it
    with pytest.raises(AuditFolderError, match="outside"):
        open_audit(tmp_path / "allowed" / "link")
    remember_audit(outside, "manifest.csv")  # `auditor audit` wrote it
    assert open_audit(outside).folder == outside.resolve()


def test_inconsistent_folders_are_refused_with_a_reason(audit_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITOR_AUDIT_ROOTS", str(tmp_path))
    edits = json.loads((audit_copy / "report.json").read_text())["edits"]  # report.json is the commit point
    rewrite(audit_copy, edits=[*edits, {**edits[0], "row": 9999, "key": "drop:9999"}])
    with pytest.raises(AuditFolderError, match="no finding"):
        open_audit(audit_copy)
    rewrite(audit_copy, edits="not a list of edits")
    with pytest.raises(AuditFolderError, match="edits of .* cannot be read"):
        open_audit(audit_copy)
    rewrite(audit_copy, edits=edits)
    rewrite(audit_copy, schema_version=1)
    with pytest.raises(AuditFolderError, match="schema version 1"):
        open_audit(audit_copy)
    rewrite(audit_copy, schema_version=3, clips=[{"row": "zero"}])
    with pytest.raises(AuditFolderError, match="clip 0 lacks a valid row"):
        open_audit(audit_copy)
    (audit_copy / "report.json").write_text("[]")
    with pytest.raises(AuditFolderError, match="not an dict"):
        open_audit(audit_copy)
    (audit_copy / "decisions.json").write_text('["accepted"]')
    with pytest.raises(AuditFolderError, match="decisions.json"):
        load_decisions(audit_copy)


def test_only_stored_videos_inside_the_dataset_folders_are_served(tmp_path):
    clips = tmp_path / "dataset" / "clips"
    clips.mkdir(parents=True)
    (clips / "a.mp4").write_bytes(b"\0\0\0\x18ftypmp42")
    secret = tmp_path / "secret.mp4"
    secret.write_text(SECRET)
    (clips / "link.mp4").symlink_to(secret)
    videos = DatasetVideos.of(
        {
            "a": Segment(str(clips / "a.mp4"), 0.0, 1.0),
            "link": Segment(str(clips / "link.mp4"), 0.0, 1.0),
            "passwd": Segment("/etc/passwd", 0.0, 1.0),
        }
    )
    assert videos.path("a")[0] == (clips / "a.mp4").resolve()
    with pytest.raises(VideoRefused, match="leads outside"):
        videos.path("link")
    with pytest.raises(VideoRefused, match="not a video file"):
        videos.path("passwd")
    with pytest.raises(VideoRefused, match="not a stored clip"):
        videos.path("made-up")


def test_the_fixed_manifest_comes_only_from_a_vouched_manifest(audit_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITOR_AUDIT_ROOTS", str(tmp_path))
    secret = tmp_path / "secret.csv"
    secret.write_text(f"video,start,end,label\n{SECRET},0,1,x\n")
    rewrite(audit_copy, manifest=str(secret), manifest_format="csv")
    with pytest.raises(AuditFolderError, match="neither the store nor an `auditor audit` run"):
        manifest_download(open_audit(audit_copy), {}, stored_manifest="/data/the/real/manifest.csv")


# --- the app on a crafted folder, in a real browser --------------------------------------------


def crafted_folder(demo, tmp_path: Path) -> tuple[Path, list[Path]]:
    """The demo's audit with every clip's video and the manifest pointing at files outside the dataset."""
    secret_video = tmp_path / "secret.mp4"
    secret_video.write_text(SECRET)
    secret_manifest = tmp_path / "secret_manifest.csv"
    secret_manifest.write_text(f"video,start,end,label,split\n{SECRET},0,1,rabbit,train\n")
    folder = tmp_path / "crafted"
    shutil.copytree(demo[0].out_dir, folder)
    report = json.loads((folder / "report.json").read_text())
    clips = folder_clips(folder).records()
    for i, clip in enumerate(clips):
        clip["video"] = "/etc/passwd" if i % 2 else str(secret_video)
    clips[0]["clip_id"] = "0123456789abcdef0123"  # a clip the store does not hold
    write_table(ClipTable.from_records(clips).table, folder, report["run_id"])
    report["manifest"], report["manifest_format"] = str(secret_manifest), "csv"
    (folder / "report.json").write_text(json.dumps(report))
    (folder / "decisions.json").unlink(missing_ok=True)
    return folder, [secret_video, secret_manifest, Path("/etc/passwd")]


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_a_crafted_audit_folder_serves_no_file_outside_the_dataset(demo, tmp_path, browser):  # noqa: F811
    from tests.test_browser import no_traceback, pick, settle, streamlit_app, visit

    folder, secrets = crafted_folder(demo, tmp_path)
    forbidden = [SECRET.encode(), b"root:x:0:0"]
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    tab = context.new_page()
    served: list[str] = []  # every media URL the page asked for
    tab.on("request", lambda r: served.append(r.url) if "/media/" in r.url else None)
    with streamlit_app(folder, demo[4], tmp_path / "state") as url:
        visit(tab, f"{url}/map", ".js-plotly-plot")
        for clip in folder_clips(folder).records()[:3]:
            pick(tab, "…or pick rows", str(clip["row"]))
        tab.locator("video").first.wait_for(timeout=120_000)
        settle(tab)
        assert "not played: clip 0123456789abcdef0123 is not a stored clip" in tab.inner_text("body")
        players = tab.locator("video").evaluate_all("vs => vs.map(v => v.src)")
        assert len(players) == 2  # the two clips the store holds play their own footage
        visit(tab, f"{url}/findings", 'h1:has-text("Findings")')
        assert "No download" in tab.inner_text("body")
        assert tab.get_by_role("button", name="Download the fixed manifest").count() == 0
        no_traceback(tab)
        for src in players:
            status, body = fetch(src)
            assert status == 200 and body[4:8] == b"ftyp", src  # an mp4 the app cut from a stored clip
            assert not [s for s in forbidden if s in body]
        probes = [f"/media/{p}" for p in ("..%2F..%2Fetc%2Fpasswd", "secret.mp4", "x.mp4")]
        probes += [str(s) for s in secrets] + [f"/app/static/..%2F..%2F{secrets[0].name}", "/etc/passwd"]
        for probe in probes:
            status, body = fetch(url + probe)
            assert not [s for s in forbidden if s in body], probe
            assert 400 <= status < 500 or b"<!doctype html>" in body.lower()[:2000], (probe, status)  # or the app shell
        for media_url in served:
            assert not [s for s in forbidden if s in fetch(media_url)[1]], media_url
    context.close()


# --- the threat model (docs/security.md): read under the data roots, write under the output root ------------------

SHADOW = "root:*:19000:0:99999:7:::  SHADOW-4f1c9a"  # a first line the app must never show


def test_the_app_reads_only_under_the_data_roots(tmp_path, monkeypatch):
    from auditor.access import AccessRefused, data_roots, readable_input

    data, outside = tmp_path / "data", tmp_path / "private"
    for folder in (data, outside):
        folder.mkdir()
    (data / "manifest.csv").write_text("video,label\nclip.mp4,x\n")
    (outside / "shadow.csv").write_text(SHADOW + "\n")
    (data / "id_rsa").write_text(SHADOW)
    (data / "escape.csv").symlink_to(outside / "shadow.csv")
    os.mkfifo(data / "pipe.csv")
    roots = [data.resolve()]
    assert readable_input(data / "manifest.csv", roots) == (data / "manifest.csv").resolve()
    assert readable_input(data, roots) == data.resolve()  # a folder of class folders
    refusals = {}
    for name, path in {
        "outside": outside / "shadow.csv", "missing_outside": outside / "nothing.csv", "folder_outside": outside,
        "etc": Path("/etc/shadow"), "link_out": data / "escape.csv", "fifo": data / "pipe.csv",
        "not_a_manifest": data / "id_rsa", "dotdot": data / ".." / "private" / "shadow.csv",
    }.items():  # fmt: skip
        with pytest.raises(AccessRefused) as refused:
            readable_input(path, roots)
        refusals[name] = str(refused.value).replace(str(path), "PATH")
        assert "SHADOW" not in refusals[name]
    assert refusals["outside"] == refusals["missing_outside"] == refusals["folder_outside"]  # existence not told
    assert "outside the data folders this app reads" in refusals["etc"] and "outside" in refusals["link_out"]
    assert "not a regular file" in refusals["fifo"] and "is not a manifest" in refusals["not_a_manifest"]
    with pytest.raises(AccessRefused, match="reads no data folder yet"):
        readable_input(data / "manifest.csv", [])
    monkeypatch.delenv("AUDITOR_DATA_ROOTS", raising=False)
    assert data_roots() == []
    remember_audit(tmp_path / "audit", data / "manifest.csv")  # by default: the folders `auditor audit` read
    assert data_roots() == [data.resolve()]
    monkeypatch.setenv("AUDITOR_DATA_ROOTS", str(outside))
    assert data_roots() == [outside.resolve()] and data_roots([str(data)]) == [data.resolve()]  # flag > env


def test_the_app_writes_only_under_the_output_root_and_never_into_its_code(tmp_path):
    from auditor.access import CODE, AccessRefused, output_root, writable_folder

    root = output_root(str(tmp_path / "out"))
    assert writable_folder("audit_out", root) == root / "audit_out"
    for name in ("../escape", str(tmp_path / "elsewhere"), str(CODE / "app_pages"), "", "a\0b"):
        with pytest.raises(AccessRefused):
            writable_folder(name, root)
    with pytest.raises(AccessRefused, match="inside the app's own code"):
        output_root(str(CODE / "audits"))
    with pytest.raises(AccessRefused, match="outside the output root"):
        writable_folder(str(CODE / "app_pages"), Path("/"))  # even a root above the code never reaches into it
    assert output_root(None).is_relative_to(Path(os.environ["AUDITOR_STATE_DIR"]).resolve())  # the default


def wait_for(job: Path, seconds: float = 300):
    from auditor.jobs import read_job

    deadline = time.time() + seconds
    while not read_job(job).finished and time.time() < deadline:
        time.sleep(0.5)
    return read_job(job)


def test_a_job_never_echoes_a_file_it_may_not_read(tmp_path):
    from auditor.jobs import JobSpec, start_audit_job

    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.csv").write_text(SHADOW + "\n")  # under the roots, named like a manifest, not one
    (tmp_path / "shadow").write_text(SHADOW + "\n")
    common = {"dataset": "x", "model": "effnet-lite0", "uri": str(tmp_path / "m.db"), "data_roots": [str(data)]}
    outside = start_audit_job(JobSpec(manifest=str(tmp_path / "shadow"), out=str(tmp_path / "o1"), **common))
    inside = start_audit_job(JobSpec(manifest=str(data / "notes.csv"), out=str(tmp_path / "o2"), **common))
    for job, words in ((outside, "outside the data folders this app reads"), (inside, "has no label or video column")):
        status = wait_for(job)
        assert status.state == "failed" and words in status.message, status.message
        assert "SHADOW" not in (job / "status.json").read_text() and "root:*" not in status.message
    assert not (tmp_path / "o1").exists()  # refused before anything is written
    with pytest.raises(ValueError, match="a dataset name is"):
        JobSpec(manifest=str(data / "notes.csv"), out=str(tmp_path / "o3"), **{**common, "dataset": "../x"})


def test_the_token_goes_only_to_the_server_it_was_configured_for(monkeypatch):
    """A listener stands in for a server the operator did not configure: it records what a client sends."""
    import base64
    import socket
    import threading

    from taxonomy_core.store import StoreError, open_store

    token = "root:TOKEN-7d2e"

    def listener() -> tuple[str, bytearray]:
        server, received = socket.create_server(("127.0.0.1", 0)), bytearray()

        def serve() -> None:
            while True:
                connection, _ = server.accept()
                connection.settimeout(3)
                connection.sendall(bytes.fromhex("000000040000000000"))  # an HTTP/2 SETTINGS frame, then listen
                try:
                    while chunk := connection.recv(65536):
                        received.extend(chunk)
                except OSError:
                    pass

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{server.getsockname()[1]}", received

    monkeypatch.setenv("AUDITOR_MILVUS_TOKEN", token)
    monkeypatch.setenv("AUDITOR_MILVUS_URI", "http://127.0.0.1:1")  # the server the token belongs to
    sent = base64.b64encode(token.encode())
    explicit_uri, explicit = listener()
    with pytest.raises(StoreError):
        open_store(explicit_uri, token)  # the operator passed --token for this URI: sent (the listener sees it)
    assert sent in explicit
    other_uri, other = listener()
    with pytest.raises(StoreError):
        open_store(other_uri)  # any other URI: the configured token stays home
    assert other and sent not in other and b"TOKEN-7d2e" not in other


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_app_refuses_paths_outside_its_roots_and_shows_user_text_literally(demo, tmp_path, browser, monkeypatch):  # noqa: F811
    from auditor.access import CODE
    from tests.test_browser import settle, streamlit_app, type_into, visit

    data, private = tmp_path / "data", tmp_path / "private"
    data.mkdir()
    private.mkdir()
    (private / "shadow.csv").write_text(SHADOW + "\n")
    (data / "m.csv").write_text("video,start,end,label\nclip.mp4,0,1,x\n")
    hostile = "root:x:0 ![x](http://203.0.113.9/p.png) **bold** :material/home: $x^2$"
    folder = tmp_path / "allowed" / "audit"
    shutil.copytree(demo[0].out_dir, folder)
    rewrite(folder, dataset=hostile)
    monkeypatch.setenv("AUDITOR_DATA_ROOTS", str(data))
    monkeypatch.setenv("AUDITOR_OUTPUT_ROOT", str(tmp_path / "out"))
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    outside: list[str] = []
    tab.on(
        "request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else outside.append(r.url)
    )
    with streamlit_app(folder, demo[4], tmp_path / "state", roots=tmp_path / "allowed") as url:
        visit(tab, url, "h1")
        body = tab.inner_text("body")
        title = tab.locator("h1").first.inner_text()
        assert title == f"Audit of {hostile}" and "❌" not in body, title  # every character as written
        assert tab.locator('img[src*="203.0.113.9"]').count() == 0 and outside == []
        assert tab.get_by_role("textbox", name="Milvus URI").count() == 0  # the operator's store, not the page's
        visit(tab, f"{url}/run_audit", 'h1:has-text("Run an audit")')
        type_into(tab, "Dataset name", "probe")
        for manifest, out, words in [
            (str(private / "shadow.csv"), "o", "is outside the data folders this app reads"),
            (str(private), "o", "is outside the data folders this app reads"),
            ("/etc/shadow", "o", "is outside the data folders this app reads"),
            (str(data / "m.csv"), str(CODE / "app_pages"), "is outside the output root"),
            (str(data / "m.csv"), "../../escape", "is outside the output root"),
        ]:
            type_into(tab, "Manifest", manifest)
            type_into(tab, "Output folder", out)
            tab.get_by_role("button", name="Run the audit").click()
            settle(tab)
            alert = tab.locator('[data-testid="stAlert"]').last.inner_text()
            assert words in alert and "SHADOW" not in tab.inner_text("body"), alert
        assert not (CODE / "app_pages" / "report.json").exists() and not list((tmp_path / "state").glob("jobs/*"))
    context.close()
