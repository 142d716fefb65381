"""The blob service (``autotag.web.blob_service``) as a managed process on the intake host.

Its token is created here on first start, in the run directory's secrets/ (mode 0600); a
host that joins the cluster needs a copy of that file to read photos.
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Sequence

from autotag.config import Settings, child_env
from autotag.ops.daemons.base import Daemon
from autotag.storage import credentials


class BlobServiceDaemon(Daemon):
    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings, name="blobs", port=settings.services.port(settings.services.blob_port)
        )
        self.env_extra = child_env(settings)

    def prepare(self) -> None:
        credentials.ensure(self.settings.run_dir, credentials.BLOB)

    def argv(self) -> Sequence[str]:
        return [sys.executable, "-m", "autotag.web.blob_service"]

    def check(self) -> str | None:
        problem = super().check()
        if problem:
            return problem
        url = f"http://{self.settings.services.listen_host}:{self.port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                resp.read()
        except OSError as exc:
            return f"{url} failed: {exc}"
        return None
