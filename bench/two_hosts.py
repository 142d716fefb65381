"""Two simulated hosts on one machine: the autotagger with a worker on each, host B killed.

    sudo virtualenvs/autotag/bin/python bench/two_hosts.py --photos 500

Creates two network namespaces joined by a veth pair (10.231.0.1 = host A, 10.231.0.2 =
host B; traffic only between them), then runs:

  host A: ZooKeeper, Nimbus, Supervisor (2 slots), Redis, Postgres, the blob service
          (`autotag cluster up ...` inside namespace A, every server bound to 10.231.0.1)
  host B: a Supervisor only (`autotag cluster join 10.231.0.1 --bind 10.231.0.2`), one slot,
          reading photos from A's blob service with the token copied from A's secrets/

It submits the autotagger with `topology.workers: 2` (one worker per host), uploads the
photos on host A at --rate photos/s, counts the photos host B's workers processed (each one
read over HTTP from A's blob service, whose access log names the reading host), SIGKILLs host
B's Supervisor and workers once a third of the photos are stored and host B has processed
some, waits until every photo is stored, and ends with

    hosts 2, tagged N/N, lost 0, duplicated 0, on host B K

Exit status 1 if a photo was lost or duplicated or host B processed nothing. Everything it
created (namespaces, veth pair, daemons, run directories) is removed on the way out, also on
failure or SIGTERM. Needs root (ip netns). On one physical machine two hosts do not scale;
the point is that the cluster spans hosts and survives losing one.
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


def hosts_reporting(s: Settings) -> set[str]:
    """Hosts whose autotag executors report to Nimbus (their workers are up and running)."""
    from autotag.ops.nimbus import NimbusClient

    try:
        executors = NimbusClient(s).topology_info(TOPOLOGY).executors or []
    except Exception:  # noqa: BLE001 - not scheduled yet
        return set()
    return {ex.host for ex in executors if ex.component_id == "autotag" and ex.stats}


def photos_read_by(s: Settings, host: str) -> set[str]:
    """Photos a host's workers read from the blob service: its access log on host A."""
    try:
        lines = (s.log_dir / "blobs.log").read_text().splitlines()
    except FileNotFoundError:
        return set()
    out = set()
    for line in lines:
        match = re.search(
            rf' {re.escape(host)} "GET /blobs/([0-9a-f]{{64}})\S* HTTP/1.1" 200 ', line
        )
        if match:
            out.add(match.group(1))
    return out


def _count(s: Settings, ids: list[str], status: str) -> int:
    from autotag.storage import database

    with database.connect(s, migrate_schema=False, connect_timeout=3) as conn:
        return conn.execute(
            "SELECT count(*) FROM photos WHERE photo_id = ANY(%s) AND status = %s", (ids, status)
        ).fetchone()[0]


def _upload_paced(s: Settings, paths: list[Path], rate: float, ids: list[str], intake) -> None:
    """Upload on host A at ``rate`` photos/s (so that host B dies mid-run), ids into ``ids``."""
    for p in paths:
        t_next = time.monotonic() + 1.0 / rate
        (rec,) = intake.upload([str(p)], s)
        if rec.photo_id:
            ids.append(rec.photo_id)
        time.sleep(max(0.0, t_next - time.monotonic()))


def two_hosts(
    photos: int, work: Path, prefix: str, timeout: float, rate: float = 5.0, log=print
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
    s_a.models_dir.mkdir(parents=True, exist_ok=True)
    set_active(
        s_a.models_dir, build_default_bundle(s_a.models_dir, onnx_model_path(s_a.model_dirs))
    )
    paths = samples.make_distinct_photos(photos, work / "photos", long_side=320, seed=7)
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
        with database.connect(s_a):
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

        def hosts_running() -> set[str]:
            try:
                return {ex.host for ex in NimbusClient(s_a).topology_info(TOPOLOGY).executors or []}
            except Exception:  # noqa: BLE001 - not scheduled yet
                return set()

        assert wait_for(lambda: {ADDR_A, ADDR_B} <= hosts_running(), 180), hosts_running()
        log("autotagger submitted: workers on both hosts")
        # Executor stats reach Nimbus with the workers' heartbeats: once both hosts' autotag
        # executors report, both workers are running (not merely assigned).
        assert wait_for(lambda: hosts_reporting(s_a) >= {ADDR_A, ADDR_B}, 300, 2), (
            "the workers never reported their executors' stats"
        )
        log("both hosts' workers are running")
        ids: list[str] = []
        uploader = threading.Thread(
            target=_upload_paced, args=(s_a, paths, rate, ids, intake), daemon=True
        )
        uploader.start()

        def on_b() -> int:
            """Photos host B's workers processed: each one read from A's blob service."""
            return len(photos_read_by(s_a, ADDR_B) & set(ids))

        n = len(paths)
        t_start = time.monotonic()
        deadline = t_start + timeout
        t_first: float | None = None
        last_log = 0.0
        while time.monotonic() < deadline:
            done = _count(s_a, list(ids), "tagged") + _count(s_a, list(ids), "failed")
            if done and t_first is None:
                t_first, first = time.monotonic(), done
            if time.monotonic() - last_log >= 10:
                last_log = time.monotonic()
                log(f"  {done}/{n} stored; host B has read {on_b()}")
            if (done >= n / 3 and on_b() > 0) or done >= n:
                break
            time.sleep(1)
        if t_first is not None and done > first:
            speed = (done - first) / max(1e-9, time.monotonic() - t_first)
            log(f"before the kill: {done} stored, {speed:.2f} photos/s on two hosts")
        log(f"before the kill: host B's workers read {on_b()} photos from host A's blob service")
        SupervisorDaemon(s_b).kill()  # SIGKILL: B's Supervisor, workers and Python bolts
        log(f"host B's Supervisor and workers killed (SIGKILL), {n - done} photos to go")
        uploader.join()
        log(f"uploaded {len(ids)} photos on host A at {rate:g}/s")
        while time.monotonic() < deadline and _count(s_a, ids, "queued") > 0:
            time.sleep(2)
        tagged, failed = _count(s_a, ids, "tagged"), _count(s_a, ids, "failed")
        with database.connect(s_a) as conn:
            dup = conn.execute(
                "SELECT count(*) - count(DISTINCT (photo_id, model_version, tag)) FROM tags "
                "WHERE photo_id = ANY(%s)",
                (ids,),
            ).fetchone()[0]
        log(
            f"  tuples by host: B read and tagged {on_b()} photos (from A's blob service); A "
            "tagged the rest, and replayed what B had in flight when it died"
        )
        return {
            "photos": len(ids),
            "tagged": tagged,
            "failed": failed,
            "lost": len(ids) - tagged - failed,
            "duplicated": dup,
            "on_b": on_b(),
        }
    finally:
        cleanup(run, s_a, s_b)


def cleanup(run: Run, *hosts: Settings) -> None:
    """Stop every daemon of both hosts (by their pid files), delete the namespaces."""
    from autotag.ops import cluster

    try:
        enter_namespace(None)
    except OSError:
        pass
    for s in hosts:
        try:
            cluster.down(s, progress=lambda _m: None)
        except Exception as exc:  # noqa: BLE001 - keep cleaning up the rest
            print(f"cleanup: stopping {s.run_dir}: {exc}", file=sys.stderr)
    for ns in run.namespaces:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=500)
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
        r = two_hosts(args.photos, work, f"at{os.getpid() % 100000}", args.timeout, args.rate)
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
