"""The three steps of the topology as plain Python, shared by the bolts, the spout, the
benchmarks' single-process loop and the tests: the topology changes nothing but where
they run.

- ``PhotoSource``: the queue side of the image spout (read, ack, fail → retry or dead letter,
  reclaim what a dead spout left pending).
- ``tag_blob``: one photo → a ``store.Result`` (a bad image is a *failed result*, never an
  exception, so Storm never replays it).
- ``ResultBatcher``: the DB writer's batching (by count and by age) with commit-then-ack.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotag.config import Settings
from autotag.errors import AutotagError, ImageError
from autotag.storage import photo_stream
from autotag.storage import postgres as store

if TYPE_CHECKING:
    from autotag.vision.tagger import Tagger

log = logging.getLogger(__name__)


# -- spout side ---------------------------------------------------------------------------


class PhotoSource:
    """Reads photos from the Redis stream for one spout task and settles them."""

    def __init__(self, settings: Settings, consumer: str, message_timeout_secs: int) -> None:
        self.settings = settings
        self.consumer = consumer
        self.redis = photo_stream.client(settings)
        self.inflight: dict[str, photo_stream.Entry] = {}
        # Entries idle longer than this on *another* consumer belong to a dead spout.
        self.stale_ms = (message_timeout_secs + 30) * 1000
        self._last_reclaim = 0.0
        self._pg: Any = None
        self.unacked: list[str] = []  # acks Redis missed (it was down); sent again later

    def recover_own_pending(self) -> int:
        """At start: what this consumer had in flight when it died counts as a failed attempt."""
        orphans = photo_stream.pending(self.redis, 1000, self.consumer, settings=self.settings)
        if not orphans:
            return 0
        entries = photo_stream.reclaim(
            self.redis, self.consumer, 0, len(orphans), settings=self.settings
        )
        for e in entries:
            self._retry(e, "the worker tagging it died (crash or restart)")
        return len(entries)

    def reclaim_stale(self, every_secs: float = 15.0) -> int:
        """Now and then: entries another (dead) spout left pending go back in the photo_stream."""
        now = time.monotonic()
        if now - self._last_reclaim < every_secs:
            return 0
        self._last_reclaim = now
        entries = photo_stream.reclaim(
            self.redis, self.consumer, self.stale_ms, 100, settings=self.settings
        )
        for e in entries:
            self._retry(e, "its spout died before it was tagged")
        return len(entries)

    def next_entries(self, count: int, block_ms: int) -> list[photo_stream.Entry]:
        entries = photo_stream.read(
            self.redis, self.consumer, count, block_ms, settings=self.settings
        )
        for e in entries:
            self.inflight[e.entry_id] = e
        return entries

    def ack(self, entry_id: str) -> None:
        self.inflight.pop(entry_id, None)
        try:
            photo_stream.ack(self.redis, entry_id, settings=self.settings)
        except Exception:
            self.unacked.append(entry_id)
            raise

    def flush_acks(self) -> None:
        """Send acks that failed while Redis was away (the photos are already stored)."""
        if self.unacked:
            photo_stream.ack(self.redis, self.unacked, settings=self.settings)
            self.unacked = []

    def fail(self, entry_id: str) -> str | None:
        """Storm gave up on the tuple (timeout or a crash): retry it, or dead-letter it."""
        entry = self.inflight.pop(entry_id, None)
        if entry is None:
            return None
        return self._retry(entry, "not tagged in time (timeout, or a worker crashed)")

    def _retry(self, entry: photo_stream.Entry, reason: str) -> str:
        attempts = entry.attempt + 1
        why = f"{reason}; attempt {attempts} of {self.settings.max_attempts}"
        outcome = photo_stream.retry_or_dead_letter(self.redis, entry, why, settings=self.settings)
        log.warning("photo %s (%s): %s -> %s", entry.photo_id, entry.source, why, outcome)
        if outcome == "dead":
            self._mark_failed(
                entry.photo_id, f"gave up after {attempts} attempts: {reason}", attempts
            )
        return outcome

    def _mark_failed(self, photo_id: str, reason: str, attempts: int) -> None:
        try:
            if self._pg is None or self._pg.closed:
                self._pg = store.connect(self.settings, migrate_schema=False)
            store.mark_failed(self._pg, photo_id, reason, attempts)
        except Exception as exc:  # noqa: BLE001 - the dead letter in Redis still records it
            log.error("photo %s: could not mark failed in Postgres: %s", photo_id, exc)
            self._pg = None


# -- autotag bolt side --------------------------------------------------------------------


def load_tagger(settings: Settings, bundle_id: str | None = None) -> Tagger:
    """A Tagger for bundle ``bundle_id`` (default: the active one) with these settings'
    decode limits, tagging threads and tag cut-offs: the bolt's own, for anyone to build."""
    from autotag.vision.decode import DecodeLimits
    from autotag.vision.features import FeatureOptions
    from autotag.vision.tagger import Tagger  # heavy (ONNX Runtime): only where it tags

    return Tagger.load(
        settings.models_dir,
        bundle_id,
        feature_options=FeatureOptions(settings.model_dirs, settings.tagging_threads),
        limits=DecodeLimits(settings.max_file_bytes, settings.max_pixels, settings.max_dimension),
        min_score=settings.min_tag_score,
        max_tags=settings.max_tags,
    )


