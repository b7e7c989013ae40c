"""The app serves only the dataset's own videos, opens audit folders only under its roots, trusts no report's paths.

A crafted audit folder (its report naming /etc/passwd and a secret file as clip videos and as the manifest)
must not make the app serve either: videos come from the store's rows, inside the dataset's folders, and
the fixed manifest only from a manifest the store or the CLI vouches for.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

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
    for i, clip in enumerate(report["clips"]):
        clip["video"] = "/etc/passwd" if i % 2 else str(secret_video)
    report["clips"][0]["clip_id"] = "0123456789abcdef0123"  # a clip the store does not hold
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
    report = json.loads((folder / "report.json").read_text())
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    tab = context.new_page()
    served: list[str] = []  # every media URL the page asked for
    tab.on("request", lambda r: served.append(r.url) if "/media/" in r.url else None)
    with streamlit_app(folder, demo[4], tmp_path / "state") as url:
        visit(tab, f"{url}/map", ".js-plotly-plot")
        for clip in report["clips"][:3]:
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
