"""The bolts' own busy/waiting meter that bench/steady_state.py adds up."""

from __future__ import annotations

import time
from pathlib import Path

from autotag.pipeline.busy_meter import BusyMeter, meter_path, read_meters


def test_meter_counts_busy_and_waiting_time_and_long_waits(tmp_path: Path) -> None:
    path = meter_path(tmp_path, "autotag", 7)
    meter = BusyMeter(path, every_secs=0.0)
    for pause in (0.0, 0.02, 0.0):
        time.sleep(pause)
        meter.begin()
        time.sleep(0.01)
        meter.end()
    ((name, written),) = read_meters(tmp_path).items()
    assert name == "autotag-7" and written["tuples"] == 3
    assert 0.03 <= written["busy_secs"] < 0.2
    assert written["long_waits"] == 1 and 0.02 <= written["long_wait_secs"] < 0.2
    assert written["wait_secs"] >= written["long_wait_secs"]
