"""What Storm's own UI shows for a topology, computed from Nimbus' ``getTopologyInfo``.

Storm's UI (storm-webapp) is not on Maven Central, so the figures it shows per spout and bolt
are rebuilt here from the executor stats Nimbus returns for the windows ``600`` (10 min),
``10800`` (3 h), ``86400`` (1 day) and ``:all-time``: emitted, transferred, acked, failed,
execute/process/complete latency (averages weighted by their counts, as Storm's StatsUtil
does), capacity (the busiest executor's share of the last 10 minutes spent executing) and the
last errors. Field names follow Storm's REST API v1 so tools written for it keep working.

Where the figures come from: each Storm 2 worker writes a ``ClusterWorkerHeartbeat`` holding
its executors' stats to ZooKeeper (``/storm/workerbeats/<topology-id>/<node>-<port>``) every
``executor.metrics.frequency.secs``; ``getTopologyInfo`` reads them there (its RPC heartbeats
only keep executors alive). A worker's first heartbeat, written before its executors exist,
has none, so a new topology has no figures until its second. Counts are sampled at
``topology.stats.sample.rate`` (each sampled tuple counts 1/rate).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

WINDOWS = {"600": "10m 0s", "10800": "3h 0m 0s", "86400": "1d 0h 0m 0s", ":all-time": "All time"}
CAPACITY_WINDOW = 600
MAX_ERRORS = 10


def check_window(window: str) -> str:
    """A window Nimbus keeps (``all-time`` is accepted for ``:all-time``); ValueError if not."""
    w = ":all-time" if window in ("all-time", "all", ":all-time") else window
    if w not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}")
    return w


def _user(stats: Mapping[Any, Any] | None) -> Iterable[tuple[Any, Any]]:
    """Stream entries without Storm's system streams (``__ack_init``, ``__metrics``...)."""
    for key, value in (stats or {}).items():
        stream = getattr(key, "streamId", key)
        if not str(stream).startswith("__"):
            yield key, value


@dataclass
class _Totals:
    """Counts and count-weighted latency sums for one component in one window."""

    executors: int = 0
    tasks: int = 0
    emitted: int = 0
    transferred: int = 0
    acked: int = 0
    failed: int = 0
    executed: int = 0
    execute_ms: float = 0.0  # sum of execute_ms_avg * executed
    process_ms: float = 0.0  # sum of process_ms_avg * executed (Storm weights it so)
    complete_ms: float = 0.0  # sum of complete_ms_avg * acked
    capacity: float = 0.0
    hosts: set[str] = field(default_factory=set)

    def add(self, ex: Any, window: str) -> None:
        self.executors += 1
        info = ex.executor_info
        self.tasks += info.task_end - info.task_start + 1
        self.hosts.add(f"{ex.host}:{ex.port}")
        st = ex.stats
        if st is None:
            return
        self.emitted += sum(v for _, v in _user(st.emitted.get(window)))
        self.transferred += sum(v for _, v in _user(st.transferred.get(window)))
        spout, bolt = st.specific.spout, st.specific.bolt
        if spout is not None:
            acked = dict(_user(spout.acked.get(window)))
            self.acked += sum(acked.values())
            self.failed += sum(v for _, v in _user(spout.failed.get(window)))
            for k, ms in _user(spout.complete_ms_avg.get(window)):
                self.complete_ms += ms * acked.get(k, 0)
        if bolt is not None:
            acked = dict(_user(bolt.acked.get(window)))
            executed = dict(_user(bolt.executed.get(window)))
            self.acked += sum(acked.values())
            self.failed += sum(v for _, v in _user(bolt.failed.get(window)))
            self.executed += sum(executed.values())
            for k, ms in _user(bolt.execute_ms_avg.get(window)):
                self.execute_ms += ms * executed.get(k, 0)
            for k, ms in _user(bolt.process_ms_avg.get(window)):
                self.process_ms += ms * executed.get(k, 0)
            self.capacity = max(self.capacity, _capacity(ex))


def _capacity(ex: Any) -> float:
    """Storm UI's capacity: executed x execute latency over the last 10 minutes' wall time."""
    bolt = ex.stats.specific.bolt
    w = str(CAPACITY_WINDOW)
    executed = dict(_user(bolt.executed.get(w)))
    busy_ms = sum(ms * executed.get(k, 0) for k, ms in _user(bolt.execute_ms_avg.get(w)))
    span = min(max(ex.uptime_secs, 1), CAPACITY_WINDOW)
    return busy_ms / (span * 1000.0)


def _avg(total_ms: float, count: int) -> str:
    return f"{total_ms / count:.3f}" if count else "0.000"


def _errors(info: Any, component: str) -> list[dict[str, Any]]:
    """The component's last errors, newest first, as Storm's REST API lists them."""
    rows = sorted((info.errors or {}).get(component, []), key=lambda e: -e.error_time_secs)
    return [
        {
            "error": e.error,
            "errorTime": e.error_time_secs,
            "errorHost": e.host,
            "errorPort": e.port,
        }
        for e in rows[:MAX_ERRORS]
    ]


def _kinds(info: Any, structure: Mapping[str, str] | None) -> dict[str, str]:
    """component id -> 'spout' | 'bolt' (system components such as __acker left out): from
    the topology's structure when given, else from the executors' stats."""
    out = {c: k for c, k in (structure or {}).items() if not c.startswith("__")}
    for ex in info.executors or []:
        if ex.component_id.startswith("__") or ex.stats is None:
            continue
        out[ex.component_id] = "spout" if ex.stats.specific.spout is not None else "bolt"
    return out


