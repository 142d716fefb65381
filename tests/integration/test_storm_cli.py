"""Storm's own command line (`storm list`, `storm deactivate NAME`...), as a Storm user types
it, against the test cluster: the `storm` on the virtualenv's PATH runs storm-core's classes."""

from __future__ import annotations

import subprocess

import pytest

from autotag.config import Settings
from autotag.ops.daemons.base import wait_for
from autotag.ops.nimbus import NimbusClient
from autotag.ops.topology import sparse_env

pytestmark = pytest.mark.cluster


def _storm(s: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(s.venv / "bin" / "storm"), *args],
        env=sparse_env(s),
        capture_output=True,
        text=True,
        timeout=180,
    )


def _status(s: Settings) -> str:
    return NimbusClient(s).topology("autotagger").status


def test_storm_version_names_the_cluster_version(test_settings: Settings) -> None:
    out = _storm(test_settings, "version")
    assert out.returncode == 0, out.stderr
    assert f"Storm {test_settings.storm.storm_version}" in out.stdout


def test_storm_list_deactivate_activate(autotagger: Settings) -> None:
    s = autotagger
    listed = _storm(s, "list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    row = [ln for ln in listed.stdout.splitlines() if ln.startswith("autotagger")]
    assert row and "ACTIVE" in row[0], listed.stdout

    paused = _storm(s, "deactivate", "autotagger")
    assert paused.returncode == 0, paused.stdout + paused.stderr
    assert wait_for(lambda: _status(s) == "INACTIVE", 30), _status(s)
    assert "INACTIVE" in _storm(s, "list").stdout

    resumed = _storm(s, "activate", "autotagger")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert wait_for(lambda: _status(s) == "ACTIVE", 30), _status(s)


def test_storm_unknown_command_is_a_one_line_reason(test_settings: Settings) -> None:
    out = _storm(test_settings, "frobnicate")
    assert out.returncode == 2
    assert "unknown storm command 'frobnicate'" in out.stderr.splitlines()[0]


def test_storm_on_a_missing_topology_fails(storm_cluster: Settings) -> None:
    out = _storm(storm_cluster, "deactivate", "no-such-topology")
    assert out.returncode != 0
