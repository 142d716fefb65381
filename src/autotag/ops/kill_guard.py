"""Killing a topology only once this host's Supervisor has settled its assignment.

Storm 2.8.3's Supervisor halts ("Halting process: Error when processing an event",
``NoSuchFileException .../stormdist/<topology-id>/stormconf.ser``) when a topology is killed
while one of its slots is still localizing it (fetching its jar, code and conf from Nimbus):
cancelling the download deletes those files, then releasing the slot reads the conf it has
just deleted. The Supervisor launches a worker JVM only after localizing, so once this
host's workers of the topology run, a kill is safe; so is one of a topology with no slot
here (unscheduled, or placed on other hosts) or on a host whose Supervisor is not running.
Every path in autotag that kills a topology (``autotag kill``, ``submit --force``, ``storm
kill``) goes through :func:`kill` or :func:`wait_settled` first.

Other hosts' slots are not watched: their worker processes cannot be seen from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from autotag.config import Settings
from autotag.errors import AutotagError
from autotag.ops import workers
from autotag.ops.daemons.storm import SupervisorDaemon
from autotag.ops.nimbus import NimbusClient

# A worker usually starts within seconds of its assignment; localizing a big jar on a busy
# host, or waiting for the slot's previous worker to be killed first, takes longer.
DEFAULT_WORKER_TIMEOUT = 120.0
FORCE_FLAG = "--no-worker-wait"


def local_slots(settings: Settings, info: Any) -> set[int]:
    """The slot ports of this host's Supervisor that Nimbus gave the topology (from its
    getTopologyInfo answer)."""
    host = settings.services.local_hostname
    ours = {settings.services.port(p) for p in settings.services.worker_ports}
    return {
        int(ex.port)
        for ex in info.executors or []
        if ex.host == host and ex.port is not None and int(ex.port) in ours
    }


def unstarted_slots(settings: Settings, name: str, client: NimbusClient | None = None) -> list[int]:
    """This host's slots assigned to NAME whose worker JVM is not running yet (empty: a kill
    is safe here). AutotagError if no topology of that name runs."""
    client = client or NimbusClient(settings)
    info = client.topology_info(name)
    assigned = local_slots(settings, info)
    if not assigned or SupervisorDaemon(settings).pid() is None:
        return []  # nothing localizing here, or no Supervisor here that a kill could halt
    return sorted(assigned - workers.running_ports(settings.storm_local_dir, info.id))


def wait_settled(
    settings: Settings,
    name: str,
    timeout: float = DEFAULT_WORKER_TIMEOUT,
    *,
    progress: Callable[[str], None] | None = None,
    client: NimbusClient | None = None,
    force_hint: str = FORCE_FLAG,
) -> None:
    """Return once :func:`unstarted_slots` is empty; AutotagError after TIMEOUT seconds
    (a kill then could halt the Supervisor, so the caller must not go on; FORCE_HINT is
    how the user kills anyway)."""
    client = client or NimbusClient(settings)
    deadline = time.monotonic() + timeout
    said = False
    while True:
        pending = unstarted_slots(settings, name, client)
        if not pending:
            return
        if time.monotonic() >= deadline:
            slots = ", ".join(map(str, pending))
            raise AutotagError(
                f"{name}'s worker (slot {slots}) has not started after {timeout:.0f}s, so this "
                "host's Supervisor may still be localizing its jar, and a kill now would halt "
                f"Storm 2.8.3's Supervisor: retry later, or kill it anyway with {force_hint}"
            )
        if progress is not None and not said:
            progress(
                f"waiting for {name}'s worker to start before killing it "
                "(a kill during jar localization halts Storm 2.8.3's Supervisor)"
            )
            said = True
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def kill(
    settings: Settings,
    name: str,
    wait_secs: int = 0,
    *,
    worker_timeout: float | None = DEFAULT_WORKER_TIMEOUT,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Ask Nimbus to kill NAME once that cannot halt this host's Supervisor
    (``worker_timeout=None``: at once, as ``--no-worker-wait`` asks)."""
    client = NimbusClient(settings)
    if worker_timeout is not None:
        wait_settled(settings, name, worker_timeout, progress=progress, client=client)
    client.kill(name, wait_secs)
