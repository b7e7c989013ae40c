"""The audit's side files (the clip table, the search copies) on the audited demo: they hold what report.json's
clips held, belong to the run report.json names, and a folder that mixes runs is refused or reported."""

from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app_pages.shared import ClipIndex
from auditor import cliptable, searchcopies, service
from auditor.cliptable import ClipTable, folder_clips, table_name, write_table
from auditor.outputs import interrupted
from auditor.searchcopies import SearchCopies, copies_name, write_copies
from auditor.thumbfile import ThumbnailFile, thumbs_name, write_thumbnails
from auditor.workspace import AuditFolderError, open_audit
from taxonomy_core.store.codec import quantize


@pytest.fixture
def audit_copy(demo, tmp_path, monkeypatch):
    folder = tmp_path / "audit"
    shutil.copytree(demo[0].out_dir, folder)
    monkeypatch.setenv("AUDITOR_AUDIT_ROOTS", str(tmp_path))
    return folder


def report_of(folder):
    return json.loads((folder / "report.json").read_text())


def test_the_clip_table_holds_every_clip_as_the_report_did(demo):
    outcome = demo[0]
    report = report_of(outcome.out_dir)
    clips = folder_clips(outcome.out_dir)
    assert "clips" not in report and len(clips) == report["clip_count"] == outcome.index.manifest.row_count - len(
        outcome.index.failed
    )
    records = clips.records()
    assert records == outcome.clips.records()  # what the audit held in memory, read back from the file
    accused: dict[int, set[str]] = {}
    for f in report["findings"]:
        for row in f["rows"]:
            accused.setdefault(row, set()).add(f["kind"])
    for clip in records:
        assert clip["findings"] == sorted(accused.get(clip["row"], ()))
        assert len(clip["umap"]) == 2 and isinstance(clip["cluster"], int)
    timed = [c for c in records if c.get("timeline")]
    assert timed and all(len(c["timeline"]["times"]) == len(c["timeline"]["similarity"]) for c in timed)
    loose = next(c for c in records if c["row"] == demo[1].loose_in_time)
    assert loose["core"][1] - loose["core"][0] < loose["end"] - loose["start"]  # its trim, as the check found it
    x, y = clips.umap()
    assert np.allclose(np.stack([x, y], 1), [c["umap"] for c in records])


def test_a_side_file_of_another_run_is_refused_and_a_leftover_is_reported(audit_copy):
    report = report_of(audit_copy)
    own = audit_copy / table_name(report["run_id"])
    assert interrupted(audit_copy) is None
    table = pq.read_table(own)
    write_table(table, audit_copy, "20991231T000000Z-killed00")  # a later run killed before its report.json
    write_copies(audit_copy, "20991231T000000Z-killed00", np.eye(len(table), 4, dtype=np.float32))
    write_thumbnails(HeldThumbnails({}), Shards(), audit_copy, "20991231T000000Z-killed00", ["c0", "c1"])
    assert len(open_audit(audit_copy).clips) == len(table)  # report.json's run reads its own files
    message = interrupted(audit_copy)
    assert "clips.20991231T000000Z-killed00.parquet" in message and "vectors.20991231T000000Z-killed00.npy" in message
    assert "thumbs.20991231T000000Z-killed00.bin" in message
    (audit_copy / "clips.20991231T000000Z-killed00.parquet").replace(own)  # a file renamed by hand
    with pytest.raises(AuditFolderError, match="comes from run 20991231T000000Z-killed00, not from run"):
        open_audit(audit_copy)
    own.unlink()
    with pytest.raises(AuditFolderError, match=f"holds no {own.name}"):
        open_audit(audit_copy)


class HeldThumbnails:
    """A store that holds some thumbnails (base64 JPEG, as Milvus does) and records each read."""

    def __init__(self, held: dict[str, str]):
        self.held, self.reads = held, []

    def thumbnails(self, layout, clip_ids):
        self.reads.append(list(clip_ids))
        return {c: self.held[c] for c in clip_ids if c in self.held}


