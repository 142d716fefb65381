"""`autotag kill` and `autotag submit --force` the moment a topology reaches the Supervisor.

Storm 2.8.3's Supervisor halts when a topology is killed while it is still localizing it
(fetching its jar and conf), and from then on no topology gets a worker. These commands
wait for the worker first (autotag.ops.kill_guard), so the same Supervisor keeps running
and the next submit works. The test kills as soon as the Supervisor has logged the
assignment: that is when a kill falls in the localization window.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from autotag.config import Settings
from autotag.ops import workers
from autotag.ops.daemons.base import wait_for
from autotag.ops.daemons.storm import SupervisorDaemon
from autotag.ops.nimbus import NimbusClient
from autotag.ops.topology import derived_config, sparse_env
from tests.cli import autotag

pytestmark = pytest.mark.cluster

NAME = "smoke"
KILLS = 3


def _running(s: Settings) -> set[str]:
    return {t.name for t in NimbusClient(s).topologies()}


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _new_id(s: Settings, old: str | None = None) -> str:
    """The id of the running NAME once it is not OLD."""
    ids: list[str] = []

    def seen() -> bool:
        ids[:] = [t.id for t in NimbusClient(s).topologies() if t.name == NAME]
        return bool(ids) and ids[0] != old

    assert wait_for(seen, 60, interval=0.1), f"no new {NAME} after {old}"
    return ids[0]


def _sparse_submit(s: Settings) -> str:
    """`sparse submit -n NAME`, as a streamparse user runs it; the new topology's id."""
    sparse = subprocess.run(
        ["sparse", "submit", "-n", NAME, "--config", str(derived_config(s))],
        cwd=s.home,
        env=sparse_env(s),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sparse.returncode == 0, sparse.stdout + sparse.stderr
    return _new_id(s)


def _assigned_here(log: Path, offset: int, topology_id: str) -> bool:
    """Once the Supervisor logs that Nimbus gave it TOPOLOGY_ID (it starts localizing it
    now); False if it does not within a minute."""

    def said() -> bool:
        with open(log, "rb") as fh:
            fh.seek(offset)
            return any(
                b"Got an assignments" in line and topology_id.encode() in line for line in fh
            )

    return wait_for(said, 60, interval=0.05)


def test_kill_and_force_at_assignment_keep_the_supervisor_alive(storm_cluster: Settings) -> None:
    s = storm_cluster
    env = sparse_env(s)
    supervisor = SupervisorDaemon(s)
    pid = supervisor.pid()
    assert pid is not None
    log = supervisor.storm_log
    log_from = _log_size(log)

    # Submitted as a streamparse user does, and killed the moment the Supervisor has it
    # (with a free slot it is localizing the topology for the next second or so), a few times:
    # an unguarded kill halts the Supervisor only when it lands at the wrong instant.
    # The last time with Storm's own `storm kill`, which autotag's `storm` guards as well.
    killed_ids = []
    for attempt in range(KILLS):
        killed_ids.append(_sparse_submit(s))
        assert _assigned_here(log, log_from, killed_ids[-1]), supervisor.status().reason
        if attempt < KILLS - 1:
            killed = autotag(s, "kill", NAME, env=env)
            assert killed.stdout.strip() == f"{NAME}: killed", killed.stderr
        else:
            killed = subprocess.run(
                [str(s.venv / "bin" / "storm"), "kill", NAME, "-w", "0"],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
        assert killed.returncode == 0, killed.stdout + killed.stderr
        assert wait_for(lambda: NAME not in _running(s), 60), _running(s)

    # Submitted again, and replaced at once with `submit --force`.
    second = _sparse_submit(s)
    assert _assigned_here(log, log_from, second), supervisor.status().reason
    replaced = autotag(s, "submit", NAME, "--force", env=env)
    assert replaced.returncode == 0, replaced.stderr
    third = _new_id(s, second)

    # The cluster still works: the replacement gets a running worker here...
    assert wait_for(lambda: bool(workers.running_ports(s.storm_local_dir, third)), 120), (
        f"no worker for {third}: supervisor {supervisor.status().reason}"
    )
    for gone in (*killed_ids, second):
        assert not workers.running_ports(s.storm_local_dir, gone), gone

    # ...from the same Supervisor, which logged no halt and which `cluster status` calls healthy.
    assert supervisor.pid() == pid
    with open(log, "rb") as fh:
        fh.seek(log_from)
        assert b"Halting process" not in fh.read()
    status = autotag(s, "cluster", "status", "--json", env=env)
    rows = {r["name"]: r for r in json.loads(status.stdout)}
    assert rows["supervisor"]["healthy"] and rows["supervisor"]["pid"] == pid, rows["supervisor"]

    started = time.monotonic()
    done = autotag(s, "kill", NAME, env=env)
    assert done.returncode == 0, done.stderr
    assert "waiting for" not in done.stderr  # its worker runs: nothing to wait for
    assert time.monotonic() - started < 30
    assert wait_for(lambda: NAME not in _running(s), 60), _running(s)
