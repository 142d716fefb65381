"""Multi-host addressing: what a host binds, advertises and connects to, and the bind shim
that turns Storm's wildcard binds into the host's own address (never 0.0.0.0)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from autotag.config import load_settings
from autotag.errors import AutotagError, ServiceError
from autotag.ops import cluster, storm_cli
from autotag.ops.daemons.storm import storm_yaml
from autotag.ops.daemons.storm_home import ensure_loopback_shim


def _settings(tmp_path: Path, **env: str):
    return load_settings({"AUTOTAG_RUN_DIR": str(tmp_path), **env})


def test_one_machine_defaults_bind_and_advertise_loopback(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    assert (s.services.listen_host, s.services.local_hostname, s.services.blob_url) == (
        "127.0.0.1",
        "127.0.0.1",
        "",
    )
    assert '"storm.local.hostname": "127.0.0.1"' in storm_yaml(s)


def test_joining_host_connects_to_the_first_and_binds_its_own(tmp_path: Path) -> None:
    s = cluster.joining_settings(_settings(tmp_path), "10.20.0.1", "10.20.0.2")
    assert s.services.host == "10.20.0.1"  # ZooKeeper, Nimbus, Redis, Postgres
    assert s.services.listen_host == "10.20.0.2"
    assert s.services.local_hostname == "10.20.0.2"
    assert s.services.blob_url == f"http://10.20.0.1:{s.services.port(s.services.blob_port)}"
    conf = storm_yaml(s)
    assert '"storm.local.hostname": "10.20.0.2"' in conf
    assert '"nimbus.seeds": [\n    "10.20.0.1"\n  ]' in conf
    assert s.services.postgres_address == "10.20.0.1"


def test_cluster_services_bind_the_host_address_the_rest_loopback(tmp_path: Path) -> None:
    """On a cluster host, what other hosts reach binds the host's own address; the web page
    and the Storm UI, for this host's users only, stay on loopback."""
    s = _settings(tmp_path, AUTOTAG_HOST="10.20.0.1", AUTOTAG_BIND_HOST="10.20.0.1")
    bound = {d.name: d.address for d in cluster.daemons(s)}
    assert bound == {
        "zookeeper": "10.20.0.1",
        "nimbus": "10.20.0.1",
        "supervisor": "10.20.0.1",
        "redis": "10.20.0.1",
        "postgres": "10.20.0.1",
        "blobs": "10.20.0.1",
        "ui": "127.0.0.1",
        "web": "127.0.0.1",
    }
    assert '"ui.host": "127.0.0.1"' in storm_yaml(s)
    joined = cluster.joining_settings(s, "10.20.0.1", "10.20.0.2")
    assert cluster.WebDaemon(joined).address == "127.0.0.1"
    assert cluster.daemons(joined, ["supervisor"])[0].address == "10.20.0.2"


@pytest.mark.parametrize("bind", ["", "0.0.0.0", "::"])
def test_joining_needs_an_own_address_never_a_wildcard(tmp_path: Path, bind: str) -> None:
    with pytest.raises(ServiceError, match="own cluster address"):
        cluster.joining_settings(_settings(tmp_path), "10.20.0.1", bind)


def test_join_without_the_blob_token_says_what_to_copy(tmp_path: Path) -> None:
    s = cluster.joining_settings(_settings(tmp_path), "10.20.0.1", "10.20.0.2")
    with pytest.raises(ServiceError, match="copy secrets/"):
        cluster.join(s, progress=lambda _m: None)


def test_storm_cli_arguments(tmp_path: Path) -> None:
    assert storm_cli.split_options(["list"]) == ([], "list", [])
    assert storm_cli.split_options(["-c", "a=b", "kill", "t", "-w", "1"]) == (
        ["a=b"],
        "kill",
        ["t", "-w", "1"],
    )
    with pytest.raises(AutotagError, match="unknown storm command 'jar'"):
        storm_cli.split_options(["jar", "x.jar"])
    with pytest.raises(AutotagError, match="KEY=VALUE"):
        storm_cli.split_options(["-c", "nokey", "list"])


_BIND_PROBE = """
import socket
s = socket.socket()
s.bind(("0.0.0.0", 0))
print(s.getsockname()[0])
"""


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.2", "127.0.0.2"), ("", "127.0.0.1"), ("0.0.0.0", "127.0.0.1")],
)
def test_shim_turns_wildcard_binds_into_the_bind_address(
    tmp_path: Path, address: str, expected: str
) -> None:
    shim = ensure_loopback_shim(_settings(tmp_path))
    env = {**os.environ, "LD_PRELOAD": str(shim), "AUTOTAG_BIND_ADDRESS": address}
    out = subprocess.run(
        [sys.executable, "-c", _BIND_PROBE], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == expected
