"""Steady state: the topology against `autotag tag --jobs N` and a lean loop, side by side,
with where the topology's time goes.

For each photo size (640 px, 1600 px, 12 MP; or ``faces``: 1024 px photos of people):
  1. lean loop: N processes × 1 thread doing only the bolt's decode, models and heads
     (``Tagger.tag_bytes`` on each file's bytes), models loaded before the clock starts;
  2. `autotag tag --jobs N`'s own code (``tag_paths``), its start-up excluded likewise;
  3. the topology: photos uploaded while it is deactivated, then activated; steady state is
     the middle 80% of the photos by tag time (ramp-up and tail excluded), beside the
     first-to-last rate and the wall clock from activation (start-up included);
  4. where the topology's time went over the drain: each executor's own busy and waiting
     seconds (the bolts' ``BusyMeter``, <run_dir>/stats/), the CPU seconds of every process
     (/proc), Storm's execute latency and capacity per component, and the idle core-seconds,
     adding up to cores × wall, and Storm's own receive-queue population per executor
     (mean / max of the metrics ticks inside the steady window; `autotag queues`' source).

Run it on an idle machine only (no tests, helpers or other benchmarks): each phase waits for
the 1-minute load average to fall below 0.5 and marks a figure whose phase began above it
NOT COMPARABLE. Needs the cluster and the topology running (`make up`).

    python bench/steady_state.py                          # 400 photos per size
    python bench/steady_state.py --n 200 --sizes 1600     # a quick look
    python bench/steady_state.py --n 200 --sizes faces    # photos of people (faces described)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline as bench  # noqa: E402 - bench/pipeline.py: phases, uploads, CPU by component

from autotag.config import LimitsSettings, Settings, TaggingSettings, settings  # noqa: E402
from autotag.learning import samples  # noqa: E402
from autotag.ops import queue_metrics, storm_rest  # noqa: E402
from autotag.ops.nimbus import NimbusClient  # noqa: E402
from autotag.ops.topology import wait_scheduled  # noqa: E402
from autotag.pipeline.busy_meter import read_meters  # noqa: E402
from autotag.storage import database  # noqa: E402

_lean_tagger: Any = None


def _lean_init(tagging: TaggingSettings, limits: LimitsSettings, loaded: Any) -> None:
    global _lean_tagger
    from autotag.pipeline.tag_step import load_tagger

    cv2.setNumThreads(1)
    _lean_tagger = load_tagger(tagging, limits)
    loaded.wait()


def _lean_one(path: Path) -> int:
    return len(_lean_tagger.tag_bytes(path.read_bytes()).tags)


def lean_loop(paths: Sequence[Path], s: Settings, jobs: int) -> float:
    """Photos/s of ``jobs`` processes doing only decode, models and heads."""
    ctx = mp.get_context("spawn")
    loaded = ctx.Barrier(jobs + 1)
    with ctx.Pool(jobs, initializer=_lean_init, initargs=(s.tagging, s.limits, loaded)) as pool:
        loaded.wait()
        t0 = time.perf_counter()
        for _ in pool.imap_unordered(_lean_one, paths, chunksize=4):
            pass
        return len(paths) / (time.perf_counter() - t0)


FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"


def face_photos(n: int, dest: Path, seed: int) -> list[Path]:
    """n distinct 1024 px JPEGs of people (../shared/data/faces: one face each mostly, a few
    group photos), each a slightly different crop so that every upload is a new photo."""
    rng = np.random.default_rng(seed)
    sources = sorted(FACES.glob("*.jpg"))
    if not sources:
        raise SystemExit(f"bench: no photos in {FACES}")
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img = cv2.imread(str(sources[i % len(sources)]), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        dy, dx = (rng.integers(0, max(1, d // 20)) for d in (h, w))
        img = img[dy : h - (max(1, h // 20) - dy), dx : w - (max(1, w // 20) - dx)]
        scale = 1024 / max(img.shape[:2])
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        path = dest / f"face-{i:05d}.jpg"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(path)
    return out


def photo_set(size: str, n: int, dest: Path, seed: int) -> list[Path]:
    if size == "12mp":
        return samples.make_phone_photos(n, dest, seed=seed)
    if size == "faces":
        return face_photos(n, dest, seed)
    return samples.make_distinct_photos(n, dest, long_side=int(size), seed=seed)


def tag_times(s: Settings, ids: list[str]) -> list[float]:
    with database.connect(s.services) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM tagged_at) FROM photos"
            " WHERE photo_id = ANY(%s) AND tagged_at IS NOT NULL ORDER BY 1",
            (ids,),
        ).fetchall()
    return [float(r[0]) for r in rows]


def steady_span(times: list[float], share: float = 0.8) -> tuple[int, int]:
    """Indices of the first and last photo of the middle ``share`` by tag time."""
    n = len(times)
    return int(n * (1 - share) / 2), int(n * (1 + share) / 2) - 1


def steady(times: list[float], share: float = 0.8) -> float:
    """Photos/s over the middle ``share`` of the photos by tag time."""
    lo, hi = steady_span(times, share)
    return (hi - lo) / max(times[hi] - times[lo], 1e-9)


def per_second(times: list[float]) -> list[int]:
    start = int(times[0])
    counts = [0] * (int(times[-1]) - start + 1)
    for t in times:
        counts[int(t) - start] += 1
    return counts[1:-1] or counts  # whole seconds only


def meter_delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    out = {}
    for name, a in after.items():
        b = before.get(name, {})
        if b.get("pid") not in (None, a.get("pid")):
            b = {}  # the process was restarted: count from zero
        out[name] = {k: float(a[k]) - float(b.get(k, 0.0)) for k in a if k not in ("pid",)}
    return out


def storm_figures(s: Settings) -> list[dict[str, Any]]:
    """Storm's own figures per bolt over its last 10 minutes (execute latency, capacity),
    as its UI REST API gives them."""
    try:
        page = storm_rest.topology(s, bench.TOPOLOGY, "600")
    except Exception as exc:  # noqa: BLE001 - a report without Storm's figures still helps
        return [{"boltId": f"(Storm's figures unavailable: {exc})"}]
    return list(page.get("bolts", []))


def queue_figures(
    s: Settings, nimbus: NimbusClient, start: float, end: float
) -> list[queue_metrics.QueueSummary]:
    """Storm's receive / transfer queue populations over ``[start, end]``, per executor."""
    topology_id = nimbus.topology(bench.TOPOLOGY).id
    logs = queue_metrics.metrics_logs(s.log_dir, topology_id)
    return queue_metrics.summarize(queue_metrics.read_samples(logs, tail_bytes=None), start, end)


