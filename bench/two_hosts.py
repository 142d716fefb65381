"""Two simulated hosts on one machine: photos/s on both hosts vs host A alone, and host B killed.

    sudo virtualenvs/autotag/bin/python bench/two_hosts.py --photos 500 --bulk 300

Creates two network namespaces joined by a veth pair (10.231.0.1 = host A, 10.231.0.2 =
host B; traffic only between them), then runs:

  host A: ZooKeeper, Nimbus, Supervisor (2 slots), Redis, Postgres, the blob service
          (`autotag cluster up ...` inside namespace A, every server other hosts reach bound
          to 10.231.0.1; the web page and Storm UI, not started here, stay on 127.0.0.1)
  host B: a Supervisor only (`autotag cluster join 10.231.0.1 --bind 10.231.0.2`), one slot,
          reading photos from A's blob service with the token copied from A's secrets/

It submits the autotagger with `topology.workers: 2` (one worker per host) and measures, in
one run, on the same --bulk photos, the same topology and the same parallelism (2 workers, the
topology's executors), each phase re-queueing all of them at once and timing the drain:

  1. workers on both hosts  (after uploading the photos once, which also warms every worker)
  2. host B killed mid-run: --photos more photos uploaded on host A at --rate photos/s, host
     B's Supervisor and workers SIGKILLed once a third are stored and host B has processed
     some (each photo B processes is read over HTTP from A's blob service, whose access log
     names the reading host); Storm moves B's worker to A's second slot
  3. workers on host A alone (the same two workers, both on host A now)

For phases 1 and 3 it prints photos/s and where the CPU went, per host and per process (JVM
workers, each Python spout/bolt, Postgres, Redis, the blob service, Storm's daemons), from
/proc (bench/host_cpu.py). It ends with the line for phase 2

    hosts 2, tagged N/N, lost 0, duplicated 0, on host B K

Exit status 1 if a photo was lost or duplicated or host B processed nothing. Everything it
created (namespaces, veth pair, daemons and every process left in the namespaces, run
directories) is removed on the way out, also on failure, Ctrl-C or SIGTERM. Needs root (ip
netns). On one physical machine two hosts share the same cores, so they cannot be faster than
one: the CPU table says what the second host costs.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from autotag.config import Settings, load_settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import host_cpu  # noqa: E402

NET = "10.231.0"
ADDR_A, ADDR_B = f"{NET}.1", f"{NET}.2"
CLONE_NEWNET = 0x40000000
TOPOLOGY = "autotagger"


@dataclass
class Run:
    """What one two-host run created, so that cleanup removes exactly that."""

    prefix: str
    work: Path
    namespaces: list[str] = field(default_factory=list)
    hosts: list[Settings] = field(default_factory=list)

    @property
    def ns_a(self) -> str:
        return f"{self.prefix}a"

    @property
    def ns_b(self) -> str:
        return f"{self.prefix}b"


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


def make_hosts(run: Run) -> None:
    """Two namespaces, a veth pair between them, loopback up in each."""
    for ns in (run.ns_a, run.ns_b):
        _sh("ip", "netns", "add", ns)
        run.namespaces.append(ns)
    va, vb = f"{run.prefix}va", f"{run.prefix}vb"
    _sh("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
    _sh("ip", "link", "set", va, "netns", run.ns_a)
    _sh("ip", "link", "set", vb, "netns", run.ns_b)
    for ns, dev, addr in ((run.ns_a, va, ADDR_A), (run.ns_b, vb, ADDR_B)):
        _sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        _sh("ip", "-n", ns, "link", "set", dev, "up")
        _sh("ip", "-n", ns, "link", "set", "lo", "up")


_original_ns: list[int] = []  # an open fd on the namespace this process started in


def enter_namespace(name: str | None) -> None:
    """Move this (single-threaded) process' network into namespace ``name`` (None = back to
    the one it started in), so its own clients talk to host A as host A's tools would."""
    if not _original_ns:
        _original_ns.append(os.open("/proc/self/ns/net", os.O_RDONLY))
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY) if name else _original_ns[0]
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns to {name or 'the original namespace'}: {os.strerror(err)}")
    finally:
        if name:
            os.close(fd)


