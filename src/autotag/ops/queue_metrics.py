"""Storm's own queue figures per executor: receive-queue population, capacity, arrival rate,
sojourn time, overflow (and the worker's transfer queue), read from the worker's metrics log.

Storm 2 keeps these as metrics-v2 gauges (``JCQueueMetrics``: ``receive-queue-population``
...) that neither Nimbus' executor stats nor the UI carry. They reach a metrics consumer only
when ``topology.enable.v2.metrics.tick`` forwards them on every executor's metrics tick, so
the topology registers Storm's built-in ``LoggingMetricsConsumer`` (one more executor) with a
whitelist of the queue gauges, and the worker's log4j2 config sends that class' lines to
``workers-artifacts/<topology-id>/<port>/worker.log.metrics``, as Storm's own release does.

The consumer cuts every metric name to 23 characters (``receive-queue-populatio``); the
transfer queue's ``pct_full`` and ``population`` both become ``worker-transfer-queue-p``,
told apart by their Java types (a Float prints a point, an Integer does not).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CONSUMER_CLASS = "org.apache.storm.metric.LoggingMetricsConsumer"
METRICS_LOG = "worker.log.metrics"
RECEIVE, TRANSFER = "receive-queue", "worker-transfer-queue"
NAME_WIDTH = 23  # LoggingMetricsConsumer's cut
# Gauge suffixes (JCQueueMetrics) -> field; cut names are matched by prefix.
FIELDS = (
    "capacity",
    "pct_full",
    "population",
    "arrival_rate_secs",
    "sojourn_time_ms",
    "insert_failures",
    "dropped_messages",
    "overflow",
)
TAIL_BYTES = 512 * 1024
_TOPOLOGY_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def consumer_config(secs: int) -> dict[str, Any]:
    """Topology settings that log every executor's queue gauges each ``secs`` seconds
    (empty when ``secs`` is 0: no consumer executor at all)."""
    if secs <= 0:
        return {}
    return {
        "topology.metrics.consumer.register": [
            {
                "class": CONSUMER_CLASS,
                "parallelism.hint": 1,
                "whitelist": [f"{RECEIVE}.*", f"{TRANSFER}.*"],
            }
        ],
        "topology.enable.v2.metrics.tick": True,
        "topology.v2.metrics.tick.interval.seconds": secs,
    }


@dataclass
class QueueSample:
    """One queue's gauges at one metrics tick."""

    time: int  # seconds since the epoch, the tick's
    worker: str  # host:port
    task: int
    component: str
    queue: str  # RECEIVE or TRANSFER
    capacity: int | None = None
    pct_full: float | None = None
    population: int | None = None
    arrival_rate_secs: float | None = None
    sojourn_time_ms: float | None = None
    insert_failures: float | None = None
    dropped_messages: int | None = None
    overflow: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def _field(queue: str, cut: str, value: str) -> str | None:
    """The gauge a (possibly cut) metric name stands for, None if it is not a queue gauge."""
    suffix = cut[len(queue) + 1 :]
    if not suffix:
        return None
    matches = [f for f in FIELDS if f.startswith(suffix)]
    if len(matches) > 1 and {"pct_full", "population"} >= set(matches):
        return "pct_full" if "." in value or "E" in value else "population"
    return matches[0] if len(matches) == 1 else None


def parse_line(line: str) -> tuple[tuple[int, str, int, str, str], str, int | float] | None:
    """``(time, worker, task, component, queue), field, value`` from one consumer line:
    ``<secs>\\t<host>:<port>\\t<task>:<component>\\t<name cut to 23>\\t<value>``."""
    parts = [p.strip() for p in line.rstrip("\n").split("\t")]
    if len(parts) != 5:
        return None
    secs, worker, task_comp, name, value = parts
    task, _, component = task_comp.partition(":")
    queue = next((q for q in (TRANSFER, RECEIVE) if name.startswith(q + "-")), None)
    if queue is None or not secs.isdigit() or not task.strip().lstrip("-").isdigit():
        return None
    what = _field(queue, name, value)
    number = _number(value)
    if what is None or number is None:
        return None
    key = (int(secs), worker.replace(" ", ""), int(task), component.strip(), queue)
    return key, what, number


