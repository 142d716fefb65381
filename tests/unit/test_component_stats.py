"""Storm UI's per-component figures from a TopologyInfo built of Nimbus' own Thrift types."""

from __future__ import annotations

import pytest
from streamparse import thrift

from autotag.ops import component_stats

W = ("600", "10800", "86400", ":all-time")


def _windows(value: dict) -> dict:
    return {w: dict(value) for w in W}


def spout(task: int, emitted: int, acked: int, failed: int, complete_ms: float) -> object:
    stats = thrift.ExecutorStats(
        emitted=_windows({"default": emitted, "__ack_init": emitted}),
        transferred=_windows({"default": emitted, "__ack_init": emitted}),
        specific=thrift.ExecutorSpecificStats(
            spout=thrift.SpoutStats(
                acked=_windows({"default": acked}),
                failed=_windows({"default": failed}),
                complete_ms_avg=_windows({"default": complete_ms}),
            )
        ),
        rate=1.0,
    )
    return thrift.ExecutorSummary(
        executor_info=thrift.ExecutorInfo(task, task),
        component_id="photos",
        host="127.0.0.1",
        port=6700,
        uptime_secs=1200,
        stats=stats,
    )


def bolt(task: int, executed: int, execute_ms: float, emitted: int) -> object:
    sid = thrift.GlobalStreamId(componentId="photos", streamId="default")
    stats = thrift.ExecutorStats(
        emitted=_windows({"default": emitted}),
        transferred=_windows({"default": emitted}),
        specific=thrift.ExecutorSpecificStats(
            bolt=thrift.BoltStats(
                acked=_windows({sid: executed}),
                failed=_windows({sid: 1}),
                process_ms_avg=_windows({sid: execute_ms / 2}),
                executed=_windows({sid: executed}),
                execute_ms_avg=_windows({sid: execute_ms}),
            )
        ),
        rate=1.0,
    )
    return thrift.ExecutorSummary(
        executor_info=thrift.ExecutorInfo(task, task),
        component_id="autotag",
        host="127.0.0.1",
        port=6701,
        uptime_secs=1200,
        stats=stats,
    )


def info() -> object:
    return thrift.TopologyInfo(
        id="autotagger-1-1",
        name="autotagger",
        uptime_secs=1200,
        status="ACTIVE",
        executors=[
            spout(1, 100, 90, 10, 200.0),
            spout(2, 50, 50, 0, 500.0),
            bolt(3, 300, 1000.0, 290),  # busy: 300 s of the last 600 s executing
            bolt(4, 60, 1000.0, 60),
        ],
        errors={"autotag": [thrift.ErrorInfo("old", 10), thrift.ErrorInfo("new\nboom", 20)]},
    )


def test_topology_page_sums_weights_and_drops_system_streams() -> None:
    page = component_stats.topology_page(info(), "600")
    (s,) = page["spouts"]
    assert (s["spoutId"], s["executors"], s["emitted"], s["acked"], s["failed"]) == (
        "photos",
        2,
        150,
        140,
        10,
    )
    assert s["completeLatency"] == f"{(90 * 200 + 50 * 500) / 140:.3f}"  # weighted by acked
    (b,) = page["bolts"]
    assert (b["boltId"], b["executed"], b["emitted"], b["failed"]) == ("autotag", 360, 350, 2)
    assert b["executeLatency"] == "1000.000" and b["processLatency"] == "500.000"
    assert b["capacity"] == "0.500"  # the busiest executor's share, as Storm's UI shows
    assert b["lastError"] == "new\nboom" and b["errorTime"] == 20
    assert page["topologyStats"]["acked"] == 140
    assert page["topologyStats"]["emitted"] == 150 + 350  # spouts and bolts, as Storm's UI


def test_component_page_every_window_and_errors_newest_first() -> None:
    page = component_stats.component_page(info(), "autotag")
    assert page["componentType"] == "bolt" and page["topologyId"] == "autotagger-1-1"
    assert [w["window"] for w in page["boltStats"]] == list(W)
    assert [e["error"] for e in page["componentErrors"]] == ["new\nboom", "old"]
    assert component_stats.component_page(info(), "photos")["spoutSummary"][0]["acked"] == 140
    with pytest.raises(KeyError):
        component_stats.component_page(info(), "__acker")


def test_component_page_lists_each_executor_over_the_window() -> None:
    page = component_stats.component_page(info(), "autotag", window="600")
    assert page["window"] == "600"
    busy, idle = page["executorStats"]
    assert (busy["id"], busy["host"], busy["port"]) == ("[3-3]", "127.0.0.1", 6701)
    assert (busy["executed"], busy["emitted"], busy["failed"]) == (300, 290, 1)
    assert busy["capacity"] == "0.500" and idle["capacity"] == "0.100"
    assert idle["executeLatency"] == "1000.000" and idle["processLatency"] == "500.000"
    (first, second) = component_stats.component_page(info(), "photos")["executorStats"]
    assert (first["id"], first["acked"], first["completeLatency"]) == ("[1-1]", 90, "200.000")
    assert second["acked"] == 50 and "executed" not in second


def test_windows_are_checked() -> None:
    assert component_stats.check_window("all-time") == ":all-time"
    with pytest.raises(ValueError, match="window must be one of"):
        component_stats.check_window("7")