def host_env(run: Run, name: str, *, bind: str, ports: str) -> dict[str, str]:
    run_dir = run.work / name
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o755)  # Postgres (the postgres user) must reach its data under it
    env = dict(os.environ)
    env.update(
        {
            "AUTOTAG_RUN_DIR": str(run_dir),
            "AUTOTAG_MODELS_DIR": str(run.work / "models"),
            "AUTOTAG_PORT_OFFSET": "0",  # each host has its own network: no clash possible
            "AUTOTAG_HOST": ADDR_A,
            "AUTOTAG_BIND_HOST": bind,
            "AUTOTAG_CLUSTER_NETWORK": f"{NET}.0/24",
            "AUTOTAG_WORKER_PORTS": ports,
        }
    )
    return env


def autotag(env: dict[str, str], *args: str, ns: str | None = None, timeout: float = 600) -> str:
    exe = str(Path(sys.executable).parent / "autotag")
    cmd = (["ip", "netns", "exec", ns] if ns else []) + [exe, *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"autotag {' '.join(args)} failed: {(proc.stdout + proc.stderr)[-800:]}")
    return proc.stdout


def executors(s: Settings) -> list[tuple[str, bool]]:
    """(host, reporting) of each of the topology's executors; reporting = its stats reached
    Nimbus with the worker's heartbeats (the worker is running, not merely assigned)."""
    from autotag.ops.nimbus import NimbusClient

    try:
        found = NimbusClient(s).topology_info(TOPOLOGY).executors or []
    except Exception:  # noqa: BLE001 - not scheduled yet
        return []
    return [(ex.host, bool(ex.stats)) for ex in found if not ex.component_id.startswith("__")]


def running_on(s: Settings, hosts: set[str]) -> bool:
    """Every executor is on one of ``hosts``, all of them are reporting, and every host of
    ``hosts`` has some."""
    found = executors(s)
    return (
        bool(found) and all(h in hosts and ok for h, ok in found) and {h for h, _ in found} == hosts
    )


def blob_reads(s: Settings, host: str, ids: set[str]) -> list[str]:
    """Photos (one entry per read) a host's workers read from the blob service, from its
    access log on host A: every photo host B processes is read there."""
    try:
        lines = (s.log_dir / "blobs.log").read_text().splitlines()
    except FileNotFoundError:
        return []
    pattern = re.compile(rf' {re.escape(host)} "GET /blobs/([0-9a-f]{{64}})\S* HTTP/1.1" 200 ')
    return [m.group(1) for m in map(pattern.search, lines) if m and m.group(1) in ids]


def _count(s: Settings, ids: list[str], *statuses: str) -> int:
    from autotag.storage import database

    with database.connect(s.services, migrate_schema=False, connect_timeout=3) as conn:
        return conn.execute(
            "SELECT count(*) FROM photos WHERE photo_id = ANY(%s) AND status = ANY(%s)",
            (ids, list(statuses)),
        ).fetchone()[0]


def _upload_paced(s: Settings, paths: list[Path], rate: float, ids: list[str], intake) -> None:
    """Upload on host A at ``rate`` photos/s (so that host B dies mid-run), ids into ``ids``."""
    up = intake.Intake(s.services, s.queue, s.limits, s.video, s.blob_dir)
    for p in paths:
        t_next = time.monotonic() + 1.0 / rate
        (rec,) = intake.upload([str(p)], up)
        if rec.photo_id:
            ids.append(rec.photo_id)
        time.sleep(max(0.0, t_next - time.monotonic()))


@dataclass
class Phase:
    """One timed drain of the same photos: its photos/s and where the CPU went."""

    label: str
    photos: int
    secs: float
    on_b: int
    cpu: dict[tuple[str, str], float]
    machine_busy: float

    @property
    def rate(self) -> float:
        return self.photos / self.secs


