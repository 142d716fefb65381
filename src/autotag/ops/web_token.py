"""The web page's login token, Jupyter's habit: a random secret in a 0600 file under the run
directory. The web service checks requests against it, ``autotag url`` prints it, and the
cluster's health check sends it; whoever can read the file may use the page.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from autotag.errors import AutotagError

MIN_LENGTH = 32


def token_file(run_dir: Path) -> Path:
    return Path(run_dir) / "web" / "token"


def read_token(run_dir: Path) -> str:
    """The token, or AutotagError naming the file when there is none yet."""
    path = token_file(run_dir)
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise AutotagError(
            f"no web token at {path} yet (start the web page: `autotag cluster up web`)"
        ) from None
    if len(token) < MIN_LENGTH:
        raise AutotagError(f"web token file {path} is damaged (too short); delete it to renew")
    return token


def load_or_create_token(run_dir: Path) -> str:
    """The token, created on first use: written with O_EXCL at mode 0600, so two processes
    starting at once agree on one token and no other user can read it."""
    path = token_file(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)  # someone loosened it: only the owner may read a secret
        for _ in range(50):  # another process may have created it and not yet written it
            if len(path.read_text().strip()) >= MIN_LENGTH:
                break
            time.sleep(0.02)
        return read_token(run_dir)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token
