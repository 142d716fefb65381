"""DB-writer bolt: batches results into Postgres, acks after commit.

A batch is written when it is full or when no more results are waiting to be read (commits
spaced at least db_commit_interval_secs apart), so under load batches grow by themselves and
an idle topology commits each photo at once; the tick is only a safety net. Tags, status and the feature vector of a batch go in one transaction,
idempotent on (photo, tag, model version), so a replayed tuple never duplicates anything. It
is the only writer of tagging outcomes: tagged and failed photos from the autotag bolts, and
photos the spout dead-lettered.
"""

from __future__ import annotations

from streamparse import Bolt

from autotag.config import settings
from autotag.contract import PhotoResult
from autotag.pipeline import auto_cluster
from autotag.pipeline.batcher import ResultBatcher
from autotag.pipeline.busy_meter import BusyMeter, meter_path
from autotag.pipeline.storm_input import StormInput
from autotag.storage.writer import ResultWriter


class DbWriterBolt(Bolt):
    auto_ack = False  # acked only after the batch is committed
    auto_fail = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Our own reader over stdin, before anything is read, so we can see what is waiting.
        self.input = StormInput()
        self.serializer.input_stream = self.input

    def initialize(self, stormconf, context) -> None:
        s = settings()
        self.batcher = ResultBatcher(
            ResultWriter(s.services),
            self.ack,
            s.writer.db_batch_size,
            s.writer.db_flush_secs,
            fail=self.fail,
            max_retries=s.writer.db_max_retries,
            min_interval_secs=s.writer.db_commit_interval_secs,
        )
        # Unassigned faces clustered by themselves after enough new ones (issue 25).
        self.auto_cluster = auto_cluster.for_settings(s)
        # Its own busy (decoding, committing) and waiting time, for bench/steady_state.py.
        self.meter = BusyMeter(meter_path(s.run_dir, "db_writer", context["taskid"]), 0.25)

    def _run(self) -> None:
        """pystorm's loop body (one message), then: nothing more waiting → write the batch
        (after the batcher's commit spacing, if more arrives meanwhile it joins the batch)."""
        super()._run()
        if self.batcher.pending and not self.input.waiting():
            hold = self.batcher.idle_flush_wait()
            if hold > 0 and self.input.waiting(hold):
                return
            self._flush()

    def process(self, tup) -> None:
        self.meter.begin()
        result = PhotoResult.from_tuple(tup.values)
        self.auto_cluster.saw(result.faces)
        self.batcher.add(result, tup)
        self.meter.end()

    def process_tick(self, tup) -> None:
        if self.batcher.pending:
            self._flush()

    def _flush(self) -> None:
        self.meter.begin()
        self.batcher.flush()
        self.auto_cluster.maybe_run()
        self.meter.end(tuples=0)
