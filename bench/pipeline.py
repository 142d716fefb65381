"""Throughput and latency of the running autotagger topology, side by side in one run with
(a) a plain single-process loop doing the same decode + features + scoring on the same
photos, and (b) Flickr's first attempt: a loop that reloads the classifiers for every photo.

Needs the cluster and the topology running (`make up`, or `autotag demo`). Prints figures;
BENCHMARKS.md records them.

    python bench/pipeline.py --n 600
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from autotag.config import settings
from autotag.learning import samples
from autotag.ops.nimbus import NimbusClient
from autotag.ops.topology import wait_scheduled
from autotag.pipeline import intake
from autotag.storage import database
from autotag.vision.tagger import Tagger

TOPOLOGY = "autotagger"


def plain_loop(paths: list[Path], threads: int) -> float:
    """Photos/s of one process, model loaded once, `threads` ONNX threads."""
    os.environ["AUTOTAG_ONNX_THREADS"] = str(threads)
    from autotag import config

    config.settings.cache_clear()
    tagger = Tagger.from_active(config.settings())
    tagger.tag_file(paths[0])  # warm-up
    t0 = time.perf_counter()
    for p in paths:
        tagger.tag_file(p)
    return len(paths) / (time.perf_counter() - t0)


def reload_loop(paths: list[Path]) -> tuple[float, float]:
    """Flickr's first attempt: load the classifiers for every photo. Returns (photos/s, load share)."""
    from autotag import config
    from autotag.vision import features

    load = work = 0.0
    for p in paths:
        features._CACHE.clear()  # noqa: SLF001 - the point of this loop is to reload
        t0 = time.perf_counter()
        tagger = Tagger.from_active(config.settings())
        t1 = time.perf_counter()
        tagger.tag_file(p)
        t2 = time.perf_counter()
        load += t1 - t0
        work += t2 - t1
    return len(paths) / (load + work), load / (load + work)


def topology_run(paths: list[Path], timeout: float, rate: float | None = None) -> dict[str, float]:
    """Upload paths (all at once, or paced at `rate` per second) and wait for their tags."""
    s = settings()
    t0 = time.time()
    if rate:
        records = []
        for i, p in enumerate(paths):
            records += intake.upload([str(p)], s)
            time.sleep(max(0.0, t0 + (i + 1) / rate - time.time()))
    else:
        records = intake.upload([str(p) for p in paths], s)
    ids = [r.photo_id for r in records if r.status == "queued"]
    upload_secs = time.time() - t0
    with database.connect(s) as conn:
        while True:
            left = conn.execute(
                "SELECT count(*) FROM photos WHERE photo_id = ANY(%s) AND status = 'queued'", (ids,)
            ).fetchone()[0]
            if left == 0 or time.time() - t0 > timeout:
                break
            time.sleep(0.2)
        rows = conn.execute(
            "SELECT extract(epoch FROM uploaded_at), extract(epoch FROM tagged_at), status "
            "FROM photos WHERE photo_id = ANY(%s)",
            (ids,),
        ).fetchall()
    done = [(float(u), float(t)) for u, t, st in rows if t is not None]
    lat = sorted(t - u for u, t in done)
    span = max(t for _, t in done) - min(u for u, _ in done)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    return {
        "photos": len(ids),
        "tagged": sum(1 for *_, st in rows if st == "tagged"),
        "failed": sum(1 for *_, st in rows if st == "failed"),
        "upload_secs": upload_secs,
        "photos_per_sec": len(done) / span,
        "p50": pct(0.50),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "mean": statistics.fmean(lat),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--n", type=int, default=600, help="photos through the topology and the plain loop"
    )
    ap.add_argument(
        "--reload-n", type=int, default=40, help="photos for the reload-every-photo loop"
    )
    ap.add_argument(
        "--paced-n", type=int, default=150, help="photos for the steady-rate latency run"
    )
    ap.add_argument("--long-side", type=int, default=640, help="photo size (longest side, pixels)")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()

    s = settings()
    status = NimbusClient(s).topology(TOPOLOGY).status
    if status != "ACTIVE":
        raise SystemExit(f"bench: topology {TOPOLOGY} is {status}; run `autotag demo` first")
    wait_scheduled(s, TOPOLOGY, 60)  # fails with Nimbus's reason if it has no worker
    seed = int(time.time())
    with tempfile.TemporaryDirectory(prefix="autotag-bench-") as tmp:
        paths = samples.make_distinct_photos(args.n, Path(tmp), args.long_side, seed)
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
            f"{args.n} distinct JPEGs, long side {args.long_side}px, model {Tagger.from_active(s).model_version}"
        )
        plain2 = plain_loop(paths, threads=2)
        print(f"plain loop, 1 process, 2 ONNX threads: {plain2:7.1f} photos/s")
        plain1 = plain_loop(paths[: max(50, args.n // 3)], threads=1)
        print(f"plain loop, 1 process, 1 ONNX thread:  {plain1:7.1f} photos/s")
        topo = topology_run(paths, args.timeout)
        print(
            f"topology ({topo['tagged']} tagged, {topo['failed']} failed of {topo['photos']}): "
            f"{topo['photos_per_sec']:7.1f} photos/s; upload {topo['upload_secs']:.1f}s"
        )
        print(
            f"  upload→tagged latency: p50 {topo['p50']:.2f}s  p95 {topo['p95']:.2f}s  "
            f"p99 {topo['p99']:.2f}s  (mean {topo['mean']:.2f}s; includes queueing behind the batch)"
        )
        paced_rate = 0.5 * topo["photos_per_sec"]
        paced_paths = samples.make_distinct_photos(
            args.paced_n, Path(tmp) / "paced", args.long_side, seed + 1
        )
        paced = topology_run(paced_paths, args.timeout, rate=paced_rate)
        print(
            f"topology at a steady {paced_rate:.1f} uploads/s (half its capacity), {paced['photos']} photos:"
            f" latency p50 {paced['p50']:.2f}s  p95 {paced['p95']:.2f}s  p99 {paced['p99']:.2f}s"
        )
        reload_rate, load_share = reload_loop(paths[: args.reload_n])
        print(
            f"reload-every-photo loop: {reload_rate:7.2f} photos/s; loading = {100 * load_share:.0f}% of time"
        )
        print(
            f"ratio topology / plain loop (2 threads, same 2 cores): {topo['photos_per_sec'] / plain2:.2f}"
        )
        print(f"ratio plain loop / reload loop: {plain2 / reload_rate:.1f}x")


if __name__ == "__main__":
    main()
