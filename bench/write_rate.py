"""The indexer's write rate into Milvus: a Lite file and a `milvus-lite server`, by clips per write_clips call.

    python bench/write_rate.py [--clips 2000] [--batches 32 256]

Rows are the synthetic store's (the offline model's shapes: 1280-d + 384-d, 3 timeline steps and 10 crops a
clip, 160-px thumbnails that the store re-encodes to its budget) handed to `Store.write_clips` as the indexer
hands them (float lists). Only the time inside write_clips counts: packing, thumbnails and Milvus.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from synthetic import StoreShape, SyntheticRows, synthetic_dataset, synthetic_layout  # noqa: E402

from taxonomy_core.store import open_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="write_rate_"))
    shape = StoreShape()
    rows = SyntheticRows(synthetic_dataset(args.clips, dim=shape.dim), shape, np.random.default_rng(0))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    server, uri = start_server(folder / "server")
    try:
        for name, target in (("Lite file", str(folder / "lite.db")), ("milvus-lite server", uri)):
            for batch in args.batches:
                seconds = write_all(target, rows, shape, batch, f"b{batch}")
                rows_per_clip = 1 + shape.steps + shape.crops
                print(f"{name:20s} {batch:4d} clips/call: {args.clips / seconds:6.0f} clips/s, "
                      f"{args.clips * rows_per_clip / seconds:7.0f} input rows/s", flush=True)  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def write_all(uri: str, rows: SyntheticRows, shape: StoreShape, batch: int, dataset: str) -> float:
    store = open_store(uri)
    layout = synthetic_layout(shape, dataset=dataset)
    store.ensure(layout)
    seconds = 0.0
    for start in range(0, rows.n, batch):
        clips, timeline, crops = rows.batch(np.arange(start, min(rows.n, start + batch)))
        t0 = time.perf_counter()
        store.write_clips(layout, clips, timeline, crops)
        seconds += time.perf_counter() - t0
    assert store.count(layout) == rows.n
    store.close()
    return seconds


def start_server(data: Path) -> tuple[subprocess.Popen, str]:
    """`milvus-lite server` on a free loopback port (as tests/conftest.py starts it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    main = "import sys; from milvus_lite.cmdline import main; sys.exit(main())"
    command = [sys.executable, "-c", main, "server", "--data-dir", str(data), "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("milvus-lite server did not start")


if __name__ == "__main__":
    main()
