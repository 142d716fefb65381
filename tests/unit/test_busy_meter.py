"""The bolts' own busy/waiting meter that bench/steady_state.py adds up."""

from __future__ import annotations

from pathlib import Path

from autotag.pipeline.busy_meter import BusyMeter, meter_path, read_meters


def test_meter_counts_busy_and_waiting_time_and_long_waits(tmp_path: Path) -> None:
    path = meter_path(tmp_path, "autotag", 7)
    now = [100.0]  # the meter's clock, moved by hand: no scheduler in the figures
    meter = BusyMeter(path, every_secs=0.0, clock=lambda: now[0])
    for pause in (0.0, 0.02, 0.001):
        now[0] += pause
        meter.begin()
        now[0] += 0.01
        meter.end()
    ((name, written),) = read_meters(tmp_path).items()
    assert name == "autotag-7" and written["tuples"] == 3
    assert written["busy_secs"] == 0.03
    assert written["long_waits"] == 1 and written["long_wait_secs"] == 0.02
    assert written["wait_secs"] == 0.021
