"""The local Storm cluster, driven the way a streamparse user drives it.

Submits a real Python spout → bolt topology with `sparse submit`, watches tuples arrive in
a file the bolt writes (outside Storm), pauses and resumes it through Nimbus, kills it
with `sparse kill`, and checks `sparse list`.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from autotag.config import Settings
from autotag.ops.daemons.base import wait_for
from autotag.ops.nimbus import NimbusClient
from autotag.ops.topology import derived_config, sparse_env
from tests.cli import autotag

pytestmark = pytest.mark.cluster


def _lines(path: Path) -> int:
    try:
        return sum(1 for _ in path.open())
    except FileNotFoundError:
        return 0


def _sparse(s: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sparse", *args, "--config", str(derived_config(s))],
        cwd=s.home,
        env=sparse_env(s),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ui_reports_one_supervisor_with_free_slots(storm_cluster: Settings) -> None:
    s = storm_cluster
    ui = s.services.port(s.services.ui_port)
    url = f"http://{s.services.local_bind_host}:{ui}/api/v1/cluster/summary"
    with urllib.request.urlopen(url, timeout=10) as resp:
        summary = json.loads(resp.read())
    assert summary["supervisors"] == 1
    assert summary["slotsTotal"] == len(s.services.worker_ports)
    assert summary["slotsFree"] >= 1


def test_cluster_status_reports_every_daemon_healthy(storm_cluster: Settings) -> None:
    result = autotag(storm_cluster, "cluster", "status", "--json", env=sparse_env(storm_cluster))
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    for name in ("zookeeper", "nimbus", "supervisor", "ui"):
        assert rows[name]["healthy"], rows[name]
        assert rows[name]["pid"]


def test_submit_flow_deactivate_activate_kill(storm_cluster: Settings) -> None:
    s = storm_cluster
    out = s.run_dir / "smoke" / "smoke.txt"
    out.unlink(missing_ok=True)

    submitted = _sparse(s, "submit", "-n", "smoke")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    listed = _sparse(s, "list")
    assert "smoke" in listed.stdout

    # Tuples flow end to end: the Python bolt writes lines outside Storm.
    assert wait_for(lambda: _lines(out) >= 20, timeout=120), "no tuples reached the bolt"

    # Deactivated: the spout stops emitting, the file stops growing.
    assert autotag(s, "deactivate", "smoke", env=sparse_env(s)).returncode == 0
    assert NimbusClient(s).topology("smoke").status == "INACTIVE"
    time.sleep(3)  # let in-flight tuples land
    paused_at = _lines(out)
    time.sleep(5)
    assert _lines(out) == paused_at, "spout kept emitting while deactivated"

    # Activated: it resumes.
    assert autotag(s, "activate", "smoke", env=sparse_env(s)).returncode == 0
    assert wait_for(lambda: _lines(out) >= paused_at + 20, timeout=60), "spout did not resume"
    assert NimbusClient(s).topology("smoke").status == "ACTIVE"

    # A second submit of the same name is refused with a one-line reason.
    again = autotag(s, "submit", "smoke", env=sparse_env(s))
    assert again.returncode != 0
    assert "already running" in again.stderr and "Traceback" not in again.stderr

    # Killed: `sparse list` no longer shows it.
    killed = _sparse(s, "kill", "-n", "smoke", "--wait", "0")
    assert killed.returncode == 0, killed.stderr
    assert wait_for(lambda: "smoke" not in _sparse(s, "list").stdout, timeout=90)


def test_unknown_topology_is_a_one_line_error(storm_cluster: Settings) -> None:
    for verb in ("activate", "deactivate", "kill"):
        result = autotag(storm_cluster, verb, "no-such-topology", env=sparse_env(storm_cluster))
        assert result.returncode == 1
        assert result.stderr.strip() == "autotag: no running topology named 'no-such-topology'"
