"""The cluster and the models over HTTP: what the Status and Models pages show and do.

GET  /api/status                        services, topologies, queue, photos/min, failures
POST /api/topologies/<name>/activate    (and /deactivate) through Nimbus
POST /api/failed/retry                  re-queue every failed photo
GET  /api/models                        bundles with their metrics
POST /api/models/<id>/activate          the running bolts switch within seconds
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query

from autotag.errors import AutotagError, ModelError, ServiceError
from autotag.ops import cluster
from autotag.ops.nimbus import NimbusClient
from autotag.pipeline.requeue import requeue
from autotag.storage import lookups
from autotag.storage.item_stream import ItemStream
from autotag.vision import bundle as bundles
from autotag.web.api_photos import State

router = APIRouter(prefix="/api", tags=["cluster"])


def queue_info(stream: ItemStream) -> dict[str, Any]:
    """Backlog, pending and dead letters; an "error" entry instead if Redis is down."""
    try:
        with stream.errors():
            return {
                "backlog": stream.backlog_len(),
                "pending": stream.pending_count(),
                "dead_letters": int(stream.redis.xlen(stream.dead_name)),
            }
    except ServiceError as exc:
        return {"error": str(exc)}


def topologies(state: State) -> dict[str, Any]:
    try:
        return {"topologies": [t.as_dict() for t in NimbusClient(state.settings).topologies()]}
    except AutotagError as exc:
        return {"topologies": [], "error": str(exc)}


@router.get("/status", summary="Services, topologies, queue depth, photos per minute, failures")
def status(state: State, minutes: Annotated[int, Query(ge=1, le=180)] = 15) -> dict[str, Any]:
    s = state.settings
    with state.pool.connection() as conn:
        counts = lookups.status_counts(conn)
        rate = lookups.tagged_per_minute(conn, minutes)
        failed = lookups.failed(conn, 20)
    return {
        "services": [st.as_dict() for st in cluster.status(s)],
        **topologies(state),
        "queue": queue_info(state.stream),
        "photos": counts,
        "tagged_per_minute": rate,
        "failed": failed,
    }


@router.post("/topologies/{name}/{action}", summary="Activate or deactivate a topology")
def topology_action(
    name: str, action: Literal["activate", "deactivate"], state: State
) -> dict[str, Any]:
    client = NimbusClient(state.settings)
    try:
        getattr(client, action)(name)
    except ServiceError:
        raise
    except AutotagError as exc:
        raise HTTPException(404, str(exc)) from None
    return {"name": name, "action": action, "status": client.topology(name).status}


@router.post("/failed/retry", summary="Re-queue every failed photo")
def retry_failed(state: State) -> dict[str, Any]:
    s = state.settings
    return {"requeued": requeue(s.services, s.queue, s.blob_dir, None, statuses=("failed",))}


@router.get("/models", summary="Model bundles with their metrics (newest last)")
def models(state: State) -> dict[str, Any]:
    models_dir = state.settings.models_dir
    return {
        "active": bundles.active_bundle_id(models_dir),
        "models": [bundles.summarize_manifest(m) for m in bundles.list_bundles(models_dir)],
    }


@router.post("/models/{bundle_id}/activate", summary="Make a bundle the active one")
def activate_model(bundle_id: str, state: State) -> dict[str, Any]:
    models_dir = state.settings.models_dir
    try:
        if not bundles.bundle_dir(models_dir, bundle_id).is_dir():
            raise HTTPException(404, f"no bundle {bundle_id!r}")
        bundles.set_active(models_dir, bundle_id)
    except ModelError as exc:
        raise HTTPException(400, str(exc)) from None
    return {"active": bundle_id}
