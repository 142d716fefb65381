"""A project-local Redis (queue of photos) with an append-only file.

It requires a password (``requirepass``), generated once into ``<run_dir>/secrets`` and
written into a 0600 config file, never on the command line where ``ps`` would show it. It
binds ``services.listen_host``: 127.0.0.1 on one machine, the host's own cluster address on
a multi-host cluster (never a wildcard), where other hosts' workers log in with the same
password file (copied with ``secrets/``). Its health check connects through the storage
layer's ``item_stream.client``.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from autotag.config import Settings
from autotag.errors import ServiceError
from autotag.ops.daemons.base import Daemon
from autotag.storage import credentials


class RedisDaemon(Daemon):
    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings, name="redis", port=settings.services.port(settings.services.redis_port)
        )

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir / "redis"

    @property
    def conf_file(self) -> Path:
        return self.settings.run_dir / "conf" / "redis.conf"

    def prepare(self) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.conf_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        password = credentials.ensure(self.settings.run_dir, credentials.REDIS)
        # appendfsync everysec: an acknowledged upload survives a Redis crash (≤1 s window
        # covered by the Postgres 'queued' row, which `autotag retry --stuck` re-queues).
        credentials.write_private(
            self.conf_file,
            "\n".join(
                [
                    f"bind {self.settings.services.listen_host}",
                    "protected-mode yes",
                    f"requirepass {password}",
                    f"port {self.port}",
                    f"dir {self.data_dir}",
                    "daemonize no",
                    "appendonly yes",
                    "appendfsync everysec",
                    "save 60 1000",
                    "loglevel notice",
                    "",
                ]
            ),
        )

    def argv(self) -> Sequence[str]:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        return [exe, str(self.conf_file)]

    def check(self) -> str | None:
        problem = super().check()
        if problem:
            return problem
        import redis

        from autotag.storage.item_stream import client

        services = self.settings.services
        try:
            # The storage layer's opener, asking this host's own bind address.
            r = client(services, host=services.listen_host, socket_timeout=2, retries=0)
            try:
                r.ping()
            finally:
                r.close()
        except (ServiceError, redis.RedisError) as exc:
            return f"PING failed: {exc}"
        return None
