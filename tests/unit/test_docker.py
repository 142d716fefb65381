"""docker/: what can be checked without a Docker engine. Debian's `docker-compose config`
parses and validates the compose file; the Dockerfile installs the same pinned requirements as
`make deps`. Nothing here builds or runs an image (see the README's Docker section)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

DOCKER = Path(__file__).resolve().parents[2] / "docker"


@pytest.fixture()
def compose_dir(tmp_path: Path) -> Path:
    """A copy of docker/ with throw-away secrets (the real ones are never committed)."""
    work = tmp_path / "docker"
    shutil.copytree(DOCKER, work, ignore=shutil.ignore_patterns("secrets"))
    (work / "secrets").mkdir()
    for name in ("postgres_password", "redis_password", "blob_token", "pgpass"):
        (work / "secrets" / name).write_text("test-secret\n")
    return work


def test_compose_file_is_valid_for_docker_compose(compose_dir: Path) -> None:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose (Debian package) missing: run scripts/install-deps.sh"
    proc = subprocess.run(
        [exe, "-f", str(compose_dir / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock"},  # no engine needed
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    resolved = YAML(typ="safe").load(proc.stdout)
    services = resolved["services"]
    assert {"zookeeper", "nimbus", "supervisor", "ui", "redis", "postgres", "blobs"} <= set(
        services
    )
    # Passwords, not trust: Postgres from a secret file, Redis with requirepass.
    pg_env = services["postgres"]["environment"]
    assert pg_env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "POSTGRES_HOST_AUTH_METHOD" not in pg_env
    assert "--requirepass" in " ".join(services["redis"]["command"])
    # Data survives a restart: named volumes for every stateful service.
    for name in ("zookeeper", "redis", "postgres", "nimbus"):
        assert any(":/" in str(v) or isinstance(v, dict) for v in services[name]["volumes"]), name
    # Published ports only on the Docker host's loopback.
    for svc in services.values():
        for port in svc.get("ports", []):
            published = port if isinstance(port, str) else port.get("host_ip", "")
            assert str(published).startswith("127.0.0.1"), port


def test_dockerfile_installs_the_pinned_requirements() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM storm:\$\{STORM_VERSION\} AS storm$", text, re.M)
    assert "python:3.11" in text
    assert "COPY virtualenvs/autotag.txt virtualenvs/autotag.txt" in text
    installs = re.findall(r"pip install [^\n\\]*", text)
    assert any("-r virtualenvs/autotag.txt" in line for line in installs), installs
    # Any other pip install line installs no unpinned package.
    for line in installs:
        for arg in line.split()[2:]:
            if not arg.startswith("-") and arg not in (".", "virtualenvs/autotag.txt"):
                assert "==" in arg, f"unpinned package in the Dockerfile: {arg}"