def parse(lines: Iterable[str]) -> list[QueueSample]:
    """Samples in the order their ticks appear (a tick's gauges are grouped into one)."""
    samples: dict[tuple[int, str, int, str, str], QueueSample] = {}
    for line in lines:
        got = parse_line(line)
        if got is None:
            continue
        key, what, number = got
        sample = samples.get(key)
        if sample is None:
            sample = samples[key] = QueueSample(*key)
        if what in ("capacity", "population", "dropped_messages", "overflow"):
            setattr(sample, what, int(number))
        else:
            setattr(sample, what, float(number))
    return list(samples.values())


def metrics_logs(log_dir: Path, topology_id: str) -> list[Path]:
    """Each worker's metrics log of one topology: ``<log_dir>/storm/workers-artifacts/
    <topology-id>/<port>/worker.log.metrics`` (ports as the Supervisor made them)."""
    if not _TOPOLOGY_ID.match(topology_id) or topology_id in (".", ".."):
        raise ValueError(f"not a Storm topology id: {topology_id!r}")
    base = log_dir / "storm" / "workers-artifacts" / topology_id
    if not base.is_dir():
        return []
    found = []
    for port in sorted(base.iterdir()):
        path = port / METRICS_LOG
        if port.name.isdigit() and not port.is_symlink() and path.is_file():
            found.append(path)
    return found


def _read(path: Path, tail_bytes: int | None) -> Iterator[str]:
    with open(path, "rb") as fh:
        if tail_bytes is not None:
            end = fh.seek(0, 2)
            if end > tail_bytes:
                fh.seek(end - tail_bytes)
                fh.readline()  # a cut line
            else:
                fh.seek(0)
        for raw in fh:
            yield raw.decode("utf-8", "replace")


def read_samples(
    paths: Iterable[Path], *, tail_bytes: int | None = TAIL_BYTES
) -> list[QueueSample]:
    """Every sample in the logs (only their last ``tail_bytes`` each, unless None)."""
    out: list[QueueSample] = []
    for path in paths:
        out += parse(_read(path, tail_bytes))
    return out


def latest(samples: Iterable[QueueSample]) -> list[QueueSample]:
    """The newest sample of each (component, task, queue), sorted by component and task."""
    newest: dict[tuple[str, int, str], QueueSample] = {}
    for s in samples:
        key = (s.component, s.task, s.queue)
        if key not in newest or s.time >= newest[key].time:
            newest[key] = s
    return sorted(newest.values(), key=lambda s: (s.component, s.task, s.queue))


@dataclass(frozen=True)
class QueueSummary:
    """One queue's population over a window: what a steady run kept waiting in it."""

    component: str
    task: int
    queue: str
    samples: int
    capacity: int | None
    mean_population: float
    max_population: int
    mean_sojourn_ms: float | None
    overflow_max: int


def summarize(samples: Iterable[QueueSample], start: float, end: float) -> list[QueueSummary]:
    """Mean / max population of each queue over samples taken in ``[start, end]``."""
    groups: dict[tuple[str, int, str], list[QueueSample]] = {}
    for s in samples:
        if start <= s.time <= end and s.population is not None:
            groups.setdefault((s.component, s.task, s.queue), []).append(s)
    out = []
    for (component, task, queue), group in sorted(groups.items()):
        pops = [s.population or 0 for s in group]
        sojourns = [s.sojourn_time_ms for s in group if s.sojourn_time_ms is not None]
        out.append(
            QueueSummary(
                component,
                task,
                queue,
                len(group),
                group[-1].capacity,
                sum(pops) / len(pops),
                max(pops),
                sum(sojourns) / len(sojourns) if sojourns else None,
                max(s.overflow or 0 for s in group),
            )
        )
    return out


def is_consumer(component: str) -> bool:
    """Whether a component id is the consumer's executor (Storm 2.8 names it
    ``__metrics_<class>``)."""
    return component.startswith("__metrics") and component.endswith(CONSUMER_CLASS)


def short_component(component: str) -> str:
    """``__metrics_org.apache.storm.metric.LoggingMetricsConsumer`` -> ``__metrics``."""
    return "__metrics" if component.startswith("__metrics") else component
