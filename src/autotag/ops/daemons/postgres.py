"""A project-local PostgreSQL cluster for tags, photos and feature vectors.

PostgreSQL refuses to run as root; when autotag runs as root (CI, containers) the cluster
belongs to the ``postgres`` system user and is started through ``runuser``. A normal user
owns their own cluster. It listens on ``services.listen_host`` only (127.0.0.1 on one
machine, the host's own cluster address on a multi-host cluster, never a wildcard) and every
connection, TCP or Unix socket, needs a password (scram-sha-256); TCP logins come from this
host's own addresses or, on a multi-host cluster, from ``services.cluster_network``. Two
roles, each with a generated password in a 0600 file under ``<run_dir>/secrets``:

- ``autotag_owner`` (``services.postgres_owner``), the cluster's bootstrap superuser: owns
  the database and schema, runs migrations and installs the C ``dot_product`` function;
  used only by ``autotag cluster up`` (and ``autotag sql-functions``).
- ``autotag`` (``services.postgres_user``): what the CLI, the bolts and the HTTP side use;
  no superuser, no DDL, reads and writes the tables only.

Every connection, the daemon's own administration included, is opened by the storage
layer's ``database.connect`` (the owner over TCP on the bind address, or a trusted socket
login while an old cluster is converted).

``psql service=autotag`` works with ``PGSERVICEFILE=<run_dir>/secrets/pg_service.conf``,
written here with the matching ``pgpass`` file.

A cluster made by an older autotag (trust authentication, the application user as its
superuser) is converted in place at its next start: its superuser is renamed to the owner
role and given a password, the application role is created, then trust is gone.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autotag.config import Settings
from autotag.errors import ServiceError
from autotag.ops import run_dir
from autotag.ops.daemons.base import Daemon
from autotag.storage import credentials, database

# Every connection authenticates; TCP logins come from this host's own addresses (samehost)
# or from the cluster network of a multi-host cluster.
HBA = """\
# Written by autotag (ops/daemons/postgres.py) at every start: edits are replaced.
# TYPE  DATABASE  USER  ADDRESS   METHOD
local   all       all             scram-sha-256
host    all       all   samehost  scram-sha-256
"""
# While converting an older trust cluster: trust only on the Unix socket, which lives in the
# data directory (mode 0700: reachable by the server's user and root only).
HBA_CONVERTING = """\
# Written by autotag while converting a trust-auth cluster; replaced when done.
local   all       all             trust
host    all       all   samehost  scram-sha-256
"""
_CONVERTER = "autotag_converter"


def pg_bin(tool: str) -> str:
    """Path of a PostgreSQL server binary (Debian keeps them out of PATH)."""
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), reverse=True)
    found = candidates[0] if candidates else shutil.which(tool)
    if not found:
        raise ServiceError(f"PostgreSQL's {tool} not found: run scripts/install-deps.sh")
    return found


def service_file(settings: Settings) -> Path:
    """libpq's service file for ``psql service=autotag`` (set PGSERVICEFILE to it)."""
    return credentials.secrets_dir(settings.run_dir) / "pg_service.conf"


def pgpass_file(settings: Settings) -> Path:
    return credentials.secrets_dir(settings.run_dir) / "pgpass"