class Shards:
    def shard_of(self, clip_id: str) -> int:
        return int(clip_id[1:]) % 3


def test_the_thumbnail_file_holds_the_stores_thumbnails(demo):
    outcome, uri = demo[0], demo[4]
    audit = open_audit(outcome.out_dir, (outcome.out_dir,))
    assert audit.report["thumbnails"] == thumbs_name(audit.report["run_id"])
    ids = list(audit.clips.column("clip_id"))
    stored = service.thumbnails(uri, audit.report["dataset"], audit.report["model"], ids)
    held = audit.thumbnail_file().get(range(len(ids)))
    assert len(held) == len(ids) and all(held[i] for i in held)
    assert {ids[i]: jpeg for i, jpeg in held.items()} == stored  # byte for byte, in the clip table's order


def test_the_thumbnail_file_is_written_shard_by_shard_and_says_what_the_store_lacked(tmp_path):
    ids = [f"c{i}" for i in range(10)]
    jpegs = {c: b"\xff\xd8" + c.encode() * (i + 1) for i, c in enumerate(ids)}
    store = HeldThumbnails({c: base64.b64encode(jpegs[c]).decode() for c in ids[:8]} | {"c8": ""})
    path = write_thumbnails(store, Shards(), tmp_path, "r1", ids)
    assert sorted(map(sorted, store.reads)) == [sorted(c for c in ids if Shards().shard_of(c) == s) for s in range(3)]
    got = ThumbnailFile(path, "r1", len(ids)).get([9, 3, 8, 0])
    assert got == {3: jpegs["c3"], 8: None, 0: jpegs["c0"]}  # c8: no thumbnail; c9: not returned, ask the store
    with pytest.raises(Exception, match="holds 10 thumbnails of run 'r1', the audit 9 clips"):
        ThumbnailFile(path, "r1", 9)
    with pytest.raises(Exception, match="of run 'r1', the audit 10 clips of run 'r2'"):
        ThumbnailFile(path, "r2", 10)
    path.write_bytes(b"not thumbnails")
    with pytest.raises(Exception, match="not an audit's thumbnail file"):
        ThumbnailFile(path, "r1", 10)


def test_a_thumbnail_file_of_another_run_is_refused(audit_copy):
    report = report_of(audit_copy)
    own = audit_copy / thumbs_name(report["run_id"])
    ids = [f"c{i}" for i in range(report["clip_count"])]  # as many clips, of another run
    write_thumbnails(HeldThumbnails({}), Shards(), audit_copy, "20991231T000000Z-killed00", ids)
    (audit_copy / thumbs_name("20991231T000000Z-killed00")).replace(own)  # renamed by hand
    with pytest.raises(AuditFolderError, match="were mixed"):
        open_audit(audit_copy).thumbnail_file()
    outside = audit_copy.parent / "elsewhere.bin"
    own.replace(outside)
    own.symlink_to(outside)  # a link leading out of the audit folder is not followed
    with pytest.raises(AuditFolderError, match="links outside its folder"):
        open_audit(audit_copy).thumbnail_file()
    own.unlink()
    assert open_audit(audit_copy).thumbnail_file() is None  # an audit without one: the app asks the store


def test_a_damaged_clip_table_is_refused_with_a_reason(audit_copy):
    report = report_of(audit_copy)
    own = audit_copy / table_name(report["run_id"])
    table = pq.read_table(own)
    write_table(table.slice(1), audit_copy, report["run_id"])
    with pytest.raises(AuditFolderError, match="report.json counts"):
        open_audit(audit_copy)
    umap = pa.array([["x", "y"]] * len(table))
    write_table(table.set_column(table.schema.get_field_index("umap"), "umap", umap), audit_copy, report["run_id"])
    with pytest.raises(AuditFolderError, match="umap hold the wrong type"):
        open_audit(audit_copy)
    write_table(table.drop_columns(["label"]), audit_copy, report["run_id"])
    with pytest.raises(AuditFolderError, match="lacks the column"):
        open_audit(audit_copy)
    own.write_bytes(b"not parquet")
    with pytest.raises(AuditFolderError, match="cannot be read"):
        open_audit(audit_copy)


