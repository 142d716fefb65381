"""Image spout: one tuple per queued photo; the Redis stream entry id is the message id.

Ack → the entry is acknowledged and deleted. Fail (timeout, crash) → re-queued with its
attempt count raised if the photo was being tagged when it failed (else replayed uncharged,
a bounded number of times), or dead-lettered after ``max_attempts``; a dead-lettered photo
goes to the DB writer on the ``dead_letters`` stream as a failed result. At start the spout
claims back its own pending entries only; entries a dead spout left pending are reclaimed.
Storm's ``topology.max.spout.pending`` caps in-flight tuples.
"""

from __future__ import annotations

from streamparse import Stream

from autotag.config import settings
from autotag.contract import PHOTO_FIELDS, RESULT_FIELDS
from autotag.pipeline.source import ItemSource
from autotag.storage.item_stream import ItemStream
from spouts.stream_spout import StreamSpout


class PhotoSpout(StreamSpout):
    outputs = [Stream(PHOTO_FIELDS), Stream(RESULT_FIELDS, name="dead_letters")]

    def initialize(self, stormconf, context) -> None:
        timeout = int(stormconf.get("topology.message.timeout.secs", 30))
        self.source = ItemSource(
            ItemStream(settings().services, settings().queue), f"spout-{context['taskid']}", timeout
        )
        recovered = self.source.recover_own_pending()
        self.logger.info(
            "photo spout ready (consumer %s); %d orphaned entries re-queued",
            self.source.consumer,
            recovered,
        )
