"""The topology against the best plain use of the same cores, side by side in one run.

For each photo size (640 px and 12 MP by default):
  1. plain loop: N processes × 1 thread (N = cores), the autotag bolt's own code
     (``autotag tag --jobs N``), model loaded before the clock starts; at 640 px also one
     process alone, for the per-core figure;
  2. topology: the photos are uploaded while the topology is deactivated, then it is
     activated and timed until the last photo is tagged (throughput), with the CPU seconds
     of every process (Storm worker JVM, each Python component, Redis, Postgres, the Storm
     daemons) read from /proc before and after;
then, at 640 px: upload→tagged latency at half the measured topology capacity, and a burst
of uploads (made while the topology is active) drained at what rate; and at 12 MP, the plain
loop with reduced JPEG decoding off, and the tag agreement between the two; last, the CPU
the active topology's processes use with nothing to do (--idle-secs).

The 1-minute load average is recorded before and after each phase; each phase first waits
(up to --settle seconds) for it to fall below 0.5, and a figure whose phase began above 0.5
is marked NOT COMPARABLE. Never run this beside tests, helpers or other benchmarks.

Needs the cluster and the topology running (`make up`).

    python bench/pipeline.py                  # defaults: 300 at 640 px, 120 at 12 MP, burst 1000
    python bench/pipeline.py --n 60 --sizes 640 --burst 100 --paced-n 40   # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from autotag.config import Settings, settings
from autotag.learning import samples
from autotag.ops.nimbus import NimbusClient
from autotag.ops.topology import wait_scheduled
from autotag.pipeline import intake
from autotag.pipeline.local_tagging import tag_paths
from autotag.storage import database
from autotag.storage.writer import NOTIFY_CHANNEL

TOPOLOGY = "autotagger"
IDLE_LOAD = 0.5
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Which process is which, from its command line (first match wins).
COMPONENTS = (
    ("autotag bolt", "bolts.autotag.AutotagBolt"),
    ("db_writer bolt", "bolts.dbwriter.DbWriterBolt"),
    ("photo spout", "spouts.photos.PhotoSpout"),
    ("worker JVM", "org.apache.storm.daemon.worker.Worker"),
    ("supervisor", "daemon.name=supervisor"),
    ("nimbus", "daemon.name=nimbus"),
    ("zookeeper", "zookeeper"),
    ("storm ui", "autotag.ops.storm_ui"),
    ("redis", "redis-server"),
    ("postgres", "postgres"),
)


# -- machine state -------------------------------------------------------------------------


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


@dataclasses.dataclass
class Phase:
    name: str
    load_before: float
    load_after: float = 0.0

    @property
    def comparable(self) -> bool:
        return self.load_before <= IDLE_LOAD

    def mark(self) -> str:
        note = "" if self.comparable else "  ** NOT COMPARABLE: machine busy **"
        return f"[load {self.load_before:.2f} → {self.load_after:.2f}]{note}"


PHASES: list[Phase] = []


@contextmanager
def phase(name: str, settle: float) -> Iterator[Phase]:
    """Wait for an idle machine (up to ``settle`` s), then time a phase and record loads."""
    deadline = time.monotonic() + settle
    while load1() > IDLE_LOAD and time.monotonic() < deadline:
        time.sleep(2)
    p = Phase(name, load1())
    PHASES.append(p)
    yield p
    p.load_after = load1()


def cpu_by_component(run_dir: Path) -> dict[str, float]:
    """CPU seconds (user + system) so far of this cluster's processes, by component: those
    whose command line names the run directory or whose working directory is inside it."""
    out: dict[str, float] = {}
    run = str(run_dir)
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(d / "cwd")
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if run not in cmd and not (cwd == run or cwd.startswith(run + "/")):
            continue
        secs = (int(fields[11]) + int(fields[12])) / CLK_TCK
        for name, needle in COMPONENTS:
            if needle in cmd:
                out[name] = out.get(name, 0.0) + secs
                break
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}


# Photos/s per core at 640 px, one process × one thread, before this benchmark's work began
# (issue 14's starting point); the per-core goal is twice this.
BEFORE_PER_CORE = 28.0


# -- the two ways to tag ---------------------------------------------------------------------


def plain_loop(paths: list[Path], s: Settings, jobs: int) -> tuple[float, dict[Path, list]]:
    """Photos/s of ``jobs`` processes × 1 thread, models loaded before the clock starts."""
    started: list[float] = []
    results = {}
    for path, r in tag_paths(
        paths, s.tagging, s.limits, jobs=jobs, on_ready=lambda: started.append(time.perf_counter())
    ):
        results[path] = r.tags
    return len(paths) / (time.perf_counter() - started[0]), results


def _queued(conn, ids: list[str]) -> set[str]:  # noqa: ANN001
    rows = conn.execute(
        "SELECT photo_id FROM photos WHERE photo_id = ANY(%s) AND status = 'queued'", (ids,)
    ).fetchall()
    return {r[0] for r in rows}


def wait_tagged(conn, ids: list[str], timeout: float) -> None:  # noqa: ANN001
    """Return once none of ``ids`` is queued. Listens for the DB writer's commit notices (the
    web page's live feed) instead of polling the table, which would cost the machine being
    measured; the table is checked at the start and every few seconds as a safety net."""
    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
    try:
        t0 = checked = time.monotonic()
        left = _queued(conn, ids)
        while left:
            if time.monotonic() - t0 > timeout:
                raise SystemExit(
                    f"bench: {len(left)} photos still queued after {timeout:.0f}s"
                    " — is the topology stuck?"
                )
            for note in conn.notifies(timeout=1.0):
                left.difference_update(note.payload.split(","))
                if not left:
                    break
            if left and time.monotonic() - checked > 5:
                left, checked = _queued(conn, list(left)), time.monotonic()
    finally:
        conn.execute(f"UNLISTEN {NOTIFY_CHANNEL}")


def upload(paths: list[Path], s: Settings, rate: float | None = None) -> list[str]:
    """Upload (all at once, or paced at ``rate`` per second); the queued photo ids."""
    t0 = time.time()
    ids = []
    with intake.Intake(s.services, s.queue, s.limits, s.video, s.blob_dir) as up:
        for i, p in enumerate(paths):
            rec = up.upload_file(p)
            if rec.status != intake.QUEUED or rec.photo_id is None:
                raise SystemExit(f"bench: {p} was not queued ({rec.status}: {rec.reason})")
            ids.append(rec.photo_id)
            if rate:
                time.sleep(max(0.0, t0 + (i + 1) / rate - time.time()))
    return ids


def latencies(conn, ids: list[str]) -> tuple[list[float], float]:  # noqa: ANN001
    """Sorted upload→tagged latencies (s) and the span from first upload to last tag."""
    rows = conn.execute(
        "SELECT extract(epoch FROM uploaded_at), extract(epoch FROM tagged_at) FROM photos"
        " WHERE photo_id = ANY(%s) AND tagged_at IS NOT NULL",
        (ids,),
    ).fetchall()
    lat = sorted(float(t) - float(u) for u, t in rows)
    span = max(float(t) for _, t in rows) - min(float(u) for u, _ in rows)
    return lat, span


def pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))]


@dataclasses.dataclass
class TopologyRun:
    """One timed topology phase. ``photos_per_sec`` is the sustained rate, from the first
    photo tagged to the last (the plain loop's clock likewise starts once its models are
    loaded); ``from_activation`` also counts the delay before the first photo is tagged."""

    photos_per_sec: float
    from_activation: float
    first_tag_secs: float
    cpu: dict[str, float]
    tagged: int
    wall: float


def pause(nimbus: NimbusClient) -> None:
    """Deactivate the topology and give the spout a moment to stop asking for photos."""
    nimbus.deactivate(TOPOLOGY)
    time.sleep(1.0)


def tag_span(conn, ids: list[str]) -> tuple[float, float]:  # noqa: ANN001
    """Epoch seconds of the first and the last commit that tagged one of ``ids``."""
    first, last = conn.execute(
        "SELECT extract(epoch FROM min(tagged_at)), extract(epoch FROM max(tagged_at))"
        " FROM photos WHERE photo_id = ANY(%s)",
        (ids,),
    ).fetchone()
    if first is None:
        raise RuntimeError(f"none of the {len(ids)} photos was tagged")
    return float(first), float(last)


def sustained_rate(conn, ids: list[str]) -> float:  # noqa: ANN001
    """Photos per second from the first of ``ids`` tagged to the last."""
    first, last = tag_span(conn, ids)
    return (len(ids) - 1) / max(last - first, 1e-9)


def activate_and_wait(
    s: Settings, nimbus: NimbusClient, ids: list[str], timeout: float
) -> tuple[float, float, dict[str, float]]:
    """Activate the paused topology and wait until ``ids`` are done: (activation time, wall
    seconds, CPU seconds by component over that wall)."""
    with database.connect(s.services) as conn:
        before = cpu_by_component(s.run_dir)
        t0 = time.time()
        nimbus.activate(TOPOLOGY)
        wait_tagged(conn, ids, timeout)
        wall = time.time() - t0
        return t0, wall, cpu_delta(before, cpu_by_component(s.run_dir))


def topology_run(
    paths: list[Path], s: Settings, nimbus: NimbusClient, timeout: float
) -> TopologyRun:
    """Upload with the topology paused, then activate it and time it to the last tag."""
    pause(nimbus)
    ids = upload(paths, s)
    t0, wall, cpu = activate_and_wait(s, nimbus, ids, timeout)
    with database.connect(s.services) as conn:
        first, _last = tag_span(conn, ids)
        n_tagged = conn.execute(
            "SELECT count(*) FROM photos WHERE photo_id = ANY(%s) AND status = 'tagged'", (ids,)
        ).fetchone()[0]
        rate = sustained_rate(conn, ids)
    return TopologyRun(
        photos_per_sec=rate,
        from_activation=len(ids) / wall,
        first_tag_secs=first - t0,
        cpu=cpu,
        tagged=n_tagged,
        wall=wall,
    )


def print_cpu(cpu: dict[str, float], n: int, wall: float, cores: int) -> None:
    total = sum(cpu.values())
    print(
        f"    CPU per component from activation to the last tag, {wall:.1f} s "
        f"({cores * wall:.1f} core-seconds available):"
    )
    for name, secs in sorted(cpu.items(), key=lambda kv: -kv[1]):
        if secs >= 0.005:
            print(f"      {name:<15} {secs:7.2f} s   {1000 * secs / n:6.1f} ms/photo")
    tagging = cpu.get("autotag bolt", 0.0)
    jvm = cpu.get("worker JVM", 0.0)
    idle = max(0.0, cores * wall - total)
    print(f"      {'(idle)':<15} {idle:7.2f} s")
    if tagging:
        print(f"    worker JVM / tagging CPU per photo: {jvm / tagging:.3f}")


# -- main ------------------------------------------------------------------------------------


def photo_set(kind: str, n: int, dest: Path, seed: int) -> list[Path]:
    if kind == "640":
        return samples.make_distinct_photos(n, dest, long_side=640, seed=seed)
    return samples.make_phone_photos(n, dest, seed=seed)


def agreement(a: dict[Path, list], b: dict[Path, list]) -> float:
    """Share of photos whose best tag is the same in both runs."""
    same = sum(
        (a[p][:1] and b[p][:1] and a[p][0][0] == b[p][0][0]) or (not a[p] and not b[p]) for p in a
    )
    return same / len(a)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=300, help="640 px photos, plain loop and topology")
    ap.add_argument("--n-12mp", type=int, default=120, help="12 MP photos, plain and topology")
    ap.add_argument("--sizes", default="640,12mp", help="comma list of 640 and/or 12mp")
    ap.add_argument("--paced-n", type=int, default=150, help="photos for the latency run")
    ap.add_argument("--burst", type=int, default=1000, help="photos in the burst run (0: skip)")
    ap.add_argument(
        "--warmup", type=int, default=100, help="photos through the topology before timing"
    )
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="plain-loop processes")
    ap.add_argument(
        "--idle-secs", type=float, default=60, help="idle-topology CPU phase length (0: skip)"
    )
    ap.add_argument("--settle", type=float, default=180, help="max wait for load < 0.5 (s)")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()

    s = settings()
    plain_settings = s.override(tagging_threads=1)
    cores = os.cpu_count() or 1
    nimbus = NimbusClient(s)
    status = nimbus.topology(TOPOLOGY).status
    if status != "ACTIVE":
        raise SystemExit(f"bench: topology {TOPOLOGY} is {status}; run `make up` first")
    wait_scheduled(s, TOPOLOGY, 60)  # fails with Nimbus's reason if it has no worker
    cv2.setNumThreads(1)
    seed = int(time.time())
    print(
        f"machine: {platform.processor() or platform.machine()}, {cores} cores; "
        f"plain loop = {args.jobs} processes × 1 thread; load average now {load1():.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="autotag-bench-") as tmp:
        if args.warmup:
            # A running topology is warm: its JVM has compiled the hot paths and the bolts
            # have touched their models, as the plain loop's models are loaded before its clock.
            warm = photo_set("640", args.warmup, Path(tmp) / "warmup", seed + 7)
            with database.connect(s.services) as conn:
                wait_tagged(conn, upload(warm, s), args.timeout)
            print(f"warm-up: {len(warm)} photos through the topology before the timed phases")
        for size in [x.strip() for x in args.sizes.split(",") if x.strip()]:
            n = args.n if size == "640" else args.n_12mp
            paths = photo_set(size, n, Path(tmp) / size, seed)
            mb = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
            print(f"\n== {size}: {len(paths)} distinct JPEGs, {mb:.2f} MB each on average")
            with phase(f"plain {size}", args.settle) as ph:
                plain, reduced_tags = plain_loop(paths, plain_settings, args.jobs)
            print(f"  plain loop:        {plain:7.1f} photos/s   {ph.mark()}")
            if size == "640" and args.jobs > 1:
                # Per core two ways: one process alone (how "28 photos/s per core, one
                # thread" was measured before this work) and the N-process loop over N.
                with phase("plain 640, one process", args.settle) as ph:
                    single, _ = plain_loop(paths, plain_settings, 1)
                print(
                    f"  plain, 1 process:  {single:7.1f} photos/s   {ph.mark()}\n"
                    f"  per core vs {BEFORE_PER_CORE:.0f}/s before: 1 process × 1 thread "
                    f"{single / BEFORE_PER_CORE:.2f}×; {args.jobs} processes "
                    f"{plain / args.jobs / BEFORE_PER_CORE:.2f}×"
                )
            if size != "640":
                full_settings = plain_settings.override(reduced_decode=False)
                with phase(f"plain {size} full decode", args.settle) as ph:
                    full, full_tags = plain_loop(paths, full_settings, args.jobs)
                print(
                    f"  plain, full decode:{full:7.1f} photos/s   {ph.mark()}\n"
                    f"  reduced / full decoding: {plain / full:.2f}×; best tag agrees on "
                    f"{100 * agreement(reduced_tags, full_tags):.1f}% of photos"
                )
            tp_paths = photo_set(size, n, Path(tmp) / f"{size}-topology", seed + 1)
            with phase(f"topology {size}", args.settle) as ph:
                run = topology_run(tp_paths, s, nimbus, args.timeout)
            rate = run.photos_per_sec
            print(
                f"  topology:          {rate:7.1f} photos/s   {ph.mark()}  "
                f"({run.tagged}/{len(tp_paths)} tagged)\n"
                f"    sustained: first to last photo tagged; from activation "
                f"{run.from_activation:.1f} photos/s (first photo tagged after "
                f"{1000 * run.first_tag_secs:.0f} ms)"
            )
            print(f"  ratio topology / plain loop: {rate / plain:.2f}")
            print_cpu(run.cpu, len(tp_paths), run.wall, cores)
            if size == "640" and args.paced_n:
                paced_rate = 0.5 * rate
                paced_paths = photo_set(size, args.paced_n, Path(tmp) / "paced", seed + 2)
                with phase("latency 640", args.settle) as ph:
                    ids = upload(paced_paths, s, rate=paced_rate)
                    with database.connect(s.services) as conn:
                        wait_tagged(conn, ids, args.timeout)
                        lat, _ = latencies(conn, ids)
                print(
                    f"  latency at {paced_rate:.1f} uploads/s (half capacity), {len(ids)} photos: "
                    f"p50 {1000 * pct(lat, 0.5):.0f} ms, p95 {1000 * pct(lat, 0.95):.0f} ms, "
                    f"p99 {1000 * pct(lat, 0.99):.0f} ms, "
                    f"mean {1000 * statistics.fmean(lat):.0f} ms   {ph.mark()}"
                )
            if size == "640" and args.burst:
                burst_paths = photo_set(size, args.burst, Path(tmp) / "burst", seed + 3)
                with phase("burst 640", args.settle) as ph:
                    ids = upload(burst_paths, s)
                    with database.connect(s.services) as conn:
                        wait_tagged(conn, ids, args.timeout)
                        lat, span = latencies(conn, ids)
                drain = len(ids) / span
                print(
                    f"  burst of {len(ids)} uploads drained at {drain:.1f} photos/s = "
                    f"{drain / rate:.2f} × capacity (p99 wait {pct(lat, 0.99):.1f} s)   {ph.mark()}"
                )
    if args.idle_secs:
        # The topology active with nothing to do: what its processes cost the machine.
        with phase("idle topology", args.settle) as ph:
            before = cpu_by_component(s.run_dir)
            time.sleep(args.idle_secs)
            used = cpu_delta(before, cpu_by_component(s.run_dir))
        per_min = 60.0 / args.idle_secs
        total = sum(used.values())
        print(
            f"\n== idle topology (active, no input) over {args.idle_secs:.0f} s: "
            f"{total * per_min:.2f} CPU-s per minute = {100 * total / args.idle_secs:.1f}% "
            f"of one core   {ph.mark()}"
        )
        for name, secs in sorted(used.items(), key=lambda kv: -kv[1]):
            print(f"      {name:<15} {secs * per_min:6.2f} CPU-s/min")
    busy = [p.name for p in PHASES if not p.comparable]
    print(
        "\nall phases began on an idle machine" if not busy else f"\nNOT COMPARABLE (busy): {busy}"
    )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
