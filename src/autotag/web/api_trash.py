"""Deleting over HTTP: the trash, restoring, and removal for good (``storage.deletion``).

DELETE /photos/<id>[?permanently=true]   to the trash (or gone for good, with everything
DELETE /videos/<id>[?permanently=true]   derived from it); 404 for an unknown id
GET    /trash                            what is in the trash, newest first
POST   /trash/<id>/restore               back from the trash, with its tags
POST   /trash/empty                      everything in the trash removed for good
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.concurrency import run_in_threadpool

from autotag.storage import blobs, deletion
from autotag.web.state import WebState, web_state

router = APIRouter(tags=["trash"])
State = Annotated[WebState, Depends(web_state)]


def _id(raw: str) -> str:
    try:
        return blobs.validate_id(raw)
    except ValueError:
        raise HTTPException(400, "id must be 64 hex characters") from None


def _delete(state: WebState, item_id: str, kind: str, permanently: bool) -> dict[str, Any]:
    with state.pool.connection() as conn:
        d = deletion.for_settings(state.settings, conn)
        found = deletion.kind_of(conn, item_id)
        if found is not None and found != kind:
            raise HTTPException(404, f"{item_id} is a {found}, not a {kind}")
        [outcome] = d.purge([item_id]) if permanently else d.trash([item_id])
    if outcome.outcome == "unknown":
        raise HTTPException(404, f"no {kind} {item_id}")
    return {**outcome.as_dict(), "blobs_removed": d.files.blobs, "errors": d.files.errors}


@router.delete("/photos/{photo_id}", summary="Delete a photo (to the trash, or permanently)")
async def delete_photo(photo_id: str, state: State, permanently: bool = False) -> dict[str, Any]:
    return await run_in_threadpool(_delete, state, _id(photo_id), "photo", permanently)


@router.delete("/videos/{video_id}", summary="Delete a video (to the trash, or permanently)")
async def delete_video(video_id: str, state: State, permanently: bool = False) -> dict[str, Any]:
    return await run_in_threadpool(_delete, state, _id(video_id), "video", permanently)


@router.get("/trash", summary="What is in the trash")
def list_trash(state: State) -> list[dict[str, Any]]:
    with state.pool.connection() as conn:
        items = deletion.list_trash(conn, state.settings.trash.trash_days)
    return [t.as_dict() for t in items]


@router.post("/trash/{item_id}/restore", summary="Restore a photo or video from the trash")
def restore(item_id: str, state: State) -> dict[str, Any]:
    iid = _id(item_id)
    with state.pool.connection() as conn:
        d = deletion.for_settings(state.settings, conn)
        try:
            outcome = d.restore(iid)
        except deletion.UnknownItem as exc:
            raise HTTPException(404, str(exc)) from None
    return outcome.as_dict()


@router.post("/trash/empty", summary="Remove everything in the trash for good")
def empty(state: State) -> dict[str, Any]:
    with state.pool.connection() as conn:
        d = deletion.for_settings(state.settings, conn)
        outcomes = d.empty()
    return {"purged": len(outcomes), "blobs_removed": d.files.blobs, "errors": d.files.errors}
