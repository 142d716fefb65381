"""Postgres: connections and schema migrations.

``connect`` is the one way autotag opens a Postgres connection (the CLI, the bolts, the
Postgres daemon's own administration; the web app's pool opens its connections with the
same ``connection_kwargs``); it takes the ``ServiceSettings`` section, nothing else of the
settings.

Connections are autocommit; every write that must be atomic runs in an explicit transaction.
The schema is the ordered SQL files in ``migrations/``, applied once each and recorded in
``schema_migrations``, by the owner role only (``autotag cluster up``); everything else
connects as the application role, which may read and write rows and nothing more
(``grant_app_role``), and is told to run ``autotag cluster up`` if the schema is behind.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql

from autotag.config import ServiceSettings
from autotag.errors import ServiceError
from autotag.storage import credentials

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_RE = re.compile(r"(\d{4})_[A-Za-z0-9_]+\.sql")
# Advisory lock key (an arbitrary constant, namespaced by being unusual).
_MIGRATE_LOCK = 0x617574_6D6967  # "autmig"


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (psycopg's are multi-line)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def service_error(
    services: ServiceSettings, exc: BaseException, host: str | None = None
) -> ServiceError:
    """A one-line ServiceError for a Postgres connection/operational failure."""
    first = first_line(exc)
    if "failed: " in first:  # psycopg repeats the address: keep just the cause
        first = first.rsplit("failed: ", 1)[1]
    where = f"{host or services.postgres_address}:{services.port(services.postgres_port)}"
    return ServiceError(f"Postgres at {where} is not answering: {first} (run `autotag cluster up`)")


@contextmanager
def pg_errors(services: ServiceSettings) -> Iterator[None]:
    """Turn psycopg's connection/operational errors into a one-line ServiceError."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise service_error(services, exc) from exc


Role = Literal["app", "owner"]


def connection_kwargs(
    services: ServiceSettings,
    *,
    role: Role = "app",
    dbname: str | None = None,
    host: str | None = None,
    trusted_user: str | None = None,
    connect_timeout: int = 5,
) -> dict[str, Any]:
    """The keyword arguments of ``psycopg.connect`` for an autocommit connection to
    autotag's database (or ``dbname``, e.g. the maintenance database ``postgres``) as the
    application role or the owner role, with the role's password from the run directory.

    ``host`` overrides where Postgres is reached (the daemon's own bind address, or its
    data directory for the Unix socket); ``trusted_user`` logs in as that role without a
    password, which only a trusting socket accepts (the daemon converting an old cluster).
    """
    if trusted_user is not None:
        user, password = trusted_user, None
    else:
        user, secret = (
            (services.postgres_owner, credentials.POSTGRES_OWNER)
            if role == "owner"
            else (services.postgres_user, credentials.POSTGRES_APP)
        )
        password = credentials.read(services.run_dir, secret)
    kwargs: dict[str, Any] = {
        "host": host or services.postgres_address,
        "port": services.port(services.postgres_port),
        "dbname": dbname or services.postgres_db,
        "user": user,
        "autocommit": True,
        "connect_timeout": connect_timeout,
        "application_name": "autotag",
    }
    if password is not None:
        kwargs["password"] = password
    return kwargs


def connect(
    services: ServiceSettings,
    *,
    role: Role = "app",
    migrate_schema: bool = True,
    connect_timeout: int = 5,
    dbname: str | None = None,
    host: str | None = None,
    trusted_user: str | None = None,
) -> psycopg.Connection[Any]:
    """An autocommit connection (``connection_kwargs``); ServiceError if Postgres does not
    answer or refuses the login.

    With ``migrate_schema``, the owner applies pending migrations and grants the application
    role its rights; the application role checks that there is nothing pending.
    """
    kwargs = connection_kwargs(
        services,
        role=role,
        dbname=dbname,
        host=host,
        trusted_user=trusted_user,
        connect_timeout=connect_timeout,
    )
    try:
        conn = psycopg.connect(**kwargs)
    except psycopg.OperationalError as exc:
        raise service_error(services, exc, kwargs["host"]) from exc
    if migrate_schema:
        try:
            if role == "owner":
                migrate(conn)
                grant_app_role(conn, services.postgres_user)
            else:
                require_current_schema(conn)
        except BaseException:
            conn.close()
            raise
    return conn


def grant_app_role(conn: psycopg.Connection[Any], app_role: str) -> None:
    """Rows, not schema: the application role may read and write every table (only read
    ``schema_migrations``) and use the sequences, and create nothing. Idempotent."""
    app = sql.Identifier(app_role)
    with conn.transaction():
        for statement in (
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            "GRANT USAGE ON SCHEMA public TO {app}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app}",
            "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migrations FROM {app}",
            "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app}",
            # The similarity index checks which cluster a saved index came from.
            "GRANT EXECUTE ON FUNCTION pg_control_system() TO {app}",
        ):
            conn.execute(sql.SQL(statement).format(app=app))


def require_current_schema(conn: psycopg.Connection[Any]) -> None:
    """ServiceError naming the missing migrations if the schema is behind this code."""
    missing = sorted({v for v, _ in migration_files()} - _applied(conn))
    if missing:
        raise ServiceError(
            f"the database schema lacks migration(s) {', '.join(missing)}: "
            "run `autotag cluster up` to apply them"
        )


# -- migrations ----------------------------------------------------------------------------


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[str, Path]]:
    """(version, path) of every NNNN_name.sql, in order."""
    out = []
    for p in sorted(directory.glob("*.sql")):
        m = _MIGRATION_RE.fullmatch(p.name)
        if m:
            out.append((m.group(1), p))
    return out


def _applied(conn: psycopg.Connection[Any]) -> set[str]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return set()
    return {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}


def migrate(conn: psycopg.Connection[Any], directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations in order, once each; returns the versions applied now.

    An advisory lock serialises concurrent callers (several bolts starting at once); the
    common case, nothing to do, costs one query and takes no lock.
    """
    files = migration_files(directory)
    if {v for v, _ in files} <= _applied(conn):
        return []
    done: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = _applied(conn)
        for version, path in files:
            if version in applied:
                continue
            # No parameters: psycopg sends the file as one simple query (many statements).
            conn.execute(path.read_text().encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (version, path.name),
            )
            done.append(version)
    if done:
        log.info("applied migrations %s", ", ".join(done))
    return done
