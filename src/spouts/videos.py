"""Segment spout: one tuple per queued video segment, from the segment stream.

The photo spout's machinery on another stream (``settings.queue.video_stream``): ack deletes the
entry, fail re-queues it or dead-letters it after ``max_attempts``; a dead-lettered segment
goes to the video writer on the ``dead_letters`` stream as a failed segment result.
"""

from __future__ import annotations

from typing import Any

from streamparse import Stream

from autotag.config import settings
from autotag.pipeline.source import GivenUp, ItemSource
from autotag.pipeline.video_contract import (
    SEGMENT_FIELDS,
    SEGMENT_RESULT_FIELDS,
    SegmentResult,
    parse_segment_key,
)
from autotag.storage.item_stream import segment_stream
from spouts.stream_spout import StreamSpout


class VideoSpout(StreamSpout):
    read_count = 2
    what = "segment"

    outputs = [Stream(SEGMENT_FIELDS), Stream(SEGMENT_RESULT_FIELDS, name="dead_letters")]

    def initialize(self, stormconf, context) -> None:
        timeout = int(stormconf.get("topology.message.timeout.secs", 30))
        consumer = f"video-spout-{context['taskid']}"
        self.source = ItemSource(
            segment_stream(settings().services, settings().queue), consumer, timeout
        )
        recovered = self.source.recover_own_pending()
        self.logger.info("segment spout ready (%s); %d orphans re-queued", consumer, recovered)

    def dead_tuple(self, dead: GivenUp) -> list[Any] | None:
        try:
            video_id, segment = parse_segment_key(dead.item_id)
        except ValueError:
            self.logger.error("dropping a dead letter with a bad key %r", dead.item_id)
            return None
        return SegmentResult.failed(video_id, segment, dead.reason, dead.attempts).to_tuple()
