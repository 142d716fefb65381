"""Video-writer bolt: batches segment results into Postgres, acks after commit.

The only writer of what was found in videos: analysed and failed segments from the video
bolts, and segments the segment spout dead-lettered.
"""

from __future__ import annotations

from streamparse import Bolt

from autotag.config import settings
from autotag.pipeline.batcher import ResultBatcher
from autotag.pipeline.video_contract import SegmentResult
from autotag.storage.video_writer import SegmentWriter


class VideoWriterBolt(Bolt):
    auto_ack = False  # acked only after the batch is committed
    auto_fail = True

    def initialize(self, stormconf, context) -> None:
        s = settings()
        self.batcher = ResultBatcher(
            SegmentWriter(s.services),
            self.ack,
            8,
            s.writer.db_flush_secs,
            fail=self.fail,
            max_retries=s.writer.db_max_retries,
        )

    def process(self, tup) -> None:
        self.batcher.add(SegmentResult.from_tuple(tup.values), tup)

    def process_tick(self, tup) -> None:
        if self.batcher.due() or self.batcher.retry_at:
            self.batcher.flush()