def timed_drain(s: Settings, ids: list[str], label: str, timeout: float, hosts: dict) -> Phase:
    """Re-queue ``ids`` (all stored before) at once and time until every one is stored again."""
    from autotag.pipeline.requeue import requeue

    assert _count(s, ids, "queued") == 0, "photos still queued from before"
    reads_before = len(blob_reads(s, ADDR_B, set(ids)))
    start = host_cpu.snapshot()
    t0 = time.monotonic()
    queued = requeue(
        s.services, s.queue, s.blob_dir, ids, statuses=("tagged", "failed"), include_tagged=True
    )
    assert queued == len(ids), f"re-queued {queued} of {len(ids)}"
    while _count(s, ids, "queued") > 0:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{label}: photos still queued after {timeout:.0f}s")
        time.sleep(0.2)
    secs = time.monotonic() - t0
    cpu, busy = host_cpu.cpu_by_host_and_kind(start, host_cpu.snapshot(), hosts)
    on_b = len(blob_reads(s, ADDR_B, set(ids))) - reads_before
    return Phase(label, len(ids), secs, on_b=on_b, cpu=dict(cpu), machine_busy=busy)


def print_phases(phases: list[Phase], log=print) -> None:
    """Side by side: photos/s, then CPU seconds per host and process (ms of CPU per photo)."""
    log("")
    log(
        f"photos/s, the same {phases[0].photos} photos re-queued at once and drained; same topology"
    )
    log("and parallelism (topology.workers 2, the topology's executors) in both:")
    for ph in phases:
        b = f"; host B read {ph.on_b}" if ph.on_b else ""
        log(f"  {ph.label:<26} {ph.rate:8.2f} photos/s  ({ph.photos} in {ph.secs:.1f} s{b})")
    if len(phases) == 2:
        log(f"  {'ratio both / A alone':<26} {phases[0].rate / phases[1].rate:8.2f}")
    log("")
    log("where the time goes: CPU seconds in each phase (ms of CPU per photo), from /proc;")
    log(f"this machine has {os.cpu_count()} cores, shared by both simulated hosts")
    rows = sorted({k for ph in phases for k in ph.cpu}, key=lambda k: (k[0] == "-", k))
    width = 28
    log(f"  {'host':<5}{'process':<30}" + "".join(f"{ph.label:>{width}}" for ph in phases))

    def cell(secs: float, n: int) -> str:
        text = f"{secs:.1f} s ({secs / n * 1000:.1f} ms)" if secs >= 0.05 else "-"
        return f"{text:>{width}}"

    for host, kind in rows:
        log(
            f"  {host:<5}{kind:<30}"
            + "".join(cell(ph.cpu.get((host, kind), 0.0), ph.photos) for ph in phases)
        )
    for name, value in (
        ("all of the above", lambda ph: sum(ph.cpu.values())),
        ("machine busy (all users)", lambda ph: ph.machine_busy),
        ("rest of the machine", lambda ph: max(0.0, ph.machine_busy - sum(ph.cpu.values()))),
    ):
        log(f"  {'':<5}{name:<30}" + "".join(cell(value(ph), ph.photos) for ph in phases))
    log(f"  {'':<5}{'wall time':<30}" + "".join(f"{f'{ph.secs:.1f} s':>{width}}" for ph in phases))