def stats_reported(info: Any) -> bool:
    """Whether any worker has reported executor stats yet (see the module docstring: not
    before its second heartbeat); the components and errors are there regardless."""
    return any(ex.stats is not None for ex in info.executors or [])


def sample_rate(info: Any) -> float | None:
    """The share of tuples Storm counts (``ExecutorStats.rate`` holds 1/rate): every count
    moves in steps of 1/rate."""
    rates = [ex.stats.rate for ex in info.executors or [] if ex.stats is not None]
    return 1.0 / max(rates) if rates and max(rates) > 0 else None


def _totals(info: Any, component: str, window: str) -> _Totals:
    t = _Totals()
    for ex in info.executors or []:
        if ex.component_id == component:
            t.add(ex, window)
    return t


def _kind_figures(kind: str, t: _Totals) -> dict[str, Any]:
    """What Storm's UI shows only for a spout (complete latency) or only for a bolt
    (executed, its latencies, capacity), for a component's row and an executor's alike."""
    if kind == "spout":
        return {"completeLatency": _avg(t.complete_ms, t.acked)}
    return {
        "executed": t.executed,
        "executeLatency": _avg(t.execute_ms, t.executed),
        "processLatency": _avg(t.process_ms, t.executed),
        "capacity": f"{t.capacity:.3f}",
    }


def _row(kind: str, name: str, t: _Totals, errors: list[dict[str, Any]]) -> dict[str, Any]:
    last = errors[0] if errors else None
    row: dict[str, Any] = {
        ("spoutId" if kind == "spout" else "boltId"): name,
        "executors": t.executors,
        "tasks": t.tasks,
        "emitted": t.emitted,
        "transferred": t.transferred,
        "acked": t.acked,
        "failed": t.failed,
        "lastError": last["error"] if last else "",
        "errorTime": last["errorTime"] if last else None,
    }
    row.update(_kind_figures(kind, t))
    return row


def topology_page(
    info: Any, window: str = ":all-time", structure: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``/api/v1/topology/<id>``: the topology and every spout and bolt for one window."""
    window = check_window(window)
    kinds = _kinds(info, structure)
    spouts: list[dict[str, Any]] = []
    bolts: list[dict[str, Any]] = []
    for name in sorted(kinds):
        row = _row(kinds[name], name, _totals(info, name, window), _errors(info, name))
        (spouts if kinds[name] == "spout" else bolts).append(row)
    # As Storm's UI: emitted and transferred by every component, acked and failed by spouts.
    every = [_totals(info, n, window) for n in kinds]
    totals = [_totals(info, n, window) for n, k in kinds.items() if k == "spout"]
    acked = sum(t.acked for t in totals)
    return {
        "id": info.id,
        "name": info.name,
        "status": info.status,
        "uptimeSeconds": info.uptime_secs,
        "window": window,
        "windowHint": WINDOWS[window],
        "statsReported": stats_reported(info),
        "sampleRate": sample_rate(info),
        "topologyStats": {
            "emitted": sum(t.emitted for t in every),
            "transferred": sum(t.transferred for t in every),
            "acked": acked,
            "failed": sum(t.failed for t in totals),
            "completeLatency": _avg(sum(t.complete_ms for t in totals), acked),
        },
        "spouts": spouts,
        "bolts": bolts,
    }


def _executor_row(kind: str, ex: Any, window: str) -> dict[str, Any]:
    """One executor of a component over one window, as Storm's ``executorStats`` lists it."""
    t = _Totals()
    t.add(ex, window)
    info = ex.executor_info
    row: dict[str, Any] = {
        "id": f"[{info.task_start}-{info.task_end}]",
        "host": ex.host,
        "port": ex.port,
        "uptimeSeconds": ex.uptime_secs,
        "emitted": t.emitted,
        "transferred": t.transferred,
        "acked": t.acked,
        "failed": t.failed,
    }
    row.update(_kind_figures(kind, t))
    return row


def component_page(
    info: Any,
    component: str,
    structure: Mapping[str, str] | None = None,
    window: str = ":all-time",
) -> dict[str, Any]:
    """``/api/v1/topology/<id>/component/<name>``: one component over every window, and
    each of its executors over ``window``."""
    window = check_window(window)
    kind = _kinds(info, structure).get(component)
    if kind is None:
        raise KeyError(component)
    errors = _errors(info, component)
    stats = []
    for w, hint in WINDOWS.items():
        row = _row(kind, component, _totals(info, component, w), errors)
        stats.append({"window": w, "windowPretty": hint, **row})
    all_time = _totals(info, component, ":all-time")
    return {
        "id": component,
        "name": info.name,
        "topologyId": info.id,
        "componentType": kind,
        "executors": all_time.executors,
        "tasks": all_time.tasks,
        "hosts": sorted(all_time.hosts),
        "statsReported": stats_reported(info),
        "window": window,
        "windowHint": WINDOWS[window],
        ("spoutSummary" if kind == "spout" else "boltStats"): stats,
        "executorStats": [
            _executor_row(kind, ex, window)
            for ex in sorted(
                (ex for ex in info.executors or [] if ex.component_id == component),
                key=lambda ex: ex.executor_info.task_start,
            )
        ],
        "componentErrors": errors,
    }