def test_a_column_is_read_when_asked_for_and_a_hand_changed_one_is_still_refused_on_opening(audit_copy, demo):
    report = report_of(audit_copy)
    own = audit_copy / table_name(report["run_id"])
    whole = pq.read_table(own)
    clips = ClipTable.read(own, report["run_id"])
    assert len(clips) == whole.num_rows and clips.columns == whole.column_names
    assert clips._loaded == {}  # opening reads the schema and the run id, no column
    assert clips.column("label").tolist() == whole.column("label").to_pylist()
    assert set(clips._loaded) == {"label"}
    ids = whole.column("clip_id").to_pylist()
    asked = [ids[3], "not-a-clip", ids[0], ids[3]]
    assert clips.positions_of(asked) == {ids[3]: 3, ids[0]: 0} and "by_id" not in clips.__dict__  # one pass, no dict
    assert clips.by_id and clips.positions_of(asked) == {ids[3]: 3, ids[0]: 0}  # the same from the dict once made
    assert clips.records([0, 2]) == [dict(r) for r in ClipTable(whole).records([0, 2])]  # the rest when needed
    assert clips.table.equals(ClipTable(whole).table) and clips.table.schema.metadata == whole.schema.metadata
    rows = pa.array([f"r{i}" for i in range(whole.num_rows)])  # not a number: refused before any page reads it
    write_table(whole.set_column(whole.schema.get_field_index("row"), "row", rows), audit_copy, report["run_id"])
    with pytest.raises(AuditFolderError, match="column row holds string, not int64"):
        open_audit(audit_copy)


def test_an_audit_folder_of_schema_3_still_opens(audit_copy, demo):
    """An audit written before the clip table: its clips inside report.json, no search copies, no thumbnails."""
    report = report_of(audit_copy)
    records = demo[0].clips.records()
    for name in (table_name(report["run_id"]), copies_name(report["run_id"]), thumbs_name(report["run_id"])):
        (audit_copy / name).unlink()
    for key in ("clip_count", "clip_table", "search_copies", "thumbnails"):
        report.pop(key)
    (audit_copy / "report.json").write_text(json.dumps({**report, "schema_version": 3, "clips": records}))
    audit = open_audit(audit_copy)
    assert audit.clips.records() == records and audit.search_copies() is None and audit.thumbnail_file() is None
    assert folder_clips(audit_copy).records() == records


