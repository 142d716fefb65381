"""Segment spout: one tuple per queued video segment, from the segment stream.

The photo spout's machinery on another stream (``settings.video_stream``): ack deletes the
entry, fail re-queues it or dead-letters it after ``max_attempts``; a dead-lettered segment
goes to the video writer on the ``dead_letters`` stream as a failed segment result.
"""

from __future__ import annotations

from streamparse import Spout, Stream

from autotag.config import settings
from autotag.pipeline.source import PhotoSource
from autotag.pipeline.video_contract import (
    SEGMENT_FIELDS,
    SEGMENT_RESULT_FIELDS,
    SegmentResult,
    parse_segment_key,
)
from autotag.pipeline.video_intake import segment_stream


class VideoSpout(Spout):
    outputs = [Stream(SEGMENT_FIELDS), Stream(SEGMENT_RESULT_FIELDS, name="dead_letters")]

    def initialize(self, stormconf, context) -> None:
        timeout = int(stormconf.get("topology.message.timeout.secs", 30))
        consumer = f"video-spout-{context['taskid']}"
        self.source = PhotoSource(segment_stream(settings()), consumer, timeout)
        recovered = self.source.recover_own_pending()
        self.logger.info("segment spout ready (%s); %d orphans re-queued", consumer, recovered)

    def next_tuple(self) -> None:
        for dead in self.source.take_dead():
            try:
                video_id, segment = parse_segment_key(dead.photo_id)
            except ValueError:
                self.logger.error("dropping a dead letter with a bad key %r", dead.photo_id)
                continue
            result = SegmentResult.failed(video_id, segment, dead.reason or "", dead.attempts)
            self.emit(result.to_tuple(), stream="dead_letters")
        try:
            self.source.flush_acks()
            self.source.reclaim_stale()
            entries = self.source.next_entries(count=2, block_ms=100)
        except Exception as exc:  # noqa: BLE001 - Redis down: try again on the next call
            self.logger.warning("reading the segment queue failed: %s", exc)
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
