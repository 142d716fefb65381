"""Reading Storm's LoggingMetricsConsumer lines into per-executor queue samples."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autotag.ops import queue_metrics as qm

# A line as Storm 2.8.3 wrote it (worker.log.metrics of a test cluster).
REAL = "1796526612\t      127.0.0.1:27700\t  1:__acker    \treceive-queue-populatio\t3\n"


def consumer_line(secs: int, port: int, task: int, component: str, name: str, value: str) -> str:
    """What LoggingMetricsConsumer.handleDataPoints logs: its header format, then the name
    padded and cut to 23 characters, a tab and the value's toString()."""
    header = f"{secs}\t{'127.0.0.1':>15}:{port:<4}\t{task:>3}:{component:<11}\t"
    return header + f"{name:<23}"[:23] + "\t" + value + "\n"


def tick(secs: int, task: int, component: str, population: int, capacity: int = 32768) -> list[str]:
    values = {
        "capacity": str(capacity),
        "pct_full": str(100.0 * population / capacity),
        "population": str(population),
        "arrival_rate_secs": "12.5",
        "sojourn_time_ms": str(population / 12.5 * 1000),
        "insert_failures": "0.0",
        "dropped_messages": "0",
        "overflow": "2",
    }
    return [
        consumer_line(secs, 6700, task, component, f"{qm.RECEIVE}-{k}", v)
        for k, v in values.items()
    ]


def test_a_real_line_parses() -> None:
    (s,) = qm.parse([REAL])
    assert (s.time, s.worker, s.task, s.component, s.queue) == (
        1796526612,
        "127.0.0.1:27700",
        1,
        "__acker",
        qm.RECEIVE,
    )
    assert s.population == 3


def test_a_tick_becomes_one_sample_with_every_gauge() -> None:
    (s,) = qm.parse(tick(100, 3, "autotag", population=40))
    assert s.capacity == 32768 and s.population == 40
    assert s.pct_full == pytest.approx(100 * 40 / 32768)
    assert s.arrival_rate_secs == 12.5 and s.sojourn_time_ms == pytest.approx(3200.0)
    assert s.overflow == 2 and s.dropped_messages == 0 and s.insert_failures == 0.0


def test_the_transfer_queues_cut_names_are_told_apart_by_type() -> None:
    lines = [
        consumer_line(5, 6700, -1, "__system", f"{qm.TRANSFER}-population", "7"),
        consumer_line(5, 6700, -1, "__system", f"{qm.TRANSFER}-pct_full", "0.68359375"),
        consumer_line(5, 6700, -1, "__system", f"{qm.TRANSFER}-capacity", "1024"),
    ]
    assert all(f"{qm.TRANSFER}-p\t" in line for line in lines[:2])  # cut to the same name
    (s,) = qm.parse(lines)
    assert (s.queue, s.population, s.pct_full, s.capacity) == (qm.TRANSFER, 7, 0.68359375, 1024)


def test_other_lines_are_skipped() -> None:
    lines = [
        "garbage\n",
        consumer_line(5, 6700, 3, "autotag", "__emit-count", "12"),
        consumer_line(5, 6700, 3, "autotag", f"{qm.RECEIVE}-population", "not-a-number"),
    ]
    assert qm.parse(lines) == []


def test_latest_keeps_each_queues_newest_tick() -> None:
    samples = qm.parse(
        tick(10, 3, "autotag", 5) + tick(20, 3, "autotag", 9) + tick(15, 4, "autotag", 1)
    )
    got = {(s.task, s.time, s.population) for s in qm.latest(samples)}
    assert got == {(3, 20, 9), (4, 15, 1)}


def test_summary_over_a_window() -> None:
    lines = []
    for secs, pop in [(0, 100), (10, 4), (20, 8), (30, 0), (40, 500)]:
        lines += tick(secs, 3, "autotag", pop)
    (row,) = qm.summarize(qm.parse(lines), start=10, end=30)
    assert row.samples == 3 and row.max_population == 8
    assert row.mean_population == pytest.approx(4.0)
    assert row.capacity == 32768 and row.overflow_max == 2


def test_consumer_config_whitelists_every_queue_gauge() -> None:
    assert qm.consumer_config(0) == {}
    conf = qm.consumer_config(10)
    assert conf["topology.v2.metrics.tick.interval.seconds"] == 10
    (consumer,) = conf["topology.metrics.consumer.register"]
    patterns = [re.compile(p) for p in consumer["whitelist"]]
    for queue in (qm.RECEIVE, qm.TRANSFER):
        for f in qm.FIELDS:
            assert any(p.fullmatch(f"{queue}-{f}") for p in patterns)
    assert not any(p.fullmatch("__emit-count") for p in patterns)


def test_only_derived_paths_are_read(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        qm.metrics_logs(tmp_path, "../../etc")
    base = tmp_path / "storm" / "workers-artifacts" / "autotagger-1-17"
    (base / "6700").mkdir(parents=True)
    (base / "6700" / qm.METRICS_LOG).write_text(REAL)
    (base / "notaport").mkdir()
    (base / "notaport" / qm.METRICS_LOG).write_text(REAL)
    assert qm.metrics_logs(tmp_path, "autotagger-1-17") == [base / "6700" / qm.METRICS_LOG]
    assert qm.metrics_logs(tmp_path, "autotagger-2-18") == []


def test_a_tail_starts_at_a_whole_line(tmp_path: Path) -> None:
    path = tmp_path / qm.METRICS_LOG
    lines = [line for secs in range(50) for line in tick(secs, 3, "autotag", secs, capacity=1024)]
    path.write_text("".join(lines))
    tail = qm.read_samples([path], tail_bytes=len(lines[-1]) * 8 + 5)
    assert tail[-1].time == 49 and tail[-1].population == 49
    assert all(s.time >= 48 for s in tail)
    assert len(qm.read_samples([path], tail_bytes=None)) == 50


def test_the_consumers_executor_is_recognised() -> None:
    # As getTopologyInfo names it on Storm 2.8.3.
    assert qm.is_consumer("__metrics_org.apache.storm.metric.LoggingMetricsConsumer")
    assert not qm.is_consumer("__acker") and not qm.is_consumer("autotag")
    assert qm.short_component("__metrics_org.apache.storm.metric.LoggingMetricsConsumer") == (
        "__metrics"
    )
