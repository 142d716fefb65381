"""Video-writer bolt: batches segment results into Postgres, acks after commit.

The only writer of what was found in videos: analysed and failed segments from the video
bolts, and segments the segment spout dead-lettered.
"""

from __future__ import annotations

from streamparse import Bolt

from autotag.config import settings
from autotag.pipeline import auto_cluster
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
        # A video's faces nobody is known for are clustered by themselves after enough new
        # ones, as the DB writer does for photos' (one run at a time on the whole cluster).
        self.auto_cluster = auto_cluster.for_settings(s)

    def process(self, tup) -> None:
        result = SegmentResult.from_tuple(tup.values)
        self.auto_cluster.saw([f.face for f in result.faces])
        self.batcher.add(result, tup)

    def process_tick(self, tup) -> None:
        if self.batcher.due() or self.batcher.retry_at:
            self.batcher.flush()
            self.auto_cluster.maybe_run()
