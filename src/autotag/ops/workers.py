"""The Storm worker processes of this run directory, and the orphans among them.

A Supervisor that kills a worker before the worker has written its pid file loses track of
the process: the Supervisor forgets the worker (it deletes its ``workers-users`` entry and
its directory, which the still-running worker writes again), but the JVM and its Python
components keep running beside the worker that replaced it, reading the same queue and
using the same cores. It happens when Nimbus, just restarted, finds a persisted topology's
old heartbeats stale and reassigns it while the Supervisor is still starting its worker. A
worker process the Supervisor no longer lists under ``workers-users`` is such an orphan;
nothing in Storm will ever stop it, so autotag does.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

WORKER_MAIN = "org.apache.storm.daemon.worker.Worker"


@dataclass(frozen=True)
class WorkerProcess:
    pid: int
    worker_id: str
    port: str
    topology_id: str = ""


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode("utf-8", "replace").split("\0")


def _prop(argv: list[str], name: str) -> str:
    prefix = f"-D{name}="
    return next((a[len(prefix) :] for a in argv if a.startswith(prefix)), "")


def worker_processes(storm_local: Path) -> list[WorkerProcess]:
    """Worker JVMs (and their log-writer parents) launched for this storm.local.dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = _cmdline(int(entry.name))
        if WORKER_MAIN not in argv or _prop(argv, "storm.local.dir") != str(storm_local):
            continue
        found.append(
            WorkerProcess(
                int(entry.name),
                _prop(argv, "worker.id"),
                _prop(argv, "worker.port"),
                _prop(argv, "storm.id"),
            )
        )
    return found


def running_ports(storm_local: Path, topology_id: str) -> set[int]:
    """Slot ports on which a worker JVM of this topology runs: its Supervisor has finished
    localizing the topology there (it launches the JVM only after)."""
    return {
        int(w.port)
        for w in worker_processes(storm_local)
        if w.topology_id == topology_id and w.port.isdigit()
    }


def orphans(storm_local: Path) -> list[WorkerProcess]:
    """Workers the Supervisor has already cleaned up after (it lists each worker it runs)."""
    listed = storm_local / "workers-users"
    return [w for w in worker_processes(storm_local) if not (listed / w.worker_id).is_file()]


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids += [int(k) for k in task.read_text().split()]
        except OSError:
            continue
    return kids


def kill_orphans(storm_local: Path) -> list[WorkerProcess]:
    """SIGKILL every orphan worker with its components (spout and bolt subprocesses)."""
    killed = orphans(storm_local)
    for w in killed:
        doomed, stack = [], [w.pid]
        while stack:
            pid = stack.pop()
            doomed.append(pid)
            stack += _children(pid)
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return killed