class ActiveTagger:
    """A Tagger for the active bundle that follows ``models/ACTIVE``: when another bundle is
    activated, the next photo after the check interval is tagged with it (no resubmit)."""

    def __init__(self, settings: Settings, check_every_secs: float = 5.0) -> None:
        self.settings = settings
        self.check_every = check_every_secs
        self.tagger = load_tagger(settings)
        self._checked = time.monotonic()

    def current(self) -> Any:
        if time.monotonic() - self._checked >= self.check_every:
            self._checked = time.monotonic()
            from autotag.vision.bundle import active_bundle_id

            active = active_bundle_id(self.settings.models_dir)
            if active and active != self.tagger.model_version:
                log.info(
                    "active model changed: %s -> %s; loading it", self.tagger.model_version, active
                )
                self.tagger = load_tagger(self.settings)
        return self.tagger


def tag_blob(tagger: Any, photo_id: str, blob: str | Path) -> store.Result:
    """Tag one stored photo; any problem with the photo becomes a failed Result with a reason."""
    try:
        r = tagger.tag_file(Path(blob))
    except FileNotFoundError:
        return store.Result(photo_id, "failed", reason=f"photo file is missing: {blob}")
    except ImageError as exc:
        return store.Result(photo_id, "failed", reason=str(exc))
    except (AutotagError, ValueError, MemoryError) as exc:
        return store.Result(photo_id, "failed", reason=f"{type(exc).__name__}: {exc}")
    return store.Result(
        photo_id=photo_id,
        status="tagged",
        model_version=r.model_version,
        feature_set=r.feature_set,
        tags=list(r.tags),
        vector=r.vector,
        width=r.width,
        height=r.height,
    )


# -- DB writer side -----------------------------------------------------------------------


@dataclass
class ResultBatcher:
    """Collects results with their Storm tuples; writes a batch in one transaction, then acks.

    ``flush`` never raises for a database outage: it keeps the batch and retries later with
    back-off, so nothing is acked that was not committed and nothing is dropped.
    """

    settings: Settings
    ack: Callable[[Any], None]
    batch_size: int = 64
    max_age_secs: float = 1.0
    pending: list[tuple[store.Result, Any]] = field(default_factory=list)
    oldest: float = 0.0
    conn: Any = None
    retry_at: float = 0.0
    backoff: float = 0.5

    def add(self, result: store.Result, tup: Any) -> None:
        if not self.pending:
            self.oldest = time.monotonic()
        self.pending.append((result, tup))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def due(self) -> bool:
        return bool(self.pending) and time.monotonic() - self.oldest >= self.max_age_secs

    def flush(self) -> int:
        """Write everything pending; ack after commit. Returns the number of tuples acked."""
        if not self.pending or time.monotonic() < self.retry_at:
            return 0
        batch = self.pending
        try:
            if self.conn is None or self.conn.closed:
                self.conn = store.connect(self.settings, migrate_schema=False)
            store.write_results(self.conn, [r for r, _ in batch])
        except Exception as exc:  # noqa: BLE001 - outage: keep the batch, retry with back-off
            log.error(
                "DB write of %d results failed (%s); retrying in %.1fs",
                len(batch),
                exc,
                self.backoff,
            )
            self._drop_connection()
            self.retry_at = time.monotonic() + self.backoff
            self.backoff = min(self.backoff * 2, 10.0)
            return 0
        self.pending = []
        self.backoff = 0.5
        for _, tup in batch:
            self.ack(tup)
        return len(batch)

    def _drop_connection(self) -> None:
        try:
            if self.conn is not None:
                self.conn.close()
        except Exception:  # noqa: BLE001, S110 - already broken
            pass
        self.conn = None
