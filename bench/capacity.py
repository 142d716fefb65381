"""The shared services' capacity, for the paper estimate of N hosts (BENCHMARKS.md, issue 16).

    virtualenvs/autotag/bin/python bench/capacity.py --entries 20000 --results 5000

Starts a throw-away Redis and Postgres (temp run directory, free port offset) and measures
what every host of a cluster shares:

  Redis stream   entries/s through the photo stream's whole cycle as the topology drives it:
                 enqueue one by one (as intake does), read in batches of 8 (as the spout
                 does), acknowledge in batches
  DB writer      results/s that one writer stores with ``write_results`` in batches of
                 ``db_batch_size`` (a result: its photos row, 10 tag rows, one 1280-d vector)

Single client each, as in the topology (one spout, one DB writer).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.similarity import free_offset  # noqa: E402


def redis_entries_per_s(settings, n: int) -> float:
    from autotag.storage.photo_stream import PhotoStream

    stream = PhotoStream(settings)
    stream.ensure_group()
    ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]
    t0 = time.perf_counter()
    for pid in ids:
        stream.enqueue(pid, "bench.jpg")
    done = 0
    while done < n:
        entries = stream.read("bench", count=8, block_ms=100)
        if entries:
            stream.ack([e.entry_id for e in entries])
            done += len(entries)
    return n / (time.perf_counter() - t0)


def db_results_per_s(settings, n: int, dim: int = 1280) -> float:
    from autotag.pipeline.contract import PhotoResult
    from autotag.storage import database
    from autotag.storage.writer import write_results

    rng = np.random.default_rng(3)
    results = [
        PhotoResult(
            hashlib.sha256(f"r{i}".encode()).hexdigest(),
            "tagged",
            model_version="bench@1",
            feature_set="cnn",
            tags=[(f"tag{j}", float(rng.random())) for j in range(10)],
            vector=rng.standard_normal(dim).astype(np.float32),
            width=640,
            height=480,
        )
        for i in range(n)
    ]
    batch = settings.db_batch_size
    with database.connect(settings) as conn:
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            write_results(conn, results[start : start + batch])
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=20000, help="Redis stream entries.")
    ap.add_argument("--results", type=int, default=5000, help="Results the DB writer stores.")
    args = ap.parse_args()

    from autotag.config import load_settings
    from autotag.ops.daemons.postgres import PostgresDaemon
    from autotag.ops.daemons.redis import RedisDaemon

    run_dir = Path(tempfile.mkdtemp(prefix="autotag-bench-cap-"))
    run_dir.chmod(0o755)
    env = {
        **os.environ,
        "AUTOTAG_RUN_DIR": str(run_dir),
        "AUTOTAG_PORT_OFFSET": str(free_offset(31000)),
    }
    settings = load_settings(env)
    daemons = [RedisDaemon(settings), PostgresDaemon(settings)]
    try:
        for d in daemons:
            d.start()
        rate = redis_entries_per_s(settings, args.entries)
        print(f"Redis stream: {rate:10,.0f} entries/s (enqueue + read by 8 + ack), {args.entries}")
        rate = db_results_per_s(settings, args.results)
        print(
            f"DB writer:    {rate:10,.0f} results/s in batches of {settings.db_batch_size} "
            f"(each: 1 photos row, 10 tag rows, 1 vector of 1280), {args.results}"
        )
    finally:
        for d in reversed(daemons):
            d.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
