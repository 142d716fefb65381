"""The services' passwords: one generated secret per role, in a 0600 file under the run dir.

Redis and Postgres require a password, so a local user who is not the one running autotag
cannot read or change the queue or the tags. The passwords are made once (``ensure``, at
``autotag cluster up``) and read by every client (``read``): the CLI, the bolts (Storm
workers inherit ``AUTOTAG_RUN_DIR``), the HTTP side, tests and benchmarks.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from autotag.errors import ServiceError

POSTGRES_OWNER = "postgres-owner"  # owns the schema: migrations, dot_product (C)
POSTGRES_APP = "postgres-app"  # what the CLI, bolts and HTTP side connect as
REDIS = "redis"
BLOB = "blob"  # the blob service's token: workers on other hosts read photos with it


def secrets_dir(run_dir: Path) -> Path:
    """``<run_dir>/secrets``: mode 0700, one 0600 file per password."""
    return Path(run_dir) / "secrets"


def path(run_dir: Path, name: str) -> Path:
    return secrets_dir(run_dir) / f"{name}.password"


def read(run_dir: Path, name: str) -> str:
    """A password, from a regular file that only its owner may read (never via a symlink)."""
    p = path(run_dir, name)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ServiceError(
            f"no password file {p} (run `autotag cluster up` to create it)"
        ) from None
    except OSError as exc:
        why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise ServiceError(f"cannot read password file {p}: {why}") from None
    with os.fdopen(fd, "r", encoding="ascii") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077:
            raise ServiceError(
                f"password file {p} must be a regular file readable by its owner only "
                f"(mode {stat.S_IMODE(st.st_mode):04o}; chmod 600 it)"
            )
        value = fh.read().strip()
    if not value:
        raise ServiceError(f"password file {p} is empty")
    return value


def ensure(run_dir: Path, name: str) -> str:
    """The password, generated (URL-safe, 256 bits) and written 0600 if it does not exist."""
    d = secrets_dir(run_dir)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    d.chmod(0o700)
    p = path(run_dir, name)
    if not p.exists():
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        write_private(tmp, secrets.token_urlsafe(32) + "\n", replace=False)
        try:
            os.link(tmp, p)  # appears whole, and never over one another process made first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return read(run_dir, name)


def write_private(p: Path, text: str, *, replace: bool = True) -> None:
    """Write a file only its owner can read (a config holding a password); with ``replace``,
    atomically in place of p, else p must not exist."""
    target = p.with_name(f".{p.name}.{os.getpid()}.tmp") if replace else p
    if replace:
        target.unlink(missing_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    if replace:
        os.replace(target, p)
