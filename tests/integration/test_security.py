"""Nobody else gets in: what another local user could try against the data services.

Postgres and Redis refuse a client without the password (psql, redis-cli, as anyone would
type them); the passwords live in 0600 files in a 0700 directory, never on a command line;
`psql service=autotag` works for the user; the application role cannot run programs on the
server or change the schema.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from autotag.config import Settings
from autotag.ops.daemons.postgres import PostgresDaemon, service_file
from autotag.ops.daemons.redis import RedisDaemon
from autotag.storage import credentials

pytestmark = pytest.mark.services


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of someone who does not have the passwords."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "REDISCLI"))}
    env["PGPASSFILE"] = "/nonexistent"
    env["PGSERVICEFILE"] = "/nonexistent"
    env.update(extra)
    return env


def _psql(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", "-w", "-X", "-At", *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_psql_without_the_password_is_refused(services: Settings) -> None:
    """Items 1 and "What it must show": no role gets in without its password, over TCP or
    over the Unix socket."""
    s = services
    port = str(s.services.port(s.services.postgres_port))
    for user in (s.services.postgres_user, s.services.postgres_owner, "postgres"):
        r = _psql("-h", s.services.host, "-p", port, "-U", user, "-d", "postgres", "-c", "SELECT 1",
                  env=_clean_env())  # fmt: skip
        assert r.returncode != 0 and "password" in r.stderr, (user, r.stdout, r.stderr)
    socket_dir = str(PostgresDaemon(s).data_dir)
    owner = s.services.postgres_owner
    r = _psql("-h", socket_dir, "-p", port, "-U", owner, "-d", "postgres",
              "-c", "SELECT 1", env=_clean_env())  # fmt: skip
    assert r.returncode != 0 and "password" in r.stderr, r.stderr


def test_psql_service_works_as_the_application_role(services: Settings) -> None:
    """Item 1: `psql service=autotag` (PGSERVICEFILE from the run dir) connects as a role that
    is no superuser, cannot run programs on the server and cannot change the schema."""
    env = _clean_env(PGSERVICEFILE=str(service_file(services)))
    r = _psql("service=autotag", "-c",
              "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user",
              env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{services.services.postgres_user}|f"
    r = _psql("service=autotag", "-c", "SELECT count(*) FROM photos", env=env)
    assert r.returncode == 0, r.stderr
    r = _psql("service=autotag", "-c", "COPY (SELECT 1) TO PROGRAM 'id'", env=env)
    assert r.returncode != 0 and "must be superuser" in r.stderr, r.stderr
    r = _psql("service=autotag", "-c", "CREATE TABLE intruder (x int)", env=env)
    assert r.returncode != 0 and "permission denied" in r.stderr, r.stderr
    r = _psql("service=autotag_owner", "-c", "SELECT rolsuper FROM pg_roles "
              "WHERE rolname = current_user", env=env)  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip() == "t", r.stderr


def test_redis_cli_without_the_password_is_refused(services: Settings) -> None:
    """Item 2: without the password nobody can read, inject or wipe the queue."""
    s = services
    base = ["redis-cli", "-h", s.services.host, "-p", str(s.services.port(s.services.redis_port))]
    for cmd in (["PING"], ["XLEN", s.queue.stream], ["FLUSHALL"]):
        r = subprocess.run([*base, *cmd], env=_clean_env(), capture_output=True, text=True)
        assert "NOAUTH" in r.stdout + r.stderr, (cmd, r.stdout, r.stderr)
    password = credentials.read(s.run_dir, credentials.REDIS)
    r = subprocess.run(
        [*base, "PING"], env=_clean_env(REDISCLI_AUTH=password), capture_output=True, text=True
    )
    assert r.stdout.strip() == "PONG", r.stderr


def test_passwords_are_private_files_never_on_a_command_line(services: Settings) -> None:
    """Items 1-3: 0600 files in a 0700 directory; `ps` shows no password."""
    s = services
    secrets = credentials.secrets_dir(s.run_dir)
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    names = (credentials.POSTGRES_OWNER, credentials.POSTGRES_APP, credentials.REDIS)
    passwords = [credentials.read(s.run_dir, n) for n in names]
    assert len(set(passwords)) == 3 and all(len(p) >= 40 for p in passwords)
    for f in [*secrets.iterdir(), RedisDaemon(s).conf_file]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        assert not any(p in cmdline for p in passwords), f"a password on pid {proc.name}'s argv"


def test_a_trust_cluster_from_an_older_autotag_is_converted(
    test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 1, upgrade: a cluster made by `initdb --auth=trust -U autotag` keeps its data,
    its superuser becomes the owner role with a password, the application role is created,
    and no connection is trusted any more."""
    import shutil
    import tempfile

    import psycopg

    from autotag.config import load_settings
    from autotag.ops import run_dir
    from autotag.ops.daemons.postgres import pg_bin
    from autotag.storage import database

    run = Path(tempfile.mkdtemp(prefix="autotag-legacy-"))
    s = load_settings(
        {
            **os.environ,
            "AUTOTAG_RUN_DIR": str(run),
            "AUTOTAG_PORT_OFFSET": str(test_settings.services.port_offset + 31),
        }
    )
    d = PostgresDaemon(s)
    try:
        run_dir.prepare(run)
        d.data_dir.mkdir(mode=0o700)
        runas = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if runas:
            shutil.chown(d.data_dir, "postgres", "postgres")
        subprocess.run(
            [*runas, pg_bin("initdb"), "-D", str(d.data_dir), "-U", s.services.postgres_user,
             "--auth=trust", "--encoding=UTF8", "--locale=C"],
            check=True, capture_output=True, cwd="/",
        )  # fmt: skip
        # Started as the old code left it, with data of its own.
        monkeypatch.setattr(PostgresDaemon, "_convert_trust_cluster", lambda self: None)
        monkeypatch.setattr(PostgresDaemon, "ensure_roles", lambda self: None)
        d.start()
        with d._socket_connection(s.services.postgres_user) as old:
            old.execute(f"CREATE DATABASE {s.services.postgres_db}")
        with psycopg.connect(
            host=str(d.data_dir), port=d.port, dbname=s.services.postgres_db,
            user=s.services.postgres_user,
            autocommit=True,
        ) as old:  # fmt: skip
            old.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        monkeypatch.undo()

        d.start()  # running: converted in place
        with database.connect(s.services, role="owner", migrate_schema=False) as owner:
            assert owner.execute("SELECT x FROM kept").fetchone() == (42,)
            assert owner.execute(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone() == (True,)
        with database.connect(s.services, migrate_schema=False) as app:
            assert app.execute(
                "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone() == (s.services.postgres_user, False)
        assert not d._trusts()
        for host in (s.services.host, str(d.data_dir)):
            r = _psql("-h", host, "-p", str(d.port), "-U", s.services.postgres_owner,
                      "-d", "postgres", "-c", "SELECT 1", env=_clean_env())  # fmt: skip
            assert r.returncode != 0 and "password" in r.stderr, (host, r.stderr)
    finally:
        d.stop()
        shutil.rmtree(run, ignore_errors=True)
