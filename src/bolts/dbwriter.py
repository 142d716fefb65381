"""DB-writer bolt: batches results into Postgres (by count and by tick), acks after commit.

Tags, status and the feature vector of a batch go in one transaction, idempotent on
(photo, tag, model version), so a replayed tuple never duplicates anything. It is the only
writer of tagging outcomes: tagged and failed photos from the autotag bolts, and photos the
spout dead-lettered.
"""

from __future__ import annotations

from streamparse import Bolt

from autotag.config import settings
from autotag.pipeline.batcher import ResultBatcher
from autotag.pipeline.contract import PhotoResult
from autotag.storage.writer import ResultWriter


class DbWriterBolt(Bolt):
    auto_ack = False  # acked only after the batch is committed
    auto_fail = True

    def initialize(self, stormconf, context) -> None:
        s = settings()
        self.batcher = ResultBatcher(
            ResultWriter(s),
            self.ack,
            s.db_batch_size,
            s.db_flush_secs,
            fail=self.fail,
            max_retries=s.db_max_retries,
        )

    def process(self, tup) -> None:
        self.batcher.add(PhotoResult.from_tuple(tup.values), tup)

    def process_tick(self, tup) -> None:
        if self.batcher.due() or self.batcher.retry_at:
            self.batcher.flush()