def two_hosts(
    photos: int,
    bulk: int,
    work: Path,
    prefix: str,
    timeout: float,
    rate: float = 5.0,
    log=print,
) -> dict[str, int]:
    """One full run (see the module docstring); returns the figures of the final line."""
    from autotag.learning import samples
    from autotag.ops.daemons.base import wait_for
    from autotag.ops.daemons.storm import SupervisorDaemon
    from autotag.ops.nimbus import NimbusClient
    from autotag.pipeline import intake
    from autotag.storage import database
    from autotag.vision.bundle import set_active
    from autotag.vision.features import onnx_model_path
    from autotag.vision.imagenet import build_default_bundle

    run = Run(prefix, work)
    env_a = host_env(run, "host-a", bind=ADDR_A, ports="6700 6701")
    env_b = host_env(run, "host-b", bind=ADDR_B, ports="6700")
    s_a, s_b = load_settings(env_a), load_settings(env_b)
    run.hosts = [s_a, s_b]
    hosts = {str(s_a.run_dir): "A", str(s_b.run_dir): "B"}
    s_a.models_dir.mkdir(parents=True, exist_ok=True)
    set_active(
        s_a.models_dir, build_default_bundle(s_a.models_dir, onnx_model_path(s_a.model_dirs))
    )
    all_paths = samples.make_distinct_photos(bulk + photos, work / "photos", long_side=320, seed=7)
    bulk_paths, paths = all_paths[:bulk], all_paths[bulk:]
    try:
        make_hosts(run)
        t0 = time.monotonic()
        enter_namespace(run.ns_a)
        autotag(
            env_a,
            "cluster",
            "up",
            "zookeeper",
            "nimbus",
            "supervisor",
            "redis",
            "postgres",
            "blobs",
        )
        log(f"host A up ({ADDR_A}) in {time.monotonic() - t0:.0f}s")
        # Host B's copy of A's secrets/ (the blob token, the Redis and Postgres passwords), as an
        # operator would copy it.
        shutil.copytree(s_a.secrets_dir, s_b.secrets_dir, dirs_exist_ok=True)
        t0 = time.monotonic()
        autotag(env_b, "cluster", "join", ADDR_A, "--bind", ADDR_B, ns=run.ns_b)
        assert wait_for(lambda: len(NimbusClient(s_a).cluster_info().supervisors) == 2, 120)
        log(f"host B joined ({ADDR_B}) in {time.monotonic() - t0:.0f}s")
        with database.connect(s_a.services):
            pass  # schema migrated
        autotag(
            env_a,
            "submit",
            TOPOLOGY,
            "-o",
            "topology.workers=2",
            # Plain shuffle: Storm 2's load-aware shuffle would keep tuples on the spout's host.
            "-o",
            "topology.disable.loadaware.messaging=true",
            "-o",
            "topology.message.timeout.secs=30",
        )
        assert wait_for(lambda: running_on(s_a, {ADDR_A, ADDR_B}), 300, 2), executors(s_a)
        log("autotagger running: workers on both hosts, every executor reporting")

        # Phase 1: the bulk photos, uploaded once (warming every worker), then timed.
        up = intake.Intake(s_a.services, s_a.queue, s_a.limits, s_a.video, s_a.blob_dir)
        recs = intake.upload([str(p) for p in bulk_paths], up)
        bulk_ids = [r.photo_id for r in recs if r.photo_id]
        assert len(bulk_ids) == bulk, [r for r in recs if not r.photo_id][:3]
        assert wait_for(lambda: _count(s_a, bulk_ids, "queued") == 0, timeout, 1)
        log(f"{bulk} photos uploaded and tagged once (warm-up)")
        phases = [timed_drain(s_a, bulk_ids, "workers on both hosts", timeout, hosts)]
        log(f"  both hosts: {phases[0].rate:.2f} photos/s")

        # Phase 2: host B killed mid-run.
        ids: list[str] = []
        uploader = threading.Thread(
            target=_upload_paced, args=(s_a, paths, rate, ids, intake), daemon=True
        )
        uploader.start()

        def on_b() -> int:
            """Photos host B's workers processed: each one read from A's blob service."""
            return len(set(blob_reads(s_a, ADDR_B, set(ids))))

        n = len(paths)
        deadline = time.monotonic() + timeout
        last_log = 0.0
        done = 0
        while time.monotonic() < deadline:
            done = _count(s_a, list(ids), "tagged", "failed")
            if time.monotonic() - last_log >= 10:
                last_log = time.monotonic()
                log(f"  {done}/{n} stored; host B has read {on_b()}")
            if (done >= n / 3 and on_b() > 0) or done >= n:
                break
            time.sleep(1)
        log(f"before the kill: host B's workers read {on_b()} photos from host A's blob service")
        SupervisorDaemon(s_b).kill()  # SIGKILL: B's Supervisor, workers and Python bolts
        log(f"host B's Supervisor and workers killed (SIGKILL), {n - done} photos to go")
        uploader.join()
        log(f"uploaded {len(ids)} photos on host A at {rate:g}/s")
        while time.monotonic() < deadline and _count(s_a, ids, "queued") > 0:
            time.sleep(2)
        tagged, failed = _count(s_a, ids, "tagged"), _count(s_a, ids, "failed")
        with database.connect(s_a.services) as conn:
            dup = conn.execute(
                "SELECT count(*) - count(DISTINCT (photo_id, model_version, tag)) FROM tags "
                "WHERE photo_id = ANY(%s)",
                (ids,),
            ).fetchone()[0]
        log(
            f"  tuples by host: B read and tagged {on_b()} photos (from A's blob service); A "
            "tagged the rest, and replayed what B had in flight when it died"
        )
        result = {
            "photos": len(ids),
            "tagged": tagged,
            "failed": failed,
            "lost": len(ids) - tagged - failed,
            "duplicated": dup,
            "on_b": on_b(),
        }

        # Phase 3: the same photos with both workers on host A.
        if wait_for(lambda: running_on(s_a, {ADDR_A}), 300, 2):
            log("B's worker moved to host A's second slot; every executor reporting")
            phases.append(timed_drain(s_a, bulk_ids, "workers on host A alone", timeout, hosts))
        else:
            log(f"host A alone: not measured, the executors never all ran on A: {executors(s_a)}")
        print_phases(phases, log)
        return result
    finally:
        cleanup(run)


