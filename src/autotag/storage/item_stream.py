"""The Redis stream that feeds the topology: intake, consumer group, retries, dead letters.

Entries carry ``photo_id``, ``source``, ``attempt`` (attempts charged) and ``replays``
(re-deliveries that charged none); the photo's bytes are found from its id in the blob store,
so nothing in an entry names a file. The spout reads through the consumer group, so an entry
a worker took but never acked stays pending: its own spout claims it back at restart
(``claim_own_pending``), another spout once it has been idle long (``reclaim``). An acked
entry is also deleted, so the stream's length is the work not yet done.

A bolt marks the photo it is tagging (``mark_working``), so after a crash only that photo is
charged an attempt (``take_working``). Dead letters are capped (``MAXLEN ~``).

``ItemStream`` holds its Redis connection and the stream's names, as RQ's ``Queue`` does.
``client`` is the one way autotag opens a Redis connection; it takes the ``ServiceSettings``
section, and a stream the ``QueueSettings`` section besides.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.typing import EncodableT, FieldT, StreamIdT, StreamRangeResponse

from autotag.config import QueueSettings, ServiceSettings
from autotag.errors import ServiceError
from autotag.storage import credentials

# Reads block on the server; the socket timeout must outlast the longest block.
SOCKET_TIMEOUT = 10.0
MAX_BLOCK_MS = int(SOCKET_TIMEOUT * 1000) - 2000

_T = TypeVar("_T")


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def service_error(
    services: ServiceSettings, exc: BaseException, host: str | None = None
) -> ServiceError:
    """A one-line ServiceError for a Redis connection failure."""
    where = f"{host or services.redis_address}:{services.port(services.redis_port)}"
    cause = str(exc).strip() or type(exc).__name__
    m = re.search(r"connecting to \S+?\. (.+)$", cause)  # redis-py repeats the address
    if m:
        cause = m.group(1).rstrip(".")
    return ServiceError(f"Redis at {where} is not answering: {cause} (run `autotag cluster up`)")


@contextmanager
def redis_errors(services: ServiceSettings, host: str | None = None) -> Iterator[None]:
    """Turn redis-py connection/timeout errors into a one-line ServiceError."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise service_error(services, exc, host) from exc


def client(
    services: ServiceSettings,
    *,
    check: bool = False,
    host: str | None = None,
    socket_timeout: float = SOCKET_TIMEOUT,
    retries: int = 3,
) -> redis.Redis:
    """A client for autotag's Redis: short connect timeout, retries (timeouts, drops) with backoff.

    With ``check``, PING now and raise ServiceError if Redis is down. The password is read
    from the run dir's secrets (ServiceError if there is none yet). ``host`` overrides where
    Redis is reached (the daemon's health check asks its own bind address).
    """
    r = redis.Redis(
        host=host or services.redis_address,
        port=services.port(services.redis_port),
        password=credentials.read(services.run_dir, credentials.REDIS),
        db=0,
        decode_responses=True,
        socket_connect_timeout=min(3.0, socket_timeout),
        socket_timeout=socket_timeout,
        socket_keepalive=True,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries),
        health_check_interval=30,
        client_name="autotag",
    )
    if check:
        with redis_errors(services, host):
            r.ping()
    return r


@dataclass(frozen=True)
class Entry:
    """One stream entry: an item to tag (a photo, or a video segment by its segment key)."""

    entry_id: str
    item_id: str
    source: str
    attempt: int
    replays: int = 0

    def as_tuple(self) -> list[Any]:
        """Spout → bolt tuple values (``autotag.contract.PHOTO_FIELDS``)."""
        return [self.item_id, self.source, self.attempt]


def _entry(entry_id: Any, fields: dict[Any, Any] | None) -> Entry | None:
    if not fields:
        return None  # deleted while pending
    f = {_s(k): _s(v) for k, v in fields.items()}
    return Entry(
        _s(entry_id),
        f.get("photo_id", ""),  # the stream's field name for any item's id
        f.get("source", ""),
        _int(f.get("attempt")),
        _int(f.get("replays")),
    )