def first_tagged(s: Settings, ids: list[str], timeout: float) -> float:
    """Wait until one of ``ids`` is tagged; the epoch time of that first tag."""
    deadline = time.monotonic() + timeout
    with database.connect(s.services) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT extract(epoch FROM min(tagged_at)) FROM photos WHERE photo_id = ANY(%s)",
                (ids,),
            ).fetchone()
            if row and row[0] is not None:
                return float(row[0])
            time.sleep(0.02)
    raise SystemExit("bench: no photo tagged after activation")


def topology_drain(
    paths: list[Path], s: Settings, nimbus: NimbusClient, timeout: float
) -> dict[str, Any]:
    """Upload while deactivated, activate, and account for the drain from the first tag to
    the last (start-up excluded): each executor's meter and each process's CPU over it."""
    bench.pause(nimbus)
    ids = bench.upload(paths, s)
    t0 = time.time()
    nimbus.activate(bench.TOPOLOGY)
    first = first_tagged(s, ids, timeout)
    meters0, cpu0 = read_meters(s.run_dir), bench.cpu_by_component(s.run_dir)
    w0 = time.time()
    with database.connect(s.services) as conn:
        bench.wait_tagged(conn, ids, timeout)
    wall = time.time() - w0
    time.sleep(0.6)  # the meters' last samples are written (every 0.25 s while busy)
    meters = meter_delta(meters0, read_meters(s.run_dir))
    cpu = bench.cpu_delta(cpu0, bench.cpu_by_component(s.run_dir))
    times = tag_times(s, ids)
    lo, hi = steady_span(times)
    queues = queue_figures(s, nimbus, times[lo], times[hi])
    return {
        "ids": ids,
        "steady": steady(times),
        "first_to_last": (len(times) - 1) / max(times[-1] - times[0], 1e-9),
        "from_activation": len(ids) / max(times[-1] - t0, 1e-9),
        "first_tag_secs": first - t0,
        "drain_secs": times[-1] - times[0],
        "wall": wall,
        "cpu": cpu,
        "meters": meters,
        "per_second": per_second(times),
        "storm": storm_figures(s),
        "queues": queues,
    }