def test_the_search_copies_are_the_audit_vectors_on_8_bits(demo):
    outcome = demo[0]
    copies = open_audit(outcome.out_dir, (outcome.out_dir,)).search_copies()
    assert copies is not None and copies.has_text and len(copies.ids) == len(outcome.clips)
    assert list(copies.ids) == list(outcome.clips.column("clip_id"))
    ids = list(copies.ids)
    assert copies.positions_of([ids[4], ids[1], ids[4]]) == [4, 1, 4]
    with pytest.raises(KeyError, match="1 clip"):
        copies.positions_of([ids[0], "not-a-clip"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    codes, scale = quantize(x)
    assert np.abs(codes * scale[:, None] - x).max() <= scale.max() / 2 + 1e-7


def test_searching_the_copies_finds_what_an_exact_search_finds(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 96)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"c{i}" for i in range(len(x))]
    write_copies(tmp_path, "r1", x)
    copies = SearchCopies(tmp_path / copies_name("r1"), ids)
    queries = x[:5] + 0.05 * rng.normal(size=(5, 96)).astype(np.float32)
    found = copies.search(queries, 20)
    exact = queries @ x.T
    for q, hits in enumerate(found):
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
        assert all(abs(s - exact[q, int(c[1:])]) < 0.01 for c, s in hits)
        kth = np.sort(exact[q])[-20]
        clear = {ids[i] for i in np.flatnonzero(exact[q] > kth + 0.01)}  # above the k-th by more than int8 moves
        assert clear <= {c for c, _ in hits}
    monkeypatch.setattr(searchcopies, "BLOCK", 700)  # blocks over both scanning threads, chunks cut inside each
    monkeypatch.setattr(searchcopies, "CHUNK", 300)
    again = copies.search(queries, 20)
    assert [[c for c, _ in hits] for hits in again] == [[c for c, _ in hits] for hits in found]
    assert np.allclose([[s for _, s in hits] for hits in again], [[s for _, s in hits] for hits in found], atol=1e-6)
    with pytest.raises(Exception, match="holds 3000 clips, the audit 2999"):
        SearchCopies(tmp_path / copies_name("r1"), ids[1:])
    assert ClipTable.from_records([]).records() == []


def test_a_list_column_of_one_length_reads_one_object_a_clip():
    """Every clip's findings empty (an audit that ran one check) is a list column of one length: still 1-D, or the
    HTML map's frame could not be built (it failed so in the guidance tests)."""
    identity = {"row": [0, 1, 2], "clip_id": ["a", "b", "c"], "label": ["x"] * 3, "split": ["train"] * 3,
                "video": ["v.mp4"] * 3, "start": [0.0] * 3, "end": [1.0] * 3}  # fmt: skip
    table = pa.table({**identity, "findings": [[], [], []], "box": [[1, 2]] * 3})
    clips = ClipTable(table)
    for name in ("findings", "box"):
        column = clips.column(name)
        assert column.shape == (3,) and column.dtype == object and list(column[0]) == table[name][0].as_py()
    assert clips.frame(["row", "findings"]).shape == (3, 2)


def test_packed_clip_fields_read_back_as_recorded_and_fill_the_table_in_context_order():
    """A check's per-clip dicts packed as columns give back each clip's dict (a field a clip did not record stays
    absent, NaN reads as None as report.json writes it, mixed kinds kept); the table puts each field at its clip's
    position, a later check's value over an earlier one's only for the clips it recorded."""
    from auditor.checks.base import CheckResult, ClipFields
    from auditor.cliptable import _recorded

    recorded = {
        "b": {"gain": 0.5, "box": [1, 2, 3, 4], "odd": 1.0},
        "a": {"gain": float("nan"), "box": [0, 0, 1, 1], "odd": "text"},
        "c": {"gain": 0.25, "note": {"x": [0.1, 0.2]}},
        "ref": {"gain": 9.0},  # a reference clip: not audited
    }
    fields = ClipFields.pack(recorded)
    assert len(fields) == 4 and list(fields) == ["b", "a", "c", "ref"]
    assert fields["b"] == recorded["b"] and fields["c"] == recorded["c"]
    assert fields["a"] == {"gain": None, "box": [0, 0, 1, 1], "odd": "text"}
    assert isinstance(fields.columns["gain"], pa.Array) and isinstance(fields.columns["odd"], list)
    assert ClipFields.pack(fields) is fields

    later = CheckResult("later", clips=ClipFields.pack({"c": {"gain": 0.75}}))
    out = _recorded({"a": 0, "b": 1, "c": 2, "d": 3}, [CheckResult("first", clips=fields), later], 4)
    assert out["gain"].to_pylist() == [None, 0.5, 0.75, None]
    assert out["box"].to_pylist() == [[0, 0, 1, 1], [1, 2, 3, 4], None, None]
    assert out["odd"].to_pylist() == ['"text"', "1.0", None, None]  # mixed kinds: as JSON text
    assert out["note"].to_pylist() == [None, None, {"x": [0.1, 0.2]}, None]


def test_the_apps_clip_index_finds_rows_classes_and_fields_without_a_dict_of_every_clip():
    rng = np.random.default_rng(3)
    rows = rng.permutation(np.arange(0, 900, 3))  # rows with gaps, in no order
    labels = rng.choice(["b", "a", "c"], len(rows)).astype(object)
    labels[5] = None
    records = [
        {"row": int(r), "clip_id": f"id{r}", "label": lab, "split": None, "video": f"v{r}.mp4", "start": 0.0,
         "end": 1.0, "knn_agreement": None if r % 4 == 0 else r / 1000, "findings": []}
        for r, lab in zip(rows, labels)
    ]  # fmt: skip
    table = ClipTable.from_records(records)
    index = ClipIndex(table)
    by_row = {r["row"]: i for i, r in enumerate(records)}
    assert all(index.by_row[r]["clip_id"] == f"id{r}" for r in by_row) and len(index.by_row) == len(records)
    assert 4 not in index.by_row and "3" not in index.by_row and 3.5 not in index.by_row and 3 in index.by_row
    with pytest.raises(KeyError):
        index.by_row[901]
    ask = [int(rows[0]), 4, int(rows[5]), 10_000, -3, int(rows[7])]
    assert index.labels_of(ask) == [labels[0], None, None, None, None, labels[7]]
    expected = (  # the classes as pandas grouped them before: sorted, each class's positions by row
        pd.Series(np.argsort(rows, kind="stable")).groupby(labels[np.argsort(rows, kind="stable")], sort=True)
    )
    assert list(index.members.positions) == ["a", "b", "c"]
    for label, group in expected:
        assert index.members.positions[label].tolist() == group.tolist()
    ids = ["id3", "nope", f"id{rows[1]}", "id3"]
    assert index.by_id.many(ids) == {c: records[by_row[int(c[2:])]] for c in ["id3", f"id{rows[1]}"]}
    assert index.by_id.field("knn_agreement", ids) == {
        c: records[by_row[int(c[2:])]]["knn_agreement"] for c in ["id3", f"id{rows[1]}"]
    }
    assert index.by_id.field("no_such_field", ["id3"]) == {"id3": None}
    assert "by_id" not in table.__dict__  # found by one pass over the ids, no dict of every one made


def test_a_few_records_are_read_from_their_row_groups_as_the_whole_table_holds_them(demo, tmp_path, monkeypatch):
    whole = folder_clips(demo[0].out_dir)
    monkeypatch.setattr(cliptable, "ROW_GROUP", 3)  # the demo's clips in groups of 3
    write_table(whole.table, tmp_path, "r1")
    table = ClipTable.read(tmp_path / table_name("r1"), "r1")
    n = len(whole)
    assert n >= 33 and table._file.num_row_groups == -(-n // 3)
    asked = [n - 1, 0, 8, 6, n - 1, 2, 7]  # unordered, repeated, on group edges: 3 groups of 11 or more
    assert table.records(asked) == whole.records(asked)
    assert table._loaded == {}  # no column read whole
    spread = list(range(0, n, 2))  # most groups: the whole table read once, and kept
    assert table.records(spread) == whole.records(spread) and len(table._loaded) == len(table.columns)
    assert table.records(asked) == whole.records(asked)


def test_the_maps_thumbnails_by_position_are_the_files_and_else_the_stores(audit_copy, demo, monkeypatch):
    from app_pages import shared

    monkeypatch.setenv("AUDITOR_MILVUS_URI", demo[4])
    audit = open_audit(audit_copy)
    monkeypatch.setattr(shared, "current_audit", lambda stop=True: audit)
    monkeypatch.setattr(shared.st, "session_state", {"uri": demo[4]})
    ids = audit.clips.column("clip_id").tolist()
    asked = [5, 0, len(ids) - 1]
    from_file = shared.thumbnails_at(audit.report, asked)
    by_id = shared.thumbnails(audit.report, [ids[p] for p in asked])
    assert from_file and from_file == {p: by_id[ids[p]] for p in asked if ids[p] in by_id}
    (audit_copy / thumbs_name(audit.report["run_id"])).unlink()  # an audit without the file: the store answers
    older = open_audit(audit_copy)
    monkeypatch.setattr(shared, "current_audit", lambda stop=True: older)
    assert older.thumbnail_file() is None and shared.thumbnails_at(older.report, asked) == from_file