def _int(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


@dataclass(frozen=True)
class PendingEntry:
    entry_id: str
    consumer: str
    idle_ms: int
    deliveries: int


@dataclass(frozen=True)
class DeadLetter:
    entry_id: str
    item_id: str
    reason: str
    attempts: int
    at: float  # unix time, from the entry id

    def as_dict(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "photo_id": self.item_id,
            "reason": self.reason,
            "attempts": self.attempts,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
        }


class ItemStream:
    """autotag's photo stream and its dead letters on one Redis connection."""

    def __init__(
        self,
        services: ServiceSettings,
        queue: QueueSettings,
        *,
        connection: redis.Redis | None = None,
        check: bool = False,
        name: str | None = None,
        dead_name: str | None = None,
    ) -> None:
        """``name`` / ``dead_name`` pick another stream with the same machinery (video
        segments use ``queue.video_stream``); the default is the photo stream."""
        self.services = services
        self.redis = connection if connection is not None else client(services, check=check)
        self.name = name or queue.stream
        self.group = queue.consumer_group
        self.dead_name = dead_name or queue.dead_letter_stream
        self.max_attempts = queue.max_attempts
        self.max_replays = queue.max_uncharged_replays
        self.dead_cap = queue.dead_letter_cap
        self._group_ready = False

    def errors(self) -> contextlib.AbstractContextManager[None]:
        """Turn this connection's failures into a one-line ServiceError."""
        return redis_errors(self.services)

    def ensure_group(self, *, force: bool = False) -> None:
        """Create the stream and consumer group if missing (idempotent; from the start, id 0)."""
        if self._group_ready and not force:
            return
        try:
            self.redis.xgroup_create(self.name, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _with_group(self, fn: Callable[[], _T]) -> _T:
        """Run fn; if Redis lost the group (restart without data), recreate it and retry once."""
        self.ensure_group()
        try:
            return fn()
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group(force=True)
            return fn()

    def enqueue(self, photo_id: str, source: str, attempt: int = 0) -> str:
        """Append a photo to the stream; returns the entry id."""
        self.ensure_group()
        fields: dict[FieldT, EncodableT] = {
            "photo_id": photo_id,
            "source": source or "",
            "attempt": attempt,
        }
        return _s(self.redis.xadd(self.name, fields))

    def read(self, consumer: str, count: int = 10, block_ms: int | None = 1000) -> list[Entry]:
        """New entries for this consumer (XREADGROUP >), waiting up to block_ms for some."""
        block = None if block_ms is None else max(0, min(int(block_ms), MAX_BLOCK_MS))
        if block == 0:
            block = None  # BLOCK 0 would wait forever; never block in that case

        def go() -> Any:
            return self.redis.xreadgroup(
                self.group, consumer, {self.name: ">"}, count=count, block=block
            )

        out: list[Entry] = []
        for _stream, messages in self._with_group(go) or []:
            for entry_id, fields in messages:
                e = _entry(entry_id, fields)
                if e is not None:
                    out.append(e)
        return out

    def ack(self, entry_ids: str | Sequence[str]) -> int:
        """Acknowledge and delete entries (done: tagged, failed-for-good or dead-lettered)."""
        ids = [entry_ids] if isinstance(entry_ids, str) else list(entry_ids)
        if not ids:
            return 0
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(self.name, self.group, *ids)
        pipe.xdel(self.name, *ids)
        acked, _deleted = pipe.execute()
        return int(acked)

    def reclaim(self, consumer: str, min_idle_ms: int, count: int = 100) -> list[Entry]:
        """Take over entries pending longer than min_idle_ms on any consumer (a dead worker's).

        Pending entries whose stream entry was already deleted are dropped by Redis.
        """
        out: list[Entry] = []
        start = "0-0"
        while len(out) < count:

            def claim(start: str = start) -> list[Any]:
                return self.redis.xautoclaim(
                    self.name, self.group, consumer, min_idle_ms, start, count=count - len(out)
                )

            resp = self._with_group(claim)
            start = _s(resp[0])
            for entry_id, fields in resp[1]:
                e = _entry(entry_id, fields)
                if e is not None:
                    out.append(e)
            if start == "0-0":
                break
        return out

    def claim_own_pending(self, consumer: str, count: int = 1000) -> list[Entry]:
        """This consumer's own pending entries (what it had in flight when it died), and no
        other consumer's: XPENDING for the consumer, then XCLAIM those ids to it."""
        ids: list[StreamIdT] = [p.entry_id for p in self.pending(count, consumer)]
        if not ids:
            return []
        claimed = self._with_group(
            lambda: self.redis.xclaim(self.name, self.group, consumer, 0, ids)
        )
        out = []
        # Entries with their fields (the list of bare ids is XCLAIM's JUSTID form).
        for entry_id, fields in cast(StreamRangeResponse, claimed or []):
            e = _entry(entry_id, fields)
            if e is not None:
                out.append(e)
        return out

    def pending(self, count: int = 100, consumer: str | None = None) -> list[PendingEntry]:
        """Delivered-but-unacked entries, oldest first, with idle time and delivery count."""
        rows = self._with_group(
            lambda: self.redis.xpending_range(
                self.name, self.group, "-", "+", count, consumername=consumer
            )
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

    def pending_count(self) -> int:
        """How many entries are delivered to a consumer but not yet acked."""
        info = self._with_group(lambda: self.redis.xpending(self.name, self.group))
        return int(info["pending"]) if info else 0

    def backlog_len(self) -> int:
        """Entries in the stream not yet acked (acked ones are deleted): waiting + pending."""
        return int(self.redis.xlen(self.name))

    def dead_letter(self, photo_id: str, reason: str, attempts: int) -> str:
        """Record a photo that could not be processed after its attempts; returns the entry id.
        The dead-letter stream keeps about the newest ``dead_letter_cap`` (MAXLEN ~)."""
        fields: dict[FieldT, EncodableT] = {
            "photo_id": photo_id,
            "reason": reason,
            "attempts": attempts,
        }
        return _s(self.redis.xadd(self.dead_name, fields, maxlen=self.dead_cap, approximate=True))

    def dead_letters(self, count: int = 100) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""
        out = []
        for entry_id, fields in self.redis.xrevrange(self.dead_name, count=count) or []:
            f = {_s(k): _s(v) for k, v in (fields or {}).items()}
            eid = _s(entry_id)
            try:
                attempts = int(f.get("attempts", "0"))
            except ValueError:
                attempts = 0
            at = int(eid.split("-", 1)[0]) / 1000.0
            out.append(DeadLetter(eid, f.get("photo_id", ""), f.get("reason", ""), attempts, at))
        return out

    def has_entry(self, entry_id: str) -> bool:
        """Is this entry still on the stream? An entry is deleted when it is acked after
        success, or when its photo or video is deleted (``storage.deletion``)."""
        return bool(self.redis.xrange(self.name, min=entry_id, max=entry_id, count=1))

    def retry_or_dead_letter(self, entry: Entry, reason: str, *, charge: bool = True) -> str:
        """After a failed delivery: re-enqueue, or dead-letter once ``max_attempts`` attempts are
        charged; the old entry is acked in the same MULTI.

        ``charge=False`` (the photo was not being tagged when its worker died or its tuple
        timed out) re-enqueues it with the same attempt count and one more replay, until
        ``max_uncharged_replays``; after that replays are charged, so nothing loops forever.
        Returns 'requeued', 'replayed' or 'dead'.
        """
        replay = not charge and entry.replays < self.max_replays
        attempts = entry.attempt if replay else entry.attempt + 1
        pipe = self.redis.pipeline(transaction=True)
        if attempts >= self.max_attempts:
            pipe.xadd(
                self.dead_name,
                {"photo_id": entry.item_id, "reason": reason, "attempts": attempts},
                maxlen=self.dead_cap,
                approximate=True,
            )
            outcome = "dead"
        else:
            fields: dict[FieldT, EncodableT] = {
                "photo_id": entry.item_id,
                "source": entry.source,
                "attempt": attempts,
                "replays": entry.replays + 1 if replay else entry.replays,
            }
            pipe.xadd(self.name, fields)
            outcome = "replayed" if replay else "requeued"
        pipe.xack(self.name, self.group, entry.entry_id)
        pipe.xdel(self.name, entry.entry_id)
        pipe.execute()
        return outcome

    # -- which photo a bolt is tagging ----------------------------------------------------

    def _working_key(self, photo_id: str) -> str:
        return f"{self.name}:working:{photo_id}"

    def mark_working(self, photo_id: str, ttl_secs: int) -> None:
        """A bolt is about to decode and tag this photo (the mark expires after ttl_secs)."""
        self.redis.set(self._working_key(photo_id), "1", ex=max(1, int(ttl_secs)))

    def clear_working(self, photo_id: str) -> None:
        """The bolt is done with the photo (tagged, failed, or stopped from outside)."""
        self.redis.delete(self._working_key(photo_id))

    def take_working(self, photo_id: str) -> bool:
        """True if the photo was marked in progress (its delivery died with it); clears it."""
        return bool(self.redis.delete(self._working_key(photo_id)))


def segment_stream(
    services: ServiceSettings, queue: QueueSettings, connection: redis.Redis | None = None
) -> ItemStream:
    """The Redis stream of video segments (the photo stream's machinery, another name)."""
    return ItemStream(
        services,
        queue,
        connection=connection,
        name=queue.video_stream,
        dead_name=queue.video_dead_letter_stream,
    )
