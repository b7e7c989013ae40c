"""The server tier: index, audit and the app, all through `http://127.0.0.1:PORT` of a real `milvus-lite server`
(conftest's `milvus_server`), with a job writing while the app queries. Reads ask for Strong consistency: a
server defaults to Bounded, where a row written a moment ago can be missing from a query."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from auditor.audit import run_audit
from auditor.config import AuditConfig
from auditor.context import AuditContext
from indexer.pipeline import IndexConfig
from taxonomy_core.store import open_store

ROOT = Path(__file__).parents[1]
APP = str(ROOT / "app.py")

# A job that writes synthetic clips through the project's own write path until told to stop (the file `stop`),
# and checks after every write that a read made right after it sees it (Strong consistency): exits 3 at the first
# write a read misses; prints how many clips it wrote.
WRITER = textwrap.dedent(
    """
    import os
    import sys
    sys.path.insert(0, {bench!r})
    from synthetic import StoreShape, synthetic_dataset, SyntheticRows, synthetic_layout
    import numpy as np
    from taxonomy_core.store import open_store

    store = open_store({uri!r})
    shape = StoreShape(dim=64, text_dim=16)
    layout = synthetic_layout(shape, dataset="job")
    store.ensure(layout)
    rows = SyntheticRows(synthetic_dataset({n}, dim=64, classes=5), shape, np.random.default_rng(0))
    print("writing", flush=True)
    written = 0
    for start in range(0, rows.n, 16):
        if os.path.exists({stop!r}):
            break
        clips, timeline, crops = rows.batch(np.arange(start, min(rows.n, start + 16)))
        store.write_clips(layout, clips, timeline, crops)
        if store.count(layout) != min(rows.n, start + 16) or len(store.companions(
                layout, "crops", [c["clip_id"] for c in clips])) != len(clips):
            sys.exit(3)
        written = min(rows.n, start + 16)
    print(written, flush=True)
    store.close()
    """
)


@pytest.fixture(scope="module")
def served_audit(milvus_server, demo, effnet, tmp_path_factory):
    """The demo taxonomy indexed and audited through the server (its own dataset name)."""
    _, planted, manifest, _, _ = demo
    out = tmp_path_factory.mktemp("server-audit")
    outcome = run_audit(
        manifest, IndexConfig(dataset="served", model="effnet-lite0", uri=milvus_server), AuditConfig(), out,
        embedder=effnet,
    )  # fmt: skip
    return outcome, planted


def test_index_and_audit_through_the_server(served_audit, milvus_server):
    outcome, planted = served_audit
    assert outcome.report["uri"] == milvus_server and len(outcome.index.failed) == 2  # the missing file, bad bounds
    accused = {kind: {r for f in outcome.report["findings"] if f["kind"] == kind for r in f["rows"]}
               for kind in ("likely_mislabel", "split_leak", "temporal_looseness", "spatial_looseness")}  # fmt: skip
    assert planted.mislabel in accused["likely_mislabel"] and planted.leak_test in accused["split_leak"]
    assert planted.loose_in_time in accused["temporal_looseness"]
    assert planted.loose_in_space in accused["spatial_looseness"]
    store = open_store(milvus_server)
    layout = store.layout("served")
    assert layout.shards == 1  # a server pages its own segments: one collection per kind
    graph = AuditContext.from_store(store, layout).neighbour_graph
    assert graph.method == "milvus" and graph.recall >= 0.95  # neighbours from the server's own index


def test_the_app_queries_while_a_job_writes(served_audit, milvus_server, monkeypatch, tmp_path):
    outcome, _ = served_audit
    stop = tmp_path / "stop"
    writer = WRITER.format(bench=str(ROOT / "bench"), uri=milvus_server, n=20_000, stop=str(stop))
    job = subprocess.Popen([sys.executable, "-c", writer], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert job.stdout.readline().strip() == "writing"
        monkeypatch.setenv("AUDITOR_AUDIT_DIR", str(outcome.out_dir))
        monkeypatch.setenv("AUDITOR_MILVUS_URI", milvus_server)
        at = AppTest.from_file(APP, default_timeout=180)
        at.run()
        assert not at.exception, at.exception
        for path in ("app_pages/search.py", "app_pages/class_page.py", "app_pages/map.py"):
            at.switch_page(str(ROOT / path)).run()
            assert not at.exception, (path, at.exception)
        at.switch_page(str(ROOT / "app_pages/search.py")).run()
        at.selectbox(key="search_label").set_value("rabbit").run()
        assert not at.exception and at.subheader[0].value.startswith("rabbit:")
        assert job.poll() is None, "the job ended before the app's queries"
    finally:
        stop.touch()
        returncode = job.wait(timeout=600)
    assert returncode == 0, "a read right after a write missed it (not Strong) or the job failed"
    written = int(job.stdout.read().split()[-1])
    store = open_store(milvus_server)
    job_layout = store.layout("job")
    assert written >= 16 and store.count(job_layout) == written and store.count(job_layout, "timeline") == written
    store.drop(job_layout)


def test_server_reads_see_each_write_at_once(milvus_server):
    store = open_store(milvus_server)
    sys.path.insert(0, str(ROOT / "bench"))
    from synthetic import StoreShape, synthetic_dataset, write_synthetic_store

    made = write_synthetic_store(store, synthetic_dataset(40, dim=32, classes=2), StoreShape(dim=32, text_dim=8))
    matrix = store.clip_matrix(made.layout)  # no wait between the writes and these reads
    assert len(matrix.table) == 40 and matrix.vectors.shape == (40, 32)
    assert len(store.companions(made.layout, "timeline", matrix.table["clip_id"].tolist())) == 40
    store.drop(made.layout)
    store.close()
