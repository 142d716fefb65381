"""The Redis stream that feeds the topology: intake, consumer group, retries, dead letters.

Entries carry ``photo_id``, ``blob``, ``source`` and ``attempt`` (ARCHITECTURE.md). The
spout reads through the consumer group, so an entry a worker took but never acked stays
pending and is taken over with ``reclaim`` (XAUTOCLAIM) once that worker is gone. An acked
entry is also deleted, so the stream's length is the work not yet done.

Every function takes a client, so callers decide how to (re)connect; ``client`` builds one
with timeouts and retry-on-timeout.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from autotag.config import Settings
from autotag.errors import ServiceError

# Reads block on the server; the socket timeout must outlast the longest block.
SOCKET_TIMEOUT = 10.0
MAX_BLOCK_MS = int(SOCKET_TIMEOUT * 1000) - 2000

_groups_ready: set[tuple[int, str, str]] = set()


def _settings(settings: Settings | None) -> Settings:
    if settings is not None:
        return settings
    from autotag.config import settings as current

    return current()


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def service_error(settings: Settings, exc: BaseException) -> ServiceError:
    """A one-line ServiceError for a Redis connection failure."""
    where = f"{settings.host}:{settings.port(settings.redis_port)}"
    cause = str(exc).strip() or type(exc).__name__
    m = re.search(r"connecting to \S+?\. (.+)$", cause)  # redis-py repeats the address
    if m:
        cause = m.group(1).rstrip(".")
    return ServiceError(f"Redis at {where} is not answering: {cause} (run `autotag cluster up`)")


@contextmanager
def redis_errors(settings: Settings | None = None) -> Iterator[None]:
    """Turn redis-py connection/timeout errors into a one-line ServiceError."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise service_error(_settings(settings), exc) from exc


def client(settings: Settings | None = None, *, check: bool = False) -> redis.Redis:
    """A client for autotag's Redis: short connect timeout, retries (timeouts, drops) with backoff.

    With ``check``, PING now and raise ServiceError if Redis is down.
    """
    s = _settings(settings)
    r = redis.Redis(
        host=s.host,
        port=s.port(s.redis_port),
        db=0,
        decode_responses=True,
        socket_connect_timeout=3,
        socket_timeout=SOCKET_TIMEOUT,
        socket_keepalive=True,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), 3),
        health_check_interval=30,
        client_name="autotag",
    )
    if check:
        with redis_errors(s):
            r.ping()
    return r


