"""Storm UI's REST API v1 for one topology, answered from Nimbus: the one implementation
behind both places that serve it.

    GET /api/v1/topology/<id>?window=600|10800|86400|:all-time
    GET /api/v1/topology/<id>/component/<name>?window=...

``<id>`` is the topology's id or its name. The dicts carry Storm's field names (``spouts``,
``bolts``, ``topologyStats``, ``boltStats`` / ``spoutSummary``, ``executorStats``...), built
by ``ops.component_stats`` from Nimbus' ``getTopologyInfo``. Two mounts serve them with the
same JSON: ``ops.storm_ui`` on the Storm UI's port (so a tool written for Storm's UI API
works against it) and ``web.api_storm`` on the web page's port behind its token, whose
Topology view renders the same dict.

Failures a client caused are ``StormRestError`` with the HTTP status to answer (400 for an
unknown window, 404 for an unknown topology or component); each mount turns it into
``{"error": <reason>}``. Nimbus being down stays a ``ServiceError`` (503 on both mounts).
"""

from __future__ import annotations

from typing import Any

from autotag.config import Settings
from autotag.errors import AutotagError, ServiceError
from autotag.ops import component_stats
from autotag.ops.nimbus import NimbusClient

DEFAULT_WINDOW = ":all-time"  # as Storm's UI when no ?window= is given


class StormRestError(AutotagError):
    """A request this API refuses, with the HTTP status to answer it with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_window(window: str | None) -> str:
    """The window to report (``:all-time`` if none); a 400 ``StormRestError`` if unknown."""
    try:
        return component_stats.check_window(window or DEFAULT_WINDOW)
    except ValueError as exc:
        raise StormRestError(400, str(exc)) from None


def topology_info(s: Settings, topology: str) -> tuple[Any, dict[str, str]]:
    """Nimbus' TopologyInfo for a topology named by id or name, and its components' kinds
    (component id -> 'spout' | 'bolt'); a 404 ``StormRestError`` if no such topology runs."""
    client = NimbusClient(s)
    try:
        row = next((t for t in client.topologies() if topology in (t.id, t.name)), None)
        if row is None:
            raise StormRestError(404, f"no topology {topology!r}")
        return client.topology_info(row.name), client.components(row.name)
    except (ServiceError, StormRestError):
        raise
    except AutotagError as exc:  # killed between the two calls: Nimbus' NotAliveException
        raise StormRestError(404, str(exc)) from None


def topology(s: Settings, topology: str, window: str | None = None) -> dict[str, Any]:
    """``/api/v1/topology/<id>?window=``: the topology and its spouts and bolts."""
    w = check_window(window)
    info, structure = topology_info(s, topology)
    return component_stats.topology_page(info, w, structure)


def component(
    s: Settings, topology: str, component: str, window: str | None = None
) -> dict[str, Any]:
    """``/api/v1/topology/<id>/component/<name>?window=``: one spout or bolt over every
    window, its executors over ``window``."""
    w = check_window(window)
    info, structure = topology_info(s, topology)
    try:
        return component_stats.component_page(info, component, structure, w)
    except KeyError:
        raise StormRestError(404, f"no component {component!r} in {info.name}") from None
