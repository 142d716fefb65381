"""The web app's Postgres pool (psycopg_pool) opens connections the storage layer's way."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from autotag.config import ServiceSettings
from autotag.errors import ServiceError
from autotag.storage import credentials, database
from autotag.web.state import ConnectionPool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_pool_uses_the_openers_arguments(tmp_path: Path) -> None:
    credentials.ensure(tmp_path, credentials.POSTGRES_APP)
    services = ServiceSettings(postgres_port=5433, port_offset=100, run_dir=tmp_path)
    kwargs = database.connection_kwargs(services)
    assert kwargs["port"] == 5533 and kwargs["user"] == "autotag" and kwargs["autocommit"]
    assert kwargs["password"] == credentials.read(tmp_path, credentials.POSTGRES_APP)
    owner = database.connection_kwargs(
        services, role="owner", dbname="postgres", host="/data", trusted_user="old"
    )
    assert (owner["user"], owner["dbname"], owner["host"]) == ("old", "postgres", "/data")
    assert "password" not in owner  # a trusting socket only


def test_a_pool_without_postgres_says_why_at_once(tmp_path: Path) -> None:
    credentials.ensure(tmp_path, credentials.POSTGRES_APP)
    services = ServiceSettings(postgres_port=free_port(), run_dir=tmp_path)
    pool = ConnectionPool(services, wait_secs=30)
    t0 = time.monotonic()
    try:
        with pytest.raises(ServiceError, match=r"Postgres at 127\.0\.0\.1:\d+ is not answering"):
            with pool.connection():
                pass
    finally:
        pool.close()
    assert time.monotonic() - t0 < 10
