"""The blob service (``autotag.web.blob_service``) as a managed process on the intake host.

Its token is created here on first start, in the run directory's secrets/ (mode 0600); a
host that joins the cluster needs a copy of that file to read photos.
"""

from __future__ import annotations

import os
import secrets
import sys
import urllib.request
from collections.abc import Sequence

from autotag.config import Settings, child_env
from autotag.ops.daemons.base import Daemon


def ensure_blob_token(settings: Settings) -> str:
    """The cluster's blob token, created (random, 0600) when there is none yet."""
    path = settings.blob_token_file
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


class BlobServiceDaemon(Daemon):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, name="blobs", port=settings.port(settings.blob_port))
        self.env_extra = child_env(settings)

    def prepare(self) -> None:
        ensure_blob_token(self.settings)

    def argv(self) -> Sequence[str]:
        return [sys.executable, "-m", "autotag.web.blob_service"]

    def check(self) -> str | None:
        problem = super().check()
        if problem:
            return problem
        url = f"http://{self.settings.listen_host}:{self.port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                resp.read()
        except OSError as exc:
            return f"{url} failed: {exc}"
        return None
