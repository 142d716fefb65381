"""`autotag cluster up | down | status | logs`: the local Storm cluster and data services."""

from __future__ import annotations

import json
import subprocess
import time

import click

from autotag.config import settings
from autotag.errors import AutotagError
from autotag.ops import cluster as cluster_mod


@click.group()
def cluster() -> None:
    """Run the local cluster: ZooKeeper, Nimbus, Supervisor, Storm UI, Redis, Postgres, web."""


@cluster.command()
@click.argument("services", nargs=-1)
@click.option(
    "--role",
    type=click.Choice(["all", "supervisor"]),
    default="all",
    show_default=True,
    help="supervisor: only a Supervisor that joins the cluster at --nimbus HOST.",
)
@click.option("--nimbus", "nimbus_host", help="With --role supervisor: the first host's address.")
@click.option("--bind", "bind_host", default="", help="This host's own cluster address.")
@click.option("--advertise", default="", help="The name other hosts reach this host by.")
def up(
    services: tuple[str, ...], role: str, nimbus_host: str | None, bind_host: str, advertise: str
) -> None:
    """Start the cluster (or the named SERVICES); idempotent; waits until healthy."""
    if role == "supervisor":
        if not nimbus_host:
            raise AutotagError("--role supervisor needs --nimbus HOST (the first host's address)")
        _join(nimbus_host, bind_host, advertise)
        return
    s = settings()
    if bind_host or advertise:
        s = s.override(bind_host=bind_host or s.services.bind_host, advertise_host=advertise)
    t0 = time.monotonic()
    cluster_mod.up(s, services or None, progress=click.echo)
    click.echo(f"cluster healthy in {time.monotonic() - t0:.1f}s  (run dir {s.run_dir})")
    net = s.services
    click.echo(
        f"Storm UI: http://{net.local_bind_host}:{net.port(net.ui_port)}/   "
        f"Nimbus: {net.host}:{net.port(net.nimbus_port)}"
    )
    if not services or "web" in services:
        click.echo("web page: `autotag url` prints its address with the login token")


@cluster.command()
@click.argument("host")
@click.option("--bind", "bind_host", default="", help="This host's own cluster address.")
@click.option("--advertise", default="", help="The name other hosts reach this host by.")
def join(host: str, bind_host: str, advertise: str) -> None:
    """Start a Supervisor on this host for the cluster whose services run on HOST.

    Copy secrets/ from HOST's run directory first (the blob service's token).
    """
    _join(host, bind_host, advertise)


def _join(host: str, bind_host: str, advertise: str) -> None:
    t0 = time.monotonic()
    s = cluster_mod.joining_settings(settings(), host, bind_host, advertise)
    cluster_mod.join(s, progress=click.echo)
    click.echo(f"joined {host} in {time.monotonic() - t0:.1f}s as {s.services.local_hostname}")


@cluster.command()
@click.argument("services", nargs=-1)
def down(services: tuple[str, ...]) -> None:
    """Stop what `cluster up` started (or the named SERVICES). Committed data is kept."""
    cluster_mod.down(settings(), services or None, progress=click.echo)


@cluster.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per daemon.")
def status(as_json: bool) -> None:
    """Each daemon's pid, port and health (with the reason when unhealthy)."""
    rows = cluster_mod.status(settings())
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        for r in rows:
            state = "healthy" if r.healthy else "DOWN"
            click.echo(
                f"{r.name:<10} {state:<8} pid {r.pid or '-':<8} port {r.port or '-':<6} {r.reason}"
            )
    if not all(r.healthy for r in rows):
        raise SystemExit(3)


@cluster.command()
@click.argument("name", required=False)
@click.option("-n", "--lines", default=40, show_default=True, help="Lines to show from each log.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the log grows.")
def logs(name: str | None, lines: int, follow: bool) -> None:
    """List logs under the run directory, or show NAME's (a daemon, 'storm', or a file path)."""
    s = settings()
    groups = cluster_mod.log_files(s)
    if not name:
        for group, files in groups.items():
            click.echo(f"{group}:")
            for f in files:
                click.echo(f"  {f}")
        return
    candidates = [f for f in sum(groups.values(), []) if name in f.rsplit("/", 1)[-1] or f == name]
    if not candidates:
        candidates = groups.get(name, [])
    if not candidates:
        raise AutotagError(f"no log matching {name!r} under {s.log_dir}")
    args = ["tail", f"-n{lines}"] + (["-F"] if follow else []) + candidates
    subprocess.run(args, check=False)


commands = [cluster]
