"""The live feed: photos as their results reach Postgres, pushed as server-sent events.

The DB writer announces each committed batch with one ``pg_notify`` carrying the photo
ids (``storage.writer.NOTIFY_CHANNEL``). One listener thread per app holds a LISTEN
connection, looks each batch's photos up once (status, source, best tags) and hands the
summaries to every open event stream; nothing polls the tables. The thread starts with the
first subscriber and reconnects after an outage.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from autotag.config import Settings
from autotag.errors import ServiceError
from autotag.storage import database, lookups
from autotag.storage.writer import listen_for_results

log = logging.getLogger(__name__)

HEARTBEAT_SECS = 15.0
QUEUE_SIZE = 256


class LiveFeed:
    """Fans Postgres notifications out to asyncio subscribers (one queue per event stream)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict]]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()  # set while a LISTEN connection is up

    # -- subscribers (event loop side) --------------------------------------------------------
    def subscribe(self) -> asyncio.Queue[dict]:
        queue: asyncio.Queue[dict] = asyncio.Queue(QUEUE_SIZE)
        with self._lock:
            self._subscribers.add((asyncio.get_running_loop(), queue))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="live-feed", daemon=True)
                self._thread.start()
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict]) -> None:
        with self._lock:
            self._subscribers = {(lp, q) for lp, q in self._subscribers if q is not queue}

    async def events(self, is_disconnected: Any) -> AsyncIterator[str]:
        """``text/event-stream`` chunks for one client until it goes away or the app stops."""
        queue = self.subscribe()
        try:
            yield "retry: 2000\n\n"
            while not self._stop.is_set():
                try:
                    item = await asyncio.wait_for(queue.get(), HEARTBEAT_SECS)
                except TimeoutError:
                    if await is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: photo\ndata: {json.dumps(item, default=str)}\n\n"
        finally:
            self.unsubscribe(queue)

    def _publish(self, items: list[dict]) -> None:
        with self._lock:
            targets = list(self._subscribers)
        for loop, queue in targets:
            for item in items:
                try:
                    loop.call_soon_threadsafe(_offer, queue, item)
                except RuntimeError:  # that loop is closed: the stream is gone
                    self.unsubscribe(queue)

    # -- the listener thread ------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with database.connect(self.settings.services, migrate_schema=False) as conn:
                    listen_for_results(conn)
                    self.listening.set()
                    backoff = 0.5
                    self._listen(conn)
            except (ServiceError, psycopg.Error) as exc:
                log.warning("live feed: %s; reconnecting in %.1fs", exc, backoff)
            finally:
                self.listening.clear()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        while not self._stop.is_set():
            ids: list[str] = []
            for note in conn.notifies(timeout=0.5):
                ids += [pid for pid in note.payload.split(",") if pid]
            if ids:
                self._publish(lookups.summaries(conn, list(dict.fromkeys(ids))))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _offer(queue: asyncio.Queue[dict], item: dict) -> None:
    """Queue an item for a subscriber; a subscriber too slow to keep up loses the oldest."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)


router = APIRouter(tags=["photos"])


@router.get(
    "/live",
    summary="Server-sent events: one `photo` event per result as it reaches Postgres",
    response_class=StreamingResponse,
)
async def live(request: Request) -> StreamingResponse:
    feed: LiveFeed = request.app.state.web.live
    return StreamingResponse(
        feed.events(request.is_disconnected),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
