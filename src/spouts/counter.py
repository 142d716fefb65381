"""Smoke-test spout: emits an increasing counter (proves the cluster runs Python spouts)."""

from __future__ import annotations

import time

from streamparse import Spout


class CounterSpout(Spout):
    outputs = ["n"]

    def initialize(self, stormconf, context) -> None:
        self.n = 0

    def next_tuple(self) -> None:
        self.n += 1
        self.emit([self.n], tup_id=self.n)
        time.sleep(0.05)  # ~20 tuples/s: easy to watch stop and start

    def ack(self, tup_id) -> None:
        pass

    def fail(self, tup_id) -> None:
        self.logger.warning("tuple %s failed", tup_id)
