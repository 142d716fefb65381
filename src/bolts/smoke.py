"""Smoke-test bolt: appends each tuple to a file outside Storm, so a test can see flow."""

from __future__ import annotations

import os
import time
from pathlib import Path

from streamparse import Bolt

from autotag.config import settings


class RecordBolt(Bolt):
    def initialize(self, stormconf, context) -> None:
        out_dir = settings().run_dir / "smoke"
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = Path(out_dir) / f"{stormconf.get('topology.name', 'smoke')}.txt"
        self.fh = open(self.path, "a", buffering=1)  # noqa: SIM115 - kept open for the bolt's life

    def process(self, tup) -> None:
        self.fh.write(f"{tup.values[0]} {time.time():.3f} {os.getpid()}\n")
