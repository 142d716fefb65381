"""The SQL side of similarity search: ``dot_product(real[], real[]) -> real``.

With it, the MemSQL-style query works from psql and from any SQL client::

    SELECT photo_id FROM photo_vectors WHERE dot_product(feature, $1::real[]) > 0.9;

The function is a small C file (``sql/dot_product.c``) compiled on this machine against the
server's own headers, into ``<run_dir>/lib`` (inside the run directory, which the server
process, when it runs as the ``postgres`` user, may traverse to reach its data directory;
``lib`` is shared with that group only). No extension control file is needed: it is
installed over a connection as the owner role, the cluster's superuser, so
``CREATE FUNCTION ... LANGUAGE C`` is enough; the application role only calls it. If the
build or the load fails (no compiler, no headers, not a superuser), a
slower LANGUAGE plpgsql version with the same name, signature and errors is installed
instead and a warning says why.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from autotag.config import Settings
from autotag.errors import AutotagError
from autotag.ops import run_dir

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent / "sql"
SOURCE = SQL_DIR / "dot_product.c"
MAKEFILE = SQL_DIR / "Makefile"
LIB_PREFIX = "autotag_dot_product"

# Same name, parameter names, strictness and errors as the C version (CREATE OR REPLACE
# cannot rename parameters, so both must say a, b); ~100x slower.
FALLBACK_SQL = """
CREATE OR REPLACE FUNCTION dot_product(a real[], b real[]) RETURNS real AS $fn$
BEGIN
    IF cardinality(a) <> cardinality(b) THEN
        RAISE EXCEPTION 'dot_product: dimension mismatch (% vs %)', cardinality(a), cardinality(b)
            USING ERRCODE = 'array_subscript_error',
                  HINT = 'Both vectors must come from the same feature set.';
    END IF;
    IF array_position(a, NULL) IS NOT NULL OR array_position(b, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'dot_product: array contains NULL elements'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN (SELECT coalesce(sum(x::float8 * y::float8), 0)::real FROM unnest(a, b) AS t(x, y));
END
$fn$ LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
"""

C_SQL = (
    "CREATE OR REPLACE FUNCTION dot_product(a real[], b real[]) RETURNS real "
    "AS {path}, 'dot_product' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE"
)


class BuildError(AutotagError):
    """The C function could not be compiled here (no gcc/make/server headers)."""


def library_dir(settings: Settings) -> Path:
    return settings.run_dir / "lib"


def find_pg_config(server_major: int | None = None) -> str:
    """pg_config for the server's major version (Debian keeps one per version)."""
    if server_major is not None:
        exact = Path(f"/usr/lib/postgresql/{server_major}/bin/pg_config")
        if exact.is_file():
            return str(exact)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_config"), reverse=True)
    found = shutil.which("pg_config") or (candidates[0] if candidates else None)
    if not found:
        raise BuildError("pg_config not found: install postgresql-server-dev-<version>")
    return found


def _build_key(pg_config: str) -> str:
    """Content hash so a changed source or server gets a new .so path (backends cache by path)."""
    h = hashlib.sha256()
    h.update(SOURCE.read_bytes())
    h.update(MAKEFILE.read_bytes())
    version = subprocess.run(
        [pg_config, "--version"], capture_output=True, text=True, check=False
    ).stdout
    h.update(version.encode())
    h.update(platform.machine().encode())
    return h.hexdigest()[:12]


def build_dot_product(
    settings: Settings, server_major: int | None = None, force: bool = False
) -> Path:
    """Compile dot_product.c into <run_dir>/lib (cached by content hash); return the .so path."""
    if shutil.which("make") is None:
        raise BuildError("make not found")
    pg_config = find_pg_config(server_major)
    out_dir = library_dir(settings)
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    run_dir.share_with_server(out_dir, 0o750)  # the server may run as postgres: it loads it
    out = out_dir / f"{LIB_PREFIX}-{_build_key(pg_config)}.so"
    if out.is_file() and not force:
        return out
    tmp = out_dir / f".{out.name}.{os.getpid()}.tmp"
    cmd = ["make", "-s", "-B", "-C", str(SQL_DIR), f"OUT={tmp}", f"PG_CONFIG={pg_config}"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise BuildError(f"building dot_product.so failed: {detail[-1] if detail else '?'}")
    run_dir.share_with_server(tmp, 0o750)
    os.replace(tmp, out)  # atomic: a concurrent installer never sees a half-written file
    return out


def dot_product_language(conn: psycopg.Connection) -> str | None:
    """'c', 'plpgsql' or None: which dot_product(real[], real[]) is installed."""
    row = conn.execute(
        "SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
        "WHERE p.proname = %s AND p.proargtypes = %s::oidvector",
        ("dot_product", "1021 1021"),
    ).fetchone()
    return row[0] if row else None


def install_sql_functions(
    conn: psycopg.Connection, settings: Settings, prefer_c: bool = True, rebuild: bool = False
) -> str:
    """Create or replace dot_product(real[], real[]); idempotent. Returns 'c' or 'plpgsql'."""
    reason = "C version not requested"
    if prefer_c:
        try:
            major = conn.info.server_version // 10000
            path = build_dot_product(settings, server_major=major, force=rebuild)
            with conn.transaction():
                conn.execute(sql.SQL(C_SQL).format(path=sql.Literal(str(path))))
            return "c"
        except BuildError as exc:
            reason = str(exc)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning(
            "dot_product: using the slow plpgsql fallback (%s); install gcc, make and "
            "postgresql-server-dev to get the C version",
            reason,
        )
    with conn.transaction():
        conn.execute(FALLBACK_SQL)
    return "plpgsql"
