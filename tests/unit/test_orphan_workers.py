"""Orphaned Storm workers are found by what the Supervisor lists, and stopped with their
components; listed workers and other run directories' workers are left alone."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from autotag.ops import workers

# A stand-in worker JVM: a process whose command line is a worker's, with one child process
# (as a worker has its spout and bolt subprocesses).
FAKE_WORKER = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "time.sleep(60)\n"
)


def _start(storm_local: Path, worker_id: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            FAKE_WORKER,
            f"-Dstorm.local.dir={storm_local}",
            f"-Dworker.id={worker_id}",
            "-Dworker.port=6700",
            workers.WORKER_MAIN,
        ]
    )


def _children(pid: int) -> list[int]:
    out = []
    for f in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(p) for p in f.read_text().split()]
    return out


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """Dead (a zombie waiting for init counts) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_only_unlisted_workers_of_this_run_dir_are_orphans(tmp_path):
    mine, other = tmp_path / "storm-local", tmp_path / "other"
    (mine / "workers-users").mkdir(parents=True)
    (mine / "workers-users" / "kept").write_text("root")
    procs = [_start(mine, "kept"), _start(mine, "lost"), _start(other, "lost")]
    try:
        deadline = time.monotonic() + 10
        while len(workers.worker_processes(mine)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {w.worker_id for w in workers.worker_processes(mine)} == {"kept", "lost"}
        assert [w.pid for w in workers.orphans(mine)] == [procs[1].pid]

        while not _children(procs[1].pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = _children(procs[1].pid)
        assert child, "the fake worker's component did not start"

        killed = workers.kill_orphans(mine)
        assert [w.pid for w in killed] == [procs[1].pid]
        assert procs[1].wait(timeout=10) == -9
        assert _gone(child[0]), "the orphan's component survived it"
        assert procs[0].poll() is None and procs[2].poll() is None
        assert workers.orphans(mine) == []
    finally:
        for p in procs:
            for c in _children(p.pid) if p.poll() is None else []:
                subprocess.run(["kill", "-9", str(c)], check=False)
            p.kill()
            p.wait()
