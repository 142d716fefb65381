"""Storm UI's REST paths for a topology on the web page's port, behind its token: a mount
of ``ops.storm_rest``, which builds the JSON (``ops.storm_ui`` serves the very same on the
Storm UI's port).

    GET /api/v1/topology/<id>?window=600|10800|86400|:all-time
    GET /api/v1/topology/<id>/component/<name>?window=...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException

from autotag.ops import storm_rest
from autotag.web.api_photos import State

router = APIRouter(prefix="/api/v1", tags=["storm"])

T = TypeVar("T")


def _answer(build: Callable[[], T]) -> T:
    """``build()``, with a request ``ops.storm_rest`` refuses answered by its status."""
    try:
        return build()
    except storm_rest.StormRestError as exc:
        raise HTTPException(exc.status, exc.message) from None


def topology_info(state: State, topology: str) -> tuple[Any, dict[str, str]]:
    """Nimbus' TopologyInfo for a topology named by id or name (404 if none), and its
    components' kinds (for the Topology page, which renders ``storm_rest``'s dict too)."""
    return _answer(lambda: storm_rest.topology_info(state.settings, topology))


@router.get("/topology/{topology}", summary="A topology's spouts and bolts (Storm UI REST)")
def topology(
    topology: str, state: State, window: str = storm_rest.DEFAULT_WINDOW
) -> dict[str, Any]:
    return _answer(lambda: storm_rest.topology(state.settings, topology, window))


@router.get(
    "/topology/{topology}/component/{component}",
    summary="One spout or bolt over every window, its executors over one (Storm UI REST)",
)
def component(
    topology: str, component: str, state: State, window: str = storm_rest.DEFAULT_WINDOW
) -> dict[str, Any]:
    return _answer(lambda: storm_rest.component(state.settings, topology, component, window))
