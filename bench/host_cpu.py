"""Where the CPU goes during a run, per simulated host and per kind of process.

Read from the kernel's own counters in /proc (utime + stime of every process, plus what its
reaped children used) at the start and the end of a phase: no profiler, nothing added to
the processes measured. A process belongs to the host whose run directory is in its
``AUTOTAG_RUN_DIR`` (every daemon, worker and bolt inherits it) or, failing that, in its
command line, or to its parent's host (Postgres' backends). What autotag's processes did
not use of the machine's busy time is shown as "rest of the machine": other users' work.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
THIS_BENCH = "this bench (uploads, polling)"


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    ticks: int  # utime + stime + cutime + cstime
    cmdline: tuple[str, ...]
    run_dir: str


def _read_proc(pid: int) -> Proc | None:
    base = Path(f"/proc/{pid}")
    try:
        stat = (base / "stat").read_text()
        cmdline = tuple(
            a.decode(errors="replace") for a in (base / "cmdline").read_bytes().split(b"\0") if a
        )
        environ = (base / "environ").read_bytes().split(b"\0")
    except OSError:
        return None  # gone, or a kernel thread
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    run_dir = next(
        (
            e.decode(errors="replace").split("=", 1)[1]
            for e in environ
            if e.startswith(b"AUTOTAG_RUN_DIR=")
        ),
        "",
    )
    return Proc(pid, int(fields[1]), comm, ticks, cmdline, run_dir)


def processes() -> dict[int, Proc]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            p = _read_proc(int(name))
            if p is not None:
                out[p.pid] = p
    return out


def machine_busy_ticks() -> int:
    """Busy time of all CPUs (user + nice + system + irq + softirq + steal), in ticks."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq + steal


def kind(p: Proc) -> str:
    """What a process is, in the terms of the topology and its services."""
    cmd = " ".join(p.cmdline)
    if "org.apache.storm.daemon.worker.Worker" in cmd or "org.apache.storm.LogWriter" in cmd:
        return "JVM workers"
    if "streamparse_run" in cmd:
        return "Python " + p.cmdline[-1].rsplit(".", 1)[-1]  # the spout's or bolt's class
    if "ZooKeeperServerMain" in cmd:
        return "ZooKeeper"
    if "daemon.nimbus.Nimbus" in cmd:
        return "Nimbus"
    if "daemon.supervisor.Supervisor" in cmd:
        return "Supervisor"
    if p.comm == "redis-server":
        return "Redis"
    if p.comm == "postgres" or cmd.startswith("postgres:") or "bin/postgres" in cmd:
        return "Postgres"
    if "autotag.web.blob_service" in cmd:
        return "blob service"
    return "other (" + p.comm + ")"


@dataclass
class Snapshot:
    procs: dict[int, Proc]
    busy: int


def snapshot() -> Snapshot:
    return Snapshot(processes(), machine_busy_ticks())


def _host_of(p: Proc, procs: dict[int, Proc], hosts: dict[str, str]) -> str | None:
    """The host a process belongs to (hosts: run dir -> host name), walking up its parents."""
    seen = 0
    while p is not None and seen < 64:
        for run_dir, host in hosts.items():
            if p.run_dir == run_dir or any(run_dir + "/" in a for a in p.cmdline):
                return host
        p = procs.get(p.ppid)  # type: ignore[assignment]
        seen += 1
    return None


def cpu_by_host_and_kind(
    start: Snapshot, end: Snapshot, hosts: dict[str, str]
) -> tuple[Counter[tuple[str, str]], float]:
    """CPU seconds used between two snapshots: {(host, kind): seconds}, and the machine's
    busy seconds in that time. A process that started in between counts from zero; one
    that ended counts in its parent's reaped-children time where the parent is ours."""
    used: Counter[tuple[str, str]] = Counter()
    me = os.getpid()
    for pid, p in end.procs.items():
        before = start.procs.get(pid)
        ticks = p.ticks - (before.ticks if before and before.comm == p.comm else 0)
        if ticks <= 0:
            continue
        if pid == me:
            used[("-", THIS_BENCH)] += ticks / TICK
            continue
        host = _host_of(p, end.procs, hosts)
        if host is not None:
            used[(host, kind(p))] += ticks / TICK
    return used, (end.busy - start.busy) / TICK
