"""Clear, one-line errors when the cluster cannot do what was asked (no traceback)."""

from __future__ import annotations

import socket

import pytest

from autotag.config import Settings, child_env
from autotag.errors import ServiceError
from autotag.ops.daemons.redis import RedisDaemon
from autotag.ops.nimbus import NimbusClient
from tests.cli import autotag


def test_nimbus_unreachable_is_reported(test_settings: Settings) -> None:
    nowhere = test_settings.override(port_offset=test_settings.services.port_offset + 7)
    with pytest.raises(ServiceError, match="Nimbus at 127.0.0.1:.* is unreachable"):
        NimbusClient(nowhere).topologies()
    result = autotag(nowhere, "topologies")  # its environment names the wrong port offset
    assert result.returncode == 1
    assert "is unreachable" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_port_taken_is_reported(test_settings: Settings, tmp_path) -> None:
    s = test_settings.override(
        run_dir=tmp_path, port_offset=test_settings.services.port_offset + 11
    )
    with socket.socket() as blocker:
        blocker.bind((s.services.host, s.services.port(s.services.redis_port)))
        blocker.listen(1)
        with pytest.raises(ServiceError, match="already taken by another process"):
            RedisDaemon(s).start()


def test_java_missing_is_reported(test_settings: Settings, tmp_path) -> None:
    result = autotag(
        test_settings,
        "cluster",
        "up",
        "zookeeper",
        env=child_env(test_settings) | {"PATH": "/usr/bin/nonexistent", "JAVA_HOME": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "Java not found" in result.stderr and "Traceback" not in result.stderr


def test_status_of_a_stopped_cluster_says_why(test_settings: Settings, tmp_path) -> None:
    s = test_settings.override(
        run_dir=tmp_path, port_offset=test_settings.services.port_offset + 13
    )
    result = autotag(
        s,
        "cluster",
        "status",
    )
    assert result.returncode == 3
    assert "nimbus" in result.stdout and "not running" in result.stdout