def ensure_group(r: redis.Redis, settings: Settings | None = None, *, force: bool = False) -> None:
    """Create the stream and consumer group if missing (idempotent; from the start, id 0)."""
    s = _settings(settings)
    key = (id(r), s.stream, s.consumer_group)
    if key in _groups_ready and not force:
        return
    try:
        r.xgroup_create(s.stream, s.consumer_group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    _groups_ready.add(key)


@dataclass(frozen=True)
class Entry:
    """One stream entry: a photo to tag."""

    entry_id: str
    photo_id: str
    blob: str
    source: str
    attempt: int

    def as_tuple(self) -> list[Any]:
        """Spout → bolt tuple values (photo_id, blob, source, attempt)."""
        return [self.photo_id, self.blob, self.source, self.attempt]


def _entry(entry_id: Any, fields: dict[Any, Any] | None) -> Entry | None:
    if not fields:
        return None  # deleted while pending
    f = {_s(k): _s(v) for k, v in fields.items()}
    try:
        attempt = int(f.get("attempt", "0"))
    except ValueError:
        attempt = 0
    return Entry(
        _s(entry_id), f.get("photo_id", ""), f.get("blob", ""), f.get("source", ""), attempt
    )


def enqueue(
    r: redis.Redis,
    photo_id: str,
    blob: str,
    source: str,
    attempt: int = 0,
    *,
    settings: Settings | None = None,
) -> str:
    """Append a photo to the stream; returns the entry id."""
    s = _settings(settings)
    ensure_group(r, s)
    fields = {"photo_id": photo_id, "blob": str(blob), "source": source or "", "attempt": attempt}
    return _s(r.xadd(s.stream, fields))  # type: ignore[arg-type]


def _with_group(r: redis.Redis, s: Settings, fn: Any) -> Any:
    """Run fn; if Redis lost the group (restart without data), recreate it and retry once."""
    ensure_group(r, s)
    try:
        return fn()
    except redis.ResponseError as exc:
        if "NOGROUP" not in str(exc):
            raise
        ensure_group(r, s, force=True)
        return fn()


def read(
    r: redis.Redis,
    consumer: str,
    count: int = 10,
    block_ms: int | None = 1000,
    *,
    settings: Settings | None = None,
) -> list[Entry]:
    """New entries for this consumer (XREADGROUP >), waiting up to block_ms for some."""
    s = _settings(settings)
    block = None if block_ms is None else max(0, min(int(block_ms), MAX_BLOCK_MS))
    if block == 0:
        block = None  # BLOCK 0 would wait forever; never block in that case

    def go() -> Any:
        return r.xreadgroup(s.consumer_group, consumer, {s.stream: ">"}, count=count, block=block)

    resp = _with_group(r, s, go) or []
    out: list[Entry] = []
    for _stream, messages in resp:
        for entry_id, fields in messages:
            e = _entry(entry_id, fields)
            if e is not None:
                out.append(e)
    return out


def ack(r: redis.Redis, entry_ids: str | Sequence[str], *, settings: Settings | None = None) -> int:
    """Acknowledge and delete entries (done: tagged, failed-for-good or dead-lettered)."""
    s = _settings(settings)
    ids = [entry_ids] if isinstance(entry_ids, str) else list(entry_ids)
    if not ids:
        return 0
    pipe = r.pipeline(transaction=True)
    pipe.xack(s.stream, s.consumer_group, *ids)
    pipe.xdel(s.stream, *ids)
    acked, _deleted = pipe.execute()
    return int(acked)


def reclaim(
    r: redis.Redis,
    consumer: str,
    min_idle_ms: int,
    count: int = 100,
    *,
    settings: Settings | None = None,
) -> list[Entry]:
    """Take over entries pending longer than min_idle_ms on any consumer (a dead worker's).

    Pending entries whose stream entry was already deleted are dropped by Redis.
    """
    s = _settings(settings)
    out: list[Entry] = []
    start = "0-0"
    while len(out) < count:
        resp = _with_group(
            r,
            s,
            lambda start=start: r.xautoclaim(
                s.stream, s.consumer_group, consumer, min_idle_ms, start, count=count - len(out)
            ),
        )
        start = _s(resp[0])
        for entry_id, fields in resp[1]:
            e = _entry(entry_id, fields)
            if e is not None:
                out.append(e)
        if start == "0-0":
            break
    return out


@dataclass(frozen=True)
class PendingEntry:
    entry_id: str
    consumer: str
    idle_ms: int
    deliveries: int


def pending(
    r: redis.Redis,
    count: int = 100,
    consumer: str | None = None,
    *,
    settings: Settings | None = None,
) -> list[PendingEntry]:
    """Delivered-but-unacked entries, oldest first, with idle time and delivery count."""
    s = _settings(settings)
    rows = _with_group(
        r,
        s,
        lambda: r.xpending_range(
            s.stream, s.consumer_group, "-", "+", count, consumername=consumer
        ),
    )
    return [
        PendingEntry(
            _s(x["message_id"]),
            _s(x["consumer"]),
            int(x["time_since_delivered"]),
            int(x["times_delivered"]),
        )
        for x in rows
    ]


def pending_count(r: redis.Redis, *, settings: Settings | None = None) -> int:
    """How many entries are delivered to a consumer but not yet acked."""
    s = _settings(settings)
    info = _with_group(r, s, lambda: r.xpending(s.stream, s.consumer_group))
    return int(info["pending"]) if info else 0


def backlog_len(r: redis.Redis, *, settings: Settings | None = None) -> int:
    """Entries in the stream not yet acked (acked ones are deleted): waiting + pending."""
    s = _settings(settings)
    return int(r.xlen(s.stream))


def dead_letter(
    r: redis.Redis,
    photo_id: str,
    reason: str,
    attempts: int,
    *,
    settings: Settings | None = None,
) -> str:
    """Record a photo that could not be processed after its attempts; returns the entry id."""
    s = _settings(settings)
    fields = {"photo_id": photo_id, "reason": reason, "attempts": attempts}
    return _s(r.xadd(s.dead_letter_stream, fields))  # type: ignore[arg-type]


@dataclass(frozen=True)
class DeadLetter:
    entry_id: str
    photo_id: str
    reason: str
    attempts: int
    at: float  # unix time, from the entry id

    def as_dict(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "photo_id": self.photo_id,
            "reason": self.reason,
            "attempts": self.attempts,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
        }


def dead_letters(
    r: redis.Redis, count: int = 100, *, settings: Settings | None = None
) -> list[DeadLetter]:
    """The most recent dead letters, newest first."""
    s = _settings(settings)
    out = []
    for entry_id, fields in r.xrevrange(s.dead_letter_stream, count=count):
        f = {_s(k): _s(v) for k, v in fields.items()}
        eid = _s(entry_id)
        try:
            attempts = int(f.get("attempts", "0"))
        except ValueError:
            attempts = 0
        at = int(eid.split("-", 1)[0]) / 1000.0
        out.append(DeadLetter(eid, f.get("photo_id", ""), f.get("reason", ""), attempts, at))
    return out


def retry_or_dead_letter(
    r: redis.Redis,
    entry: Entry,
    reason: str,
    *,
    settings: Settings | None = None,
) -> str:
    """After a failed attempt: re-enqueue with attempt+1, or dead-letter once max_attempts is
    reached; the old entry is acked in the same MULTI. Returns 'requeued' or 'dead'."""
    s = _settings(settings)
    attempts = entry.attempt + 1
    pipe = r.pipeline(transaction=True)
    if attempts >= s.max_attempts:
        pipe.xadd(
            s.dead_letter_stream,
            {"photo_id": entry.photo_id, "reason": reason, "attempts": attempts},
        )
        outcome = "dead"
    else:
        pipe.xadd(
            s.stream,
            {
                "photo_id": entry.photo_id,
                "blob": entry.blob,
                "source": entry.source,
                "attempt": attempts,
            },
        )
        outcome = "requeued"
    pipe.xack(s.stream, s.consumer_group, entry.entry_id)
    pipe.xdel(s.stream, entry.entry_id)
    pipe.execute()
    return outcome
