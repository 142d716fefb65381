"""The run directory is private: no other local user may read it, and nobody else may write it.

Everything autotag keeps (blobs, passwords, logs, pid files, the databases) lives under the
run dir, so it is mode 0700 and a daemon refuses to start on a run dir that a group or other
users can write (someone could have planted a pid file, a config or a symbolic link in it).

One exception, for root: PostgreSQL refuses to run as root, so its server runs as the
``postgres`` user and must reach its data directory ``<run_dir>/data/postgres`` (and the
``dot_product`` library in ``<run_dir>/lib``). The run dir and ``data/`` are then 0710 with
group ``postgres``: that group may pass through them, not list or read them; every other
directory stays 0700.
"""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

from autotag.errors import ServiceError

# Made at start-up; each private (0700) unless listed in SERVER_REACHABLE.
SUBDIRS = ("logs", "pids", "conf", "data", "secrets")
SERVER_REACHABLE = ("data",)
SERVER_USER = "postgres"


def server_user() -> str | None:
    """The user Postgres runs as when autotag runs as root; None when it runs as us."""
    return SERVER_USER if os.geteuid() == 0 else None


def server_gid() -> int | None:
    """The group that may traverse the run dir to reach Postgres' data (root only)."""
    if server_user() is None:
        return None
    try:
        return grp.getgrnam(SERVER_USER).gr_gid
    except KeyError:
        return None


def check(run_dir: Path) -> None:
    """ServiceError unless run_dir belongs to this user and no group or other can write it."""
    try:
        st = os.stat(run_dir)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise ServiceError(f"run dir {run_dir} is not a directory")
    if st.st_uid != os.geteuid():
        raise ServiceError(
            f"run dir {run_dir} belongs to uid {st.st_uid}, not to this user (uid "
            f"{os.geteuid()}): refusing to start services in it"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise ServiceError(
            f"run dir {run_dir} is writable by other users (mode {mode:04o}): they could have "
            f"planted files in it; check its contents, then `chmod 700 {run_dir}`"
        )


def share_with_server(path: Path, mode: int) -> None:
    """Let the Postgres server's group reach path (root only); chmod it to mode either way."""
    gid = server_gid()
    if gid is not None:
        os.chown(path, -1, gid)
        os.chmod(path, mode)
    else:
        os.chmod(path, mode & 0o700)


def prepare(run_dir: Path) -> None:
    """Create the run dir and its subdirectories private; refuse one others can write."""
    check(run_dir)
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    check(run_dir)
    share_with_server(run_dir, 0o710)
    for name in SUBDIRS:
        sub = run_dir / name
        sub.mkdir(mode=0o700, exist_ok=True)
        if sub.is_symlink() or not sub.is_dir():
            raise ServiceError(f"{sub} must be a directory, not a link or a file")
        if name in SERVER_REACHABLE:
            share_with_server(sub, 0o710)
        else:
            sub.chmod(0o700)