class PostgresDaemon(Daemon):
    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings, name="postgres", port=settings.services.port(settings.services.postgres_port)
        )
        self.stop_signal = signal.SIGINT  # "fast" shutdown: does not wait for bolts' sessions

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir / "postgres"

    def preexec_user(self) -> Sequence[str]:
        user = run_dir.server_user()
        return ("runuser", "-u", user, "--") if user else ()

    def prepare(self) -> None:
        s = self.settings
        owner_password = credentials.ensure(s.run_dir, credentials.POSTGRES_OWNER)
        credentials.ensure(s.run_dir, credentials.POSTGRES_APP)
        if not (self.data_dir / "PG_VERSION").is_file():
            self._initdb(owner_password)
        self._write_server_file("pg_hba.conf", self._hba(HBA_CONVERTING if self._trusts() else HBA))
        self._write_client_files()

    def _hba(self, base: str) -> str:
        """pg_hba.conf: ``base``, plus SCRAM logins from the cluster network if there is one."""
        network = self.settings.services.cluster_network
        return base + (f"host    all       all   {network}  scram-sha-256\n" if network else "")

    def _trusts(self) -> bool:
        """True for a cluster made with trust authentication (by an older autotag)."""
        try:
            lines = (self.data_dir / "pg_hba.conf").read_text().splitlines()
        except OSError:
            return False
        rules = [ln.split() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        return any(rule[-1] == "trust" for rule in rules)

    def _initdb(self, owner_password: str) -> None:
        user = run_dir.server_user()
        owner = pwd.getpwnam(user) if user else None
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if owner:
            os.chown(self.data_dir, owner.pw_uid, owner.pw_gid)
        os.chmod(self.data_dir, 0o700)
        # initdb reads the owner's password from a file the server's user can read: next to
        # the data directory, 0600, removed right after.
        pwfile = self.settings.data_dir / ".initdb-password"
        pwfile.unlink(missing_ok=True)
        credentials.write_private(pwfile, owner_password + "\n")
        if owner:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        cmd = [
            *self.preexec_user(),
            pg_bin("initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.settings.services.postgres_owner,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        ]
        try:
            with open(self.log_file, "ab") as log:
                result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd="/")
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise ServiceError(f"initdb failed (status {result.returncode}); see {self.log_file}")

    def _write_server_file(self, name: str, text: str) -> None:
        """A config file in the data directory, owned by the server's user, mode 0600."""
        target = self.data_dir / name
        credentials.write_private(target, text)
        user = run_dir.server_user()
        if user:
            pw = pwd.getpwnam(user)
            os.chown(target, pw.pw_uid, pw.pw_gid)

    def _write_client_files(self) -> None:
        """pgpass and a service file, so ``psql service=autotag`` needs no typing."""
        s = self.settings
        where = f"{s.services.host}:{self.port}"
        roles = [
            ("autotag", s.services.postgres_user, credentials.POSTGRES_APP),
            ("autotag_owner", s.services.postgres_owner, credentials.POSTGRES_OWNER),
        ]
        credentials.write_private(
            pgpass_file(s),
            "".join(
                f"{where}:*:{role}:{credentials.read(s.run_dir, secret)}\n"
                for _service, role, secret in roles
            ),
        )
        credentials.write_private(
            service_file(s),
            "".join(
                f"[{service}]\nhost={s.services.host}\nport={self.port}\n"
                f"dbname={s.services.postgres_db}\nuser={role}\npassfile={pgpass_file(s)}\n\n"
                for service, role, _secret in roles
            ),
        )

    def argv(self) -> Sequence[str]:
        return [
            pg_bin("postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={self.settings.services.listen_host}",
            "-c",
            f"unix_socket_directories={self.data_dir}",
            "-c",
            "password_encryption=scram-sha-256",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=256MB",
            "-c",
            "fsync=on",
            "-c",
            "synchronous_commit=on",
        ]

    def _owner_connection(self, dbname: str = "postgres") -> Any:
        """The owner role on this host's own address (the maintenance database by default),
        through the storage layer's opener; ServiceError if it does not answer."""
        services = self.settings.services
        return database.connect(
            services,
            role="owner",
            dbname=dbname,
            host=services.listen_host,
            migrate_schema=False,
            connect_timeout=3,
        )

    def _socket_connection(self, user: str) -> Any:
        """Over the Unix socket in the data directory, as ``user`` without a password (the
        socket trusts only while an old cluster is converted); ServiceError if refused."""
        return database.connect(
            self.settings.services,
            dbname="postgres",
            host=str(self.data_dir),
            trusted_user=user,
            migrate_schema=False,
        )

    def start(self, wait: bool = True) -> Any:
        status = super().start(wait=wait)
        if wait:
            if self._trusts():
                self._convert_trust_cluster()
            self.ensure_roles()
        return status

    def _convert_trust_cluster(self) -> None:
        """Its bootstrap superuser (named like the application role) becomes the owner role,
        with the owner's password; then every connection needs a password."""
        from psycopg import sql

        s = self.settings
        over_socket = self._socket_connection
        try:
            conn = over_socket(s.services.postgres_owner)  # renamed already (interrupted)
        except ServiceError:
            with over_socket(s.services.postgres_user) as old:  # it cannot rename itself
                old.execute(sql.SQL("CREATE ROLE {} SUPERUSER LOGIN").format(
                    sql.Identifier(_CONVERTER)))  # fmt: skip
            with over_socket(_CONVERTER) as conv:
                conv.execute(
                    sql.SQL("ALTER ROLE {} RENAME TO {}").format(
                        sql.Identifier(s.services.postgres_user),
                        sql.Identifier(s.services.postgres_owner),
                    )
                )
            conn = over_socket(s.services.postgres_owner)
        with conn:
            password = credentials.read(s.run_dir, credentials.POSTGRES_OWNER)
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
                    sql.Identifier(s.services.postgres_owner), sql.Literal(password)
                )
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(_CONVERTER)))
            self._write_server_file("pg_hba.conf", self._hba(HBA))
            conn.execute("SELECT pg_reload_conf()")

    def ensure_roles(self) -> None:
        """The application role (no superuser, its password from the file) and the database,
        owned by the owner role, that only the two roles may connect to. Idempotent."""
        from psycopg import sql

        s = self.settings
        app = sql.Identifier(s.services.postgres_user)
        password = sql.Literal(credentials.read(s.run_dir, credentials.POSTGRES_APP))
        with self._owner_connection() as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (s.services.postgres_user,)
            )
            verb = "ALTER" if exists.fetchone() else "CREATE"
            conn.execute(
                sql.SQL(
                    "{} ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                    "NOBYPASSRLS PASSWORD {}"
                ).format(sql.SQL(verb), app, password)
            )
            db = sql.Identifier(s.services.postgres_db)
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (s.services.postgres_db,)
            ).fetchone()
            if not found:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        db, sql.Identifier(s.services.postgres_owner)
                    )
                )
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, app))

    def check(self) -> str | None:
        problem = super().check()
        if problem:
            return problem
        import psycopg

        try:
            if self._trusts():  # being converted: no owner password yet, the socket trusts
                try:
                    conn = self._socket_connection(self.settings.services.postgres_owner)
                except ServiceError:
                    conn = self._socket_connection(self.settings.services.postgres_user)
                with conn:
                    conn.execute("SELECT 1")
            else:
                with self._owner_connection() as conn:
                    conn.execute("SELECT 1")
        except (ServiceError, psycopg.Error) as exc:
            return f"not answering queries: {database.first_line(exc.__cause__ or exc)}"
        return None
