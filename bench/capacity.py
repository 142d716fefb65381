"""The figures for the paper estimate of N hosts (BENCHMARKS.md, issue 16), and the estimate.

    virtualenvs/autotag/bin/python bench/capacity.py --entries 20000 --results 5000 --photos 200

Starts a throw-away Redis, Postgres and blob service (temp run directory, free port offset,
127.0.0.1) and measures what grows with the hosts and what every host shares:

  tagging        photos/s of one tagging process (= one core: the bolt runs one thread)
                 reading each photo over HTTP from the blob service, as a worker on another
                 host does: read, sha256 check, decode, features, classifiers
  blob service   MB/s that --readers processes pull from it at once (the intake host's side)
  Redis stream   entries/s through the photo stream's whole cycle as the topology drives it:
                 enqueue one by one (as intake does), read in batches of 8 (as the spout
                 does), acknowledge in batches; one entry per photo
  DB writer      results/s (and rows/s) that one writer stores with ``write_results`` in
                 batches of ``db_batch_size`` (a result: its photos row, 10 tag rows, a vector)

Then, for hosts of --cores-per-host cores (one tagging process per core) and a --link-mbs
network link into the intake host, it prints how many hosts each shared part carries before it
saturates, and which one saturates first. Single client each for Redis and the DB writer, as in
the topology (one spout, one DB writer). Only meaningful on an idle machine.
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
from bench.blob_store import _reader_process, _tag_all  # noqa: E402
from bench.similarity import free_offset  # noqa: E402

ROWS_PER_RESULT = 1 + 10 + 1  # its photos row, 10 tag rows, one vector row


def redis_entries_per_s(settings, n: int) -> float:
    from autotag.storage.item_stream import ItemStream

    stream = ItemStream(settings.services, settings.queue)
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
    from autotag.contract import PhotoResult
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
    batch = settings.writer.db_batch_size
    with database.connect(settings.services) as conn:
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            write_results(conn, results[start : start + batch])
        return n / (time.perf_counter() - t0)


def blob_and_tagging(settings, photos: int, long_side: int, readers: int) -> dict[str, float]:
    """Photos/s of one tagging process reading from the blob service, the service's MB/s with
    ``readers`` readers at once, and the mean photo size (MB)."""
    import multiprocessing as mp

    from autotag.learning import samples
    from autotag.ops.daemons.blob_service import BlobServiceDaemon
    from autotag.pipeline.tag_step import load_tagger
    from autotag.storage import credentials
    from autotag.storage.blobs import BlobStore
    from autotag.storage.http_blobs import HttpBlobStore
    from autotag.vision.bundle import set_active
    from autotag.vision.features import onnx_model_path
    from autotag.vision.imagenet import build_default_bundle

    store = BlobStore(settings.blob_dir)
    paths = samples.make_distinct_photos(photos, settings.run_dir / "photos", long_side=long_side)
    ids = [store.put_file(p)[0] for p in paths]
    size_mb = sum(len(store.read(i)) for i in ids) / 1e6 / len(ids)
    daemon = BlobServiceDaemon(settings)
    daemon.start()
    try:
        url = f"http://{settings.services.listen_host}:{daemon.port}"
        token = credentials.read(settings.run_dir, credentials.BLOB)
        out: mp.Queue = mp.Queue()
        procs = [
            mp.Process(target=_reader_process, args=(url, token, ids, out)) for _ in range(readers)
        ]
        for proc in procs:
            proc.start()
        timings = [out.get() for _ in procs]  # (seconds, bytes) each, timed inside the reader
        for proc in procs:
            proc.join()
        blob_mbs = sum(nb for _, nb in timings) / 1e6 / max(secs for secs, _ in timings)

        settings.models_dir.mkdir(parents=True, exist_ok=True)
        set_active(
            settings.models_dir,
            build_default_bundle(settings.models_dir, onnx_model_path(settings.model_dirs)),
        )
        tagger = load_tagger(settings.tagging, settings.limits)
        remote = HttpBlobStore(url, token)
        _tag_all(tagger, remote, ids[:3])  # warm up: model loaded, connection open
        tag_rate = len(ids) / _tag_all(tagger, remote, ids)
        remote.close()
    finally:
        daemon.stop()
    return {"tag_rate": tag_rate, "blob_mbs": blob_mbs, "size_mb": size_mb}


def estimate(
    tag_rate: float,
    cores: int,
    limits: dict[str, float],
) -> list[tuple[str, float, float]]:
    """(shared part, photos/s it carries, hosts of ``cores`` cores it carries), first to
    saturate first: a host tags ``cores × tag_rate`` photos/s."""
    per_host = cores * tag_rate
    rows = [(name, rate, rate / per_host) for name, rate in limits.items()]
    return sorted(rows, key=lambda r: r[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=20000, help="Redis stream entries.")
    ap.add_argument("--results", type=int, default=5000, help="Results the DB writer stores.")
    ap.add_argument("--photos", type=int, default=200, help="Photos tagged and read.")
    ap.add_argument("--long-side", type=int, default=1024, help="Photo size (pixels).")
    ap.add_argument("--readers", type=int, default=2, help="Blob service readers at once.")
    ap.add_argument(
        "--cores-per-host", type=int, default=os.cpu_count() or 1, help="For the estimate."
    )
    ap.add_argument(
        "--link-mbs",
        type=float,
        default=117.0,
        help="MB/s of the intake host's link, for the estimate (117: TCP payload of 1 Gbit/s).",
    )
    args = ap.parse_args()

    from autotag.config import load_settings
    from autotag.ops import run_dir as run_dir_mod
    from autotag.ops.cluster import prepare_database
    from autotag.ops.daemons.postgres import PostgresDaemon
    from autotag.ops.daemons.redis import RedisDaemon

    run_dir = Path(tempfile.mkdtemp(prefix="autotag-bench-cap-"))
    run_dir_mod.prepare(run_dir)
    env = {
        **os.environ,
        "AUTOTAG_RUN_DIR": str(run_dir),
        "AUTOTAG_MODELS_DIR": str(run_dir / "models"),
        "AUTOTAG_PORT_OFFSET": str(free_offset(14000)),
    }
    settings = load_settings(env)
    daemons = [RedisDaemon(settings), PostgresDaemon(settings)]
    try:
        for d in daemons:
            d.start()
        prepare_database(settings, progress=lambda _m: None)  # as `autotag cluster up` does
        q = redis_entries_per_s(settings, args.entries)
        print(f"Redis stream:  {q:10,.0f} entries/s (enqueue + read by 8 + ack), {args.entries}")
        w = db_results_per_s(settings, args.results)
        print(
            f"DB writer:     {w:10,.0f} results/s = {w * ROWS_PER_RESULT:,.0f} rows/s in batches "
            f"of {settings.writer.db_batch_size} "
            "(each: 1 photos row, 10 tag rows, 1 vector of 1280), "
            f"{args.results}"
        )
        f = blob_and_tagging(settings, args.photos, args.long_side, args.readers)
        print(
            f"blob service:  {f['blob_mbs']:10,.1f} MB/s with {args.readers} readers at once "
            f"({f['size_mb'] * 1000:.0f} kB per photo, {args.long_side} px long side)"
        )
        print(
            f"tagging:       {f['tag_rate']:10,.2f} photos/s per core (one process reading from "
            f"the blob service), {args.photos} photos"
        )
    finally:
        for d in reversed(daemons):
            d.stop()
        shutil.rmtree(run_dir, ignore_errors=True)

    c = args.cores_per_host
    blob_link = min(f["blob_mbs"], args.link_mbs)
    limits = {
        "DB writer (one)": w,
        "Redis stream": q,
        f"blob service ({blob_link:,.0f} MB/s: min of measured, link)": blob_link / f["size_mb"],
    }
    print(
        f"\npaper estimate: hosts of {c} cores tag {c * f['tag_rate']:.1f} photos/s each; "
        "each shared part carries"
    )
    rows = estimate(f["tag_rate"], c, limits)
    for name, rate, hosts in rows:
        print(f"  {name:<48} {rate:10,.0f} photos/s = {hosts:8,.1f} hosts")
    name, rate, hosts = rows[0]
    print(
        f"first to saturate: {name}, at {hosts:,.1f} hosts of {c} cores ({rate:,.0f} photos/s); "
        f"N hosts tag min(N x {c * f['tag_rate']:.1f}, {rate:,.0f}) photos/s"
    )


if __name__ == "__main__":
    main()
