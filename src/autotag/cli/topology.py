"""Topology lifecycle on the local cluster: submit, list, activate, deactivate, rebalance, kill, run.

`sparse submit` / `sparse list` / `sparse kill` work as streamparse users expect; these add
what streamparse lacks (activate, deactivate, rebalance, a status table, a working local mode).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import click

from autotag.config import settings
from autotag.errors import AutotagError
from autotag.ops import kill_guard
from autotag.ops import queue_metrics as qm
from autotag.ops import topology as topo
from autotag.ops.nimbus import NimbusClient


def _uptime(secs: int) -> str:
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def topologies(as_json: bool) -> None:
    """Running topologies: name, status (ACTIVE/INACTIVE/KILLED/REBALANCING), uptime, workers, executors."""
    rows = NimbusClient(settings()).topologies()
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    if not rows:
        click.echo("no topologies running")
        return
    click.echo(f"{'NAME':<20} {'STATUS':<12} {'UPTIME':>10} {'WORKERS':>8} {'EXECUTORS':>10}  ID")
    for r in rows:
        click.echo(
            f"{r.name:<20} {r.status:<12} {_uptime(r.uptime_secs):>10} {r.workers:>8} {r.executors:>10}  {r.id}"
        )


@click.command()
@click.argument("name")
def activate(name: str) -> None:
    """Resume a deactivated topology: its spouts start emitting again."""
    NimbusClient(settings()).activate(name)
    click.echo(f"{name}: activated")


@click.command()
@click.argument("name")
def deactivate(name: str) -> None:
    """Pause a topology: spouts stop emitting; in-flight tuples finish; workers stay up."""
    NimbusClient(settings()).deactivate(name)
    click.echo(f"{name}: deactivated")


@click.command()
@click.argument("name")
@click.option("--workers", type=int, help="New number of workers.")
@click.option(
    "--executor", "executors", multiple=True, metavar="COMPONENT=N", help="New executor count."
)
@click.option(
    "--wait", "wait_secs", default=0, show_default=True, help="Seconds to deactivate first."
)
def rebalance(name: str, workers: int | None, executors: tuple[str, ...], wait_secs: int) -> None:
    """Spread a running topology over a new number of workers / executors."""
    parsed: dict[str, int] = {}
    for item in executors:
        comp, _, n = item.partition("=")
        if not n.isdigit():
            raise click.BadParameter(f"{item!r} is not COMPONENT=N", param_hint="--executor")
        parsed[comp] = int(n)
    NimbusClient(settings()).rebalance(name, wait_secs, workers, parsed or None)
    click.echo(f"{name}: rebalancing")


def _progress(message: str) -> None:
    click.echo(message, err=True)


def _worker_options(fn: Callable[..., None]) -> Callable[..., None]:
    """--worker-timeout and --no-worker-wait, for every command that kills a topology."""
    fn = click.option(
        "--no-worker-wait",
        is_flag=True,
        help="Kill at once, even while this host's Supervisor localizes the topology "
        "(which halts Storm 2.8.3's Supervisor).",
    )(fn)
    return click.option(
        "--worker-timeout",
        type=click.FloatRange(min=0),
        default=kill_guard.DEFAULT_WORKER_TIMEOUT,
        show_default=True,
        help="Seconds to wait for the topology's worker on this host before refusing.",
    )(fn)


KILL_GUARD_HELP = """
    First waits (up to --worker-timeout) until the topology's worker runs on this host, or
    it has no slot here: killing it while the Supervisor still localizes its jar makes Storm
    2.8.3's Supervisor halt, and no topology gets workers after that. If the worker has not
    started by then, nothing is killed and the command fails (exit 1) with the reason;
    --no-worker-wait kills at once."""


@click.command(help=f"Kill a topology (as `sparse kill -n NAME`).\n{KILL_GUARD_HELP}")
@click.argument("name")
@click.option(
    "--wait", "wait_secs", default=0, show_default=True, help="Seconds to drain before killing."
)
@_worker_options
def kill(name: str, wait_secs: int, worker_timeout: float, no_worker_wait: bool) -> None:
    kill_guard.kill(
        settings(),
        name,
        wait_secs,
        worker_timeout=None if no_worker_wait else worker_timeout,
        progress=_progress,
    )
    click.echo(f"{name}: killed")


@click.command(
    help="`sparse submit -n NAME` against this run's cluster (ports and environment filled "
    f"in).\n\n    With --force, a running NAME is killed and replaced.\n{KILL_GUARD_HELP}"
)
@click.argument("name")
@click.option("--force", is_flag=True, help="Replace a running topology of that name.")
@click.option(
    "-o", "--option", "options", multiple=True, help="Storm option KEY=VALUE (as sparse -o)."
)
@_worker_options
def submit(
    name: str, force: bool, options: tuple[str, ...], worker_timeout: float, no_worker_wait: bool
) -> None:
    out = topo.submit(
        settings(),
        name,
        force=force,
        options=list(options),
        worker_timeout=None if no_worker_wait else worker_timeout,
        progress=_progress,
    )
    click.echo(out.strip().splitlines()[-1] if out.strip() else f"{name}: submitted")


@click.command()
@click.argument("name")
@click.option("-t", "--time", "seconds", default=30, show_default=True, help="Seconds to run.")
def run(name: str, seconds: int) -> None:
    """Run topologies/NAME.py in local mode (in-process LocalCluster), no cluster needed."""
    status = topo.run_local(settings(), name, seconds)
    if status != 0:
        raise SystemExit(status)


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


@click.command()
@click.argument("name", default="autotagger")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per queue).")
def queues(name: str, as_json: bool) -> None:
    """Each executor's receive queue (and each worker's transfer queue) in a running topology:
    population, capacity, arrival rate, sojourn time, overflow, as Storm last reported them."""
    s = settings()
    nimbus = NimbusClient(s)
    row = nimbus.topology(name)
    samples = qm.latest(qm.read_samples(qm.metrics_logs(s.log_dir, row.id)))
    if not samples:
        executors = nimbus.topology_info(name).executors or []
        if not any(qm.is_consumer(ex.component_id) for ex in executors):
            raise AutotagError(
                f"{name} runs without Storm's metrics consumer (submitted with "
                "queue_metrics_secs=0): resubmit it with AUTOTAG_QUEUE_METRICS_SECS=10"
            )
        raise AutotagError(f"no queue reports from {name} yet (the first comes one tick in)")
    now = time.time()
    if as_json:
        out = [{**q.as_dict(), "age_secs": round(now - q.time)} for q in samples]
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(
        f"{'COMPONENT':<14} {'TASK':>4} {'QUEUE':<9} {'POP':>5} {'CAP':>6} {'FULL%':>6} "
        f"{'ARRIVE/s':>9} {'SOJOURN ms':>10} {'OVERFLOW':>8} {'AGE':>5}  WORKER"
    )
    for q in samples:
        click.echo(
            f"{qm.short_component(q.component):<14} {q.task:>4} "
            f"{'receive' if q.queue == qm.RECEIVE else 'transfer':<9} "
            f"{_num(q.population, 'd'):>5} {_num(q.capacity, 'd'):>6} "
            f"{_num(q.pct_full, '.1f'):>6} {_num(q.arrival_rate_secs, '.1f'):>9} "
            f"{_num(q.sojourn_time_ms, '.1f'):>10} {_num(q.overflow, 'd'):>8} "
            f"{round(now - q.time):>4}s  {q.worker}"
        )


commands = [topologies, activate, deactivate, rebalance, kill, submit, run, queues]