def cleanup(run: Run) -> None:
    """Stop every daemon of both hosts (by their pid files), then SIGKILL any process still
    in the namespaces (by pid), and delete the namespaces and the veth pair. Ctrl-C and
    SIGTERM are ignored meanwhile, so that a second one cannot leave half of it behind."""
    from autotag.ops import cluster

    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            enter_namespace(None)
        except OSError:
            pass
        for s in run.hosts:
            try:
                cluster.down(s, progress=lambda _m: None)
            except Exception as exc:  # noqa: BLE001 - keep cleaning up the rest
                print(f"cleanup: stopping {s.run_dir}: {exc}", file=sys.stderr)
        for ns in run.namespaces:
            out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in {int(x) for x in out.stdout.split()} - {os.getpid()}:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for ns in run.namespaces:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        # A veth end still in this namespace (interrupted before it was moved); gone otherwise.
        for dev in (f"{run.prefix}va", f"{run.prefix}vb"):
            subprocess.run(["ip", "link", "delete", dev], capture_output=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=500, help="Photos of the kill-host-B run.")
    ap.add_argument(
        "--bulk", type=int, default=300, help="Photos timed on both hosts and on host A alone."
    )
    ap.add_argument("--timeout", type=float, default=1800, help="Seconds for the photos to drain.")
    ap.add_argument("--rate", type=float, default=5.0, help="Uploads per second on host A.")
    ap.add_argument("--keep", action="store_true", help="Keep the run directories (logs).")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("two_hosts: needs root (ip netns add)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the cleanup runs
    work = Path(tempfile.mkdtemp(prefix="autotag-2hosts-"))
    work.chmod(0o755)
    try:
        r = two_hosts(
            args.photos, args.bulk, work, f"at{os.getpid() % 100000}", args.timeout, args.rate
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"run directories kept under {work}")
    print(
        f"hosts 2, tagged {r['tagged']}/{r['photos']}, lost {r['lost']}, "
        f"duplicated {r['duplicated']}, on host B {r['on_b']}",
        flush=True,
    )
    if r["lost"] or r["duplicated"] or not r["on_b"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
