"""The queue side of the photo and segment spouts: read items, settle them, reclaim what the
dead left.

An item is a photo or a video segment (by its segment key). Ack → the entry is acknowledged
and deleted. Fail (timeout, crash) → re-queued with its attempt count raised, or
dead-lettered after ``max_attempts``; a dead-lettered item is handed back as ``GivenUp``, which
the spout turns into a failed result for its writer, so the writer stays the only writer of
tagging outcomes.

Only the photo that was being tagged when its worker died is charged an attempt: the bolt
marks a photo in progress while it tags it (``pipeline.tag_step.TagStep``), and a failed
delivery without that mark (a neighbour crashed the worker, a database outage timed the
tuple out) is replayed without charge, up to ``max_uncharged_replays`` times.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from autotag.storage.item_stream import Entry

log = logging.getLogger(__name__)


class Stream(Protocol):
    """What ItemSource needs of the photo stream (``storage.item_stream.ItemStream``)."""

    max_attempts: int
    max_replays: int

    def read(self, consumer: str, count: int = ..., block_ms: int | None = ...) -> list[Entry]: ...
    def ack(self, entry_ids: str | list[str]) -> int: ...
    def reclaim(self, consumer: str, min_idle_ms: int, count: int = ...) -> list[Entry]: ...
    def claim_own_pending(self, consumer: str, count: int = ...) -> list[Entry]: ...
    def take_working(self, item_id: str) -> bool: ...
    def has_entry(self, entry_id: str) -> bool: ...
    def retry_or_dead_letter(self, entry: Entry, reason: str, *, charge: bool = ...) -> str: ...


@dataclass(frozen=True)
class GivenUp:
    """An item that ran out of attempts: its id, why, and the attempts it used."""

    item_id: str
    reason: str
    attempts: int


class ItemSource:
    """Reads photos from the stream for one spout task and settles them."""

    def __init__(
        self, stream: Stream, consumer: str, message_timeout_secs: int, ack_batch: int = 16
    ) -> None:
        self.stream = stream
        self.consumer = consumer
        self.inflight: dict[str, Entry] = {}
        # Entries idle longer than this on *another* consumer belong to a dead spout.
        self.stale_ms = (message_timeout_secs + 30) * 1000
        self._last_reclaim = 0.0
        self.unacked: list[str] = []  # acks not yet sent (held back, or Redis was down)
        self.ack_batch = ack_batch
        self.dead: list[GivenUp] = []  # dead-lettered items for the writer

    def recover_own_pending(self) -> int:
        """At start: what this consumer (and no other) had in flight when it died is settled
        as a failed delivery."""
        entries = self.stream.claim_own_pending(self.consumer, 1000)
        for e in entries:
            self._retry(e, "the worker tagging it died (crash or restart)")
        return len(entries)

    def reclaim_stale(self, every_secs: float = 15.0) -> int:
        """Now and then: entries another (dead) spout left pending go back in the queue."""
        now = time.monotonic()
        if now - self._last_reclaim < every_secs:
            return 0
        self._last_reclaim = now
        entries = self.stream.reclaim(self.consumer, self.stale_ms, 100)
        for e in entries:
            self._retry(e, "its spout died before it was tagged")
        return len(entries)

    def next_entries(self, count: int, block_ms: int) -> list[Entry]:
        entries = self.stream.read(self.consumer, count, block_ms)
        for e in entries:
            self.inflight[e.entry_id] = e
        return entries

    def ack(self, entry_id: str) -> None:
        """The photo is stored: acknowledge it in Redis with the next ``flush_acks``.

        Acks arrive one by one; sending them in groups saves a Redis round trip per photo.
        The last photo in flight sends them at once (a paused topology holds none back). An
        ack still held when the spout dies only means a replay, which the DB writer's
        idempotent writes absorb.
        """
        self.inflight.pop(entry_id, None)
        self.unacked.append(entry_id)
        if len(self.unacked) >= self.ack_batch or not self.inflight:
            self.flush_acks()

    def flush_acks(self) -> None:
        """Send the acks held back (also those that failed while Redis was away)."""
        if self.unacked:
            held, self.unacked = self.unacked, []
            try:
                self.stream.ack(held)
            except Exception:
                self.unacked = held + self.unacked
                raise

    def fail(self, entry_id: str) -> str | None:
        """Storm gave up on the tuple (timeout or a crash): retry it, or dead-letter it."""
        entry = self.inflight.pop(entry_id, None)
        if entry is None:
            return None
        return self._retry(entry, "not tagged in time (timeout, or a worker crashed)")

    def take_dead(self) -> list[GivenUp]:
        """The items given up since the last call, for the spout to hand to its writer."""
        dead, self.dead = self.dead, []
        return dead

    def _retry(self, entry: Entry, reason: str) -> str:
        """Charge the attempt if the photo was being tagged when its delivery died; otherwise
        replay it uncharged (bounded by the stream's ``max_replays``). An entry no longer on
        the stream was taken off by a delete of its photo (or video): it is neither retried
        nor dead-lettered."""
        if not self.stream.has_entry(entry.entry_id):
            self.stream.take_working(entry.item_id)
            log.info("item %s was deleted while in flight: not retried", entry.item_id)
            return "deleted"
        charge = self.stream.take_working(entry.item_id)
        if charge or entry.replays >= self.stream.max_replays:
            attempts = entry.attempt + 1
            why = f"{reason}; attempt {attempts} of {self.stream.max_attempts}"
            if not charge:
                why += f" (after {entry.replays} uncharged replays)"
        else:
            attempts = entry.attempt
            why = (
                f"{reason}; not charged, it was not being tagged "
                f"(replay {entry.replays + 1} of {self.stream.max_replays})"
            )
        outcome = self.stream.retry_or_dead_letter(entry, why, charge=charge)
        log.warning("item %s (%s): %s -> %s", entry.item_id, entry.source, why, outcome)
        if outcome == "dead":
            why_dead = f"gave up after {attempts} attempts: {reason}"
            self.dead.append(GivenUp(entry.item_id, why_dead, attempts))
        return outcome
