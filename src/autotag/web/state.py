"""What requests share: a small Postgres pool, the Redis photo stream, the similarity index,
the blob store and thumbnails. Connections go through ``storage.database`` and
``storage.item_stream``, so the services' own settings (addresses, passwords) apply: the
pool (psycopg_pool) opens each connection with ``database.connection_kwargs``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
from fastapi import HTTPException, Request

from autotag.config import ServiceSettings, Settings
from autotag.similarity.service import SimilarityService
from autotag.storage import database
from autotag.storage.blobs import BlobStore
from autotag.storage.item_stream import ItemStream
from autotag.web.live import LiveFeed
from autotag.web.thumbnails import Thumbnails

ERRORS = "connections_errors"  # psycopg_pool's count of failed connection attempts


class ConnectionPool:
    """Up to ``size`` reusable autocommit Postgres connections for the request threads.

    A psycopg_pool pool: connections are opened in the background with the storage layer's
    own arguments (the application role, its password read at each connect; the opener
    sets no session state, so there is nothing to configure), checked alive when lent (a
    restarted Postgres costs no request), and closed when idle for long. The first request
    opens one connection through ``database.connect`` itself, which checks that the schema
    is current. A request waits at most ``wait_secs`` for a connection; if the pool cannot
    connect at all, it is told why at once, in the opener's own words (``ServiceError``:
    Postgres down, login refused), instead of waiting that long.
    """

    def __init__(self, services: ServiceSettings, size: int = 8, wait_secs: float = 30.0) -> None:
        self.services = services
        self.wait_secs = wait_secs
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = (
            psycopg_pool.ConnectionPool(
                kwargs=lambda: database.connection_kwargs(services),
                min_size=0,
                max_size=size,
                open=False,
                check=psycopg_pool.ConnectionPool.check_connection,
                name="autotag-web",
            )
        )
        self._opened = False
        self._lock = threading.Lock()

    def _lend(self) -> psycopg.Connection[Any]:
        with self._lock:
            if not self._opened:
                # Postgres answers, the login works, the schema is current: or a ServiceError.
                database.connect(self.services).close()
                self._pool.open()
                self._opened = True
        deadline = time.monotonic() + self.wait_secs
        while True:
            errors = self._pool.get_stats().get(ERRORS, 0)
            try:
                return self._pool.getconn(timeout=max(0.01, min(1.0, deadline - time.monotonic())))
            except psycopg_pool.PoolTimeout:
                if self._pool.get_stats().get(ERRORS, 0) > errors:
                    # The pool failed to connect meanwhile: the opener says why (ServiceError),
                    # or, if Postgres is back, the pool's next attempt will do.
                    database.connect(self.services).close()
                if time.monotonic() >= deadline:
                    raise HTTPException(503, "too busy: no database connection") from None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self._lend()
        try:
            with database.pg_errors(self.services):
                yield conn
        finally:
            self._pool.putconn(conn)  # rolled back if left in a transaction, dropped if broken

    def close(self) -> None:
        self._pool.close()


class WebState:
    """The app's shared resources, made on first use and closed at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = ConnectionPool(settings.services)
        self.blobs = BlobStore(settings.blob_dir)
        self.thumbnails = Thumbnails(self.blobs, settings.data_dir / "thumbnails", settings)
        self.live = LiveFeed(settings)
        self._stream: ItemStream | None = None
        self._similarity: SimilarityService | None = None
        self._lock = threading.Lock()
        self.cache: dict[str, tuple[float, Any]] = {}  # small query results, by key
        self.uploads = asyncio.Semaphore(4)  # photos stored at once (each holds a spool file)

    @property
    def stream(self) -> ItemStream:
        with self._lock:
            if self._stream is None:
                self._stream = ItemStream(self.settings.services, self.settings.queue)
            return self._stream

    def similarity(self) -> SimilarityService:
        """The one similarity service, caught up with Postgres: loaded on first use, then
        only refreshed, so repeated queries never reload the index."""
        with self._lock:
            if self._similarity is None:
                s = self.settings
                self._similarity = SimilarityService(
                    s.services, "exact", s.tagging.feature_set, persist=True
                )
            service = self._similarity
        service.refresh()  # the first call loads
        return service

    def close(self) -> None:
        self.live.close()
        self.pool.close()
        if self._stream is not None:
            self._stream.redis.close()
        if self._similarity is not None:
            self._similarity.close()


def web_state(request: Request) -> WebState:
    """FastAPI dependency: the app's WebState."""
    return request.app.state.web
