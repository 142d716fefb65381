"""What the photo and segment spouts share: read a stream through a ``ItemSource``, emit
each entry with its stream entry id as the message id, settle Storm's acks and fails.

A subclass sets ``source`` in initialize(), the batch size ``read_count``, and how a
dead-lettered entry becomes a failed result for its writer (``dead_tuple``).
"""

from __future__ import annotations

from typing import Any

from streamparse import Spout

from autotag.contract import PhotoResult
from autotag.pipeline.source import GivenUp, ItemSource


class StreamSpout(Spout):
    source: ItemSource
    read_count = 8
    what = "photo"

    def dead_tuple(self, dead: GivenUp) -> list[Any] | None:
        """The tuple for the ``dead_letters`` stream (None: nothing to emit)."""
        return PhotoResult.failed(dead.item_id, dead.reason, dead.attempts).to_tuple()

    def next_tuple(self) -> None:
        for dead in self.source.take_dead():
            values = self.dead_tuple(dead)
            if values is not None:
                self.emit(values, stream="dead_letters")
        try:
            self.source.flush_acks()
            self.source.reclaim_stale()
            entries = self.source.next_entries(count=self.read_count, block_ms=100)
        except Exception as exc:  # noqa: BLE001 - Redis down: try again on the next call
            self.logger.warning("reading the %s queue failed: %s", self.what, exc)
            return
        for e in entries:
            self.emit(e.as_tuple(), tup_id=e.entry_id)

    def ack(self, tup_id) -> None:
        try:
            self.source.ack(tup_id)
        except Exception as exc:  # noqa: BLE001 - left pending; reclaimed and replayed later
            self.logger.warning("ack of %s failed (%s); it will be replayed", tup_id, exc)

    def fail(self, tup_id) -> None:
        try:
            self.source.fail(tup_id)
        except Exception as exc:  # noqa: BLE001 - left pending; reclaimed and replayed later
            self.logger.warning("fail of %s not recorded (%s); it will be reclaimed", tup_id, exc)
