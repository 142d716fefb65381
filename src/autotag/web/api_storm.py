"""Storm UI's REST paths for a topology, answered from Nimbus (``ops.component_stats``).

    GET /api/v1/topology/<id>?window=600|10800|86400|:all-time
    GET /api/v1/topology/<id>/component/<name>

``<id>`` is the topology's id or its name, as with the summary endpoints that
``ops.storm_ui`` serves; tools written for Storm's UI API read the same field names.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from autotag.errors import AutotagError, ServiceError
from autotag.ops import component_stats
from autotag.ops.nimbus import NimbusClient
from autotag.web.api_photos import State

router = APIRouter(prefix="/api/v1", tags=["storm"])


def topology_info(state: State, topology: str) -> tuple[Any, dict[str, str]]:
    """Nimbus' TopologyInfo for a topology named by id or name (404 if none), and its
    components' kinds."""
    client = NimbusClient(state.settings)
    try:
        rows = client.topologies()
        row = next((t for t in rows if topology in (t.id, t.name)), None)
        if row is None:
            raise HTTPException(404, f"no topology {topology!r}")
        return client.topology_info(row.name), client.components(row.name)
    except ServiceError:
        raise
    except AutotagError as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/topology/{topology}", summary="A topology's spouts and bolts (Storm UI REST)")
def topology(topology: str, state: State, window: str = ":all-time") -> dict[str, Any]:
    try:
        window = component_stats.check_window(window)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    info, structure = topology_info(state, topology)
    return component_stats.topology_page(info, window, structure)


@router.get(
    "/topology/{topology}/component/{component}",
    summary="One spout or bolt over every window (Storm UI REST)",
)
def component(topology: str, component: str, state: State) -> dict[str, Any]:
    info, structure = topology_info(state, topology)
    try:
        return component_stats.component_page(info, component, structure)
    except KeyError:
        raise HTTPException(404, f"no component {component!r} in {info.name}") from None
