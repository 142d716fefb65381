"""A project-local Redis (queue of photos), on 127.0.0.1 with an append-only file.

With a password (``settings.redis_password``) it also accepts clients from other hosts on
the host's own cluster address; without one, Redis' protected mode keeps it loopback-only.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from autotag.config import Settings
from autotag.errors import ServiceError
from autotag.ops.daemons.base import Daemon


class RedisDaemon(Daemon):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, name="redis", port=settings.port(settings.redis_port))

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir / "redis"

    @property
    def conf_file(self) -> Path:
        return self.settings.run_dir / "conf" / "redis.conf"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.conf_file.parent.mkdir(parents=True, exist_ok=True)
        # appendfsync everysec: an acknowledged upload survives a Redis crash (≤1 s window
        # covered by the Postgres 'queued' row, which `autotag retry --stuck` re-queues).
        self.conf_file.write_text(
            "\n".join(
                [
                    f"bind {self.settings.listen_host}",
                    "protected-mode yes",
                    f"port {self.port}",
                    f"dir {self.data_dir}",
                    "daemonize no",
                    "appendonly yes",
                    "appendfsync everysec",
                    "save 60 1000",
                    "loglevel notice",
                    *self._auth_lines(),
                    "",
                ]
            )
        )
        self.conf_file.chmod(0o600)  # it may hold the password

    def _auth_lines(self) -> list[str]:
        pw = self.settings.redis_password
        if not pw:
            return []
        if any(c.isspace() or c in "\"'" for c in pw):
            raise ServiceError("redis_password must not contain spaces or quotes")
        return [f"requirepass {pw}"]

    def argv(self) -> Sequence[str]:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        return [exe, str(self.conf_file)]

    def check(self) -> str | None:
        problem = super().check()
        if problem:
            return problem
        import redis

        try:
            redis.Redis.from_url(self.settings.redis_url, socket_timeout=2).ping()
        except redis.RedisError as exc:
            return f"PING failed: {exc}"
        return None