def print_breakdown(run: dict[str, Any], cores: int) -> None:
    wall, n = run["wall"], len(run["ids"])
    print(
        f"    where the time went, first tag to last ({wall:.1f} s × {cores} cores; the meters"
        " are sampled every 0.25 s, so a few hundred ms of either end may be missing):"
    )
    for name, m in sorted(run["meters"].items()):
        if not m.get("tuples") and not m.get("busy_secs"):
            continue
        busy, wait = m["busy_secs"], m["wait_secs"]
        print(
            f"      {name:<14} busy {busy:6.2f} s  waiting {wait:6.2f} s "
            f"({100 * busy / max(busy + wait, 1e-9):4.1f}% busy; {int(m['long_waits'])} waits"
            f" > 5 ms = {m['long_wait_secs']:.2f} s)  {int(m['tuples'])} tuples"
        )
    bench.print_cpu(run["cpu"], n, wall, cores)
    for bolt in run["storm"]:
        print(
            f"      Storm, last 10 min: {bolt.get('boltId')}: capacity {bolt.get('capacity')},"
            f" execute latency {bolt.get('executeLatency')} ms, executed {bolt.get('executed')}"
        )
    print(
        "    Storm's queues in steady state (middle 80% of the tags; a tick per executor every"
        " queue_metrics_secs of the submission: AUTOTAG_QUEUE_METRICS_SECS=1 at submit gives"
        " a short drain more):"
    )
    if not run["queues"]:
        print("      no metrics tick fell inside the steady window")
    for q in run["queues"]:
        name = f"{queue_metrics.short_component(q.component)}[{q.task}]"
        sojourn = "-" if q.mean_sojourn_ms is None else f"{q.mean_sojourn_ms:.1f} ms"
        print(
            f"      {name:<16} {q.queue:<21} population mean {q.mean_population:7.1f}, "
            f"max {q.max_population:5d} of {q.capacity} ({q.samples} ticks); "
            f"sojourn {sojourn}; overflow max {q.overflow_max}"
        )
    rates = run["per_second"]
    print(f"    photos per whole second: min {min(rates)}, max {max(rates)}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=400, help="photos per size and per run")
    ap.add_argument("--sizes", default="640,1600,12mp")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--settle", type=float, default=180, help="max wait for load < 0.5 (s)")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()

    s = settings()
    plain = s.override(tagging_threads=1)
    cores = os.cpu_count() or 1
    nimbus = NimbusClient(s)
    if nimbus.topology(bench.TOPOLOGY).status != "ACTIVE":
        raise SystemExit(f"bench: topology {bench.TOPOLOGY} is not active; run `make up` first")
    wait_scheduled(s, bench.TOPOLOGY, 60)
    cv2.setNumThreads(1)
    seed = int(time.time())
    print(f"{cores} cores; loops = {args.jobs} processes × 1 thread; load {bench.load1():.2f}")
    with tempfile.TemporaryDirectory(prefix="autotag-steady-") as tmp:
        warm = photo_set("640", 100, Path(tmp) / "warm", seed + 9)
        with database.connect(s.services) as conn:
            bench.wait_tagged(conn, bench.upload(warm, s), args.timeout)
        for size in [x.strip() for x in args.sizes.split(",") if x.strip()]:
            paths = photo_set(size, args.n, Path(tmp) / size, seed)
            print(f"\n== {size}: {len(paths)} distinct JPEGs")
            with bench.phase(f"lean {size}", args.settle) as ph:
                lean = lean_loop(paths, plain, args.jobs)
            print(f"  lean loop:            {lean:7.1f} photos/s   {ph.mark()}")
            with bench.phase(f"autotag tag {size}", args.settle) as ph:
                tag_rate, _ = bench.plain_loop(paths, plain, args.jobs)
            print(f"  autotag tag --jobs {args.jobs}: {tag_rate:7.1f} photos/s   {ph.mark()}")
            tp = photo_set(size, args.n, Path(tmp) / f"{size}-tp", seed + 1)
            with bench.phase(f"topology {size}", args.settle) as ph:
                run = topology_drain(tp, s, nimbus, args.timeout)
            print(
                f"  topology steady:      {run['steady']:7.1f} photos/s   {ph.mark()}\n"
                f"    = {run['steady'] / tag_rate:.2f} of autotag tag, "
                f"{run['steady'] / lean:.2f} of the lean loop\n"
                f"    first to last tag {run['first_to_last']:.1f}/s; from activation "
                f"(start-up included) {run['from_activation']:.1f}/s, first tag after "
                f"{1000 * run['first_tag_secs']:.0f} ms"
            )
            print_breakdown(run, cores)
    print("\nload averages per phase:")
    for p in bench.PHASES:
        print(f"  {p.name:<22} {p.mark()}")


if __name__ == "__main__":
    main()
