"""A project-local PostgreSQL cluster for tags, photos and feature vectors.

PostgreSQL refuses to run as root; when autotag runs as root (CI, containers) the cluster
belongs to the ``postgres`` system user and is started through ``runuser``. A normal user
owns their own cluster. It listens on 127.0.0.1 only, with trust auth for local users; on a
multi-host cluster it listens on the host's own cluster address and accepts password (SCRAM)
logins from ``settings.cluster_network`` only.
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

from autotag.config import Settings
from autotag.errors import ServiceError
from autotag.ops.daemons.base import Daemon


def pg_bin(tool: str) -> str:
    """Path of a PostgreSQL server binary (Debian keeps them out of PATH)."""
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), reverse=True)
    found = candidates[0] if candidates else shutil.which(tool)
    if not found:
        raise ServiceError(f"PostgreSQL's {tool} not found: run scripts/install-deps.sh")
    return found


def _run_as_user() -> str | None:
    return "postgres" if os.geteuid() == 0 else None


_HBA_MARK = "# autotag: cluster network (managed by autotag; rewritten on every start)"


class PostgresDaemon(Daemon):
    def __init__(self, settings: Settings, password: str | None = None) -> None:
        super().__init__(settings, name="postgres", port=settings.port(settings.postgres_port))
        self.stop_signal = signal.SIGINT  # "fast" shutdown: does not wait for bolts' sessions
        # The role's password for logins from other hosts; libpq clients read PGPASSWORD.
        self.password = password if password is not None else os.environ.get("PGPASSWORD")

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir / "postgres"

    def preexec_user(self) -> Sequence[str]:
        user = _run_as_user()
        return ("runuser", "-u", user, "--") if user else ()

    def prepare(self) -> None:
        self._initdb()
        self._write_cluster_hba()

    def _write_cluster_hba(self) -> None:
        """pg_hba.conf's last lines: SCRAM logins from the cluster network, or nothing."""
        network = self.settings.cluster_network
        if network and not self.password:
            raise ServiceError(
                f"cluster_network is {network}: Postgres needs a password for logins from it"
            )
        hba = self.data_dir / "pg_hba.conf"
        text = hba.read_text()
        kept = text.split("\n" + _HBA_MARK)[0].rstrip("\n") + "\n"
        if network:
            kept += f"\n{_HBA_MARK}\nhost all all {network} scram-sha-256\n"
        if kept != text:
            hba.write_text(kept)

    def _initdb(self) -> None:
        user = _run_as_user()
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        if (self.data_dir / "PG_VERSION").is_file():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user:
            pw = pwd.getpwnam(user)
            os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.data_dir, 0o700)
        cmd = [
            *self.preexec_user(),
            pg_bin("initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.settings.postgres_user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]
        with open(self.log_file, "ab") as log:
            result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd="/")
        if result.returncode != 0:
            raise ServiceError(f"initdb failed (status {result.returncode}); see {self.log_file}")

    def argv(self) -> Sequence[str]:
        return [
            pg_bin("postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={self.settings.listen_host}",
            "-c",
            f"unix_socket_directories={self.data_dir}",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=256MB",
            "-c",
            "fsync=on",
            "-c",
            "synchronous_commit=on",
        ]

    def _ensure_database(self) -> None:
        import psycopg

        s = self.settings
        # Over the Unix socket (trust for the local user): it works before the role has the
        # password that TCP logins from the cluster network need.
        with psycopg.connect(
            host=str(self.data_dir),
            port=self.port,
            dbname="postgres",
            user=s.postgres_user,
            autocommit=True,
            connect_timeout=3,
        ) as conn:
            if self.password:
                from psycopg import sql as pgsql

                conn.execute(
                    pgsql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        pgsql.Identifier(s.postgres_user), pgsql.Literal(self.password)
                    )
                )
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (s.postgres_db,)
            ).fetchone()
            if not exists:
                from psycopg import sql

                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(s.postgres_db)))

    def check(self) -> str | None:
        problem = super().check()
        if problem:
            return problem
        import psycopg

        try:
            self._ensure_database()
        except psycopg.Error as exc:
            return f"not answering queries: {str(exc).strip().splitlines()[0]}"
        return None
