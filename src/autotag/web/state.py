"""What requests share: a small Postgres pool, the Redis photo stream, the similarity index,
the blob store and thumbnails. Connections go through ``storage.database.connect`` and
``storage.item_stream``, so the services' own settings (addresses, passwords) apply.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from fastapi import HTTPException, Request
from psycopg.pq import TransactionStatus

from autotag.config import Settings
from autotag.similarity.service import SimilarityService
from autotag.storage import database
from autotag.storage.blobs import BlobStore
from autotag.storage.item_stream import ItemStream
from autotag.web.live import LiveFeed
from autotag.web.thumbnails import Thumbnails


class ConnectionPool:
    """A few reusable autocommit Postgres connections for the request threads."""

    def __init__(self, settings: Settings, size: int = 8) -> None:
        self.settings = settings
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        if not self._slots.acquire(timeout=30):
            raise HTTPException(503, "too busy: no database connection")
        conn: psycopg.Connection[Any] | None = None
        try:
            with self._lock:
                while self._idle and conn is None:
                    candidate = self._idle.pop()
                    if not candidate.closed:
                        conn = candidate
            if conn is None:
                conn = database.connect(self.settings)
            with database.pg_errors(self.settings):
                yield conn
        finally:
            if conn is not None:
                if not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE:
                    with self._lock:
                        self._idle.append(conn)
                else:
                    conn.close()
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            for c in self._idle:
                c.close()
            self._idle.clear()


class WebState:
    """The app's shared resources, made on first use and closed at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = ConnectionPool(settings)
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
                self._stream = ItemStream(self.settings)
            return self._stream

    def similarity(self) -> SimilarityService:
        """The one similarity service, caught up with Postgres: loaded on first use, then
        only refreshed, so repeated queries never reload the index."""
        with self._lock:
            if self._similarity is None:
                self._similarity = SimilarityService(self.settings, persist=True)
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
