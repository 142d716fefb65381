"""People over HTTP: the same storage functions as ``autotag people`` (``storage.people``),
and each face's picture cut from its photo when shown (``face_crops``).

GET  /api/people                        people: id, name, faces, photos, a sample face
GET  /api/people/<id>                   one person with their faces and photos
POST /api/people/<id>/name              {"name": "..."}: name or rename; their other faces join
POST /api/people/<id>/merge             {"other": ID}: the other person's faces move to this one
POST /api/people/<id>/forget            their name and face descriptors go (privacy)
GET  /photos/<id>/faces             a photo's faces with boxes and names
POST /faces/<id>/name               {"name": "..."}: name the person this face belongs to
POST /faces/<id>/remove             not this person (remembered, never given to them again)
GET  /faces/<id>/crop               the face as a small JPEG, cut from the photo's blob
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from fastapi import APIRouter, HTTPException, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from autotag.errors import AutotagError
from autotag.pipeline.people_match import gather
from autotag.pipeline.tag_step import decode_limits
from autotag.pipeline.video_step import blob_file
from autotag.storage import people as store
from autotag.web import face_crops
from autotag.web.api_photos import State, photo_id_of
from autotag.web.state import WebState

router = APIRouter(tags=["people"])
T = TypeVar("T")


class NameIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class MergeIn(BaseModel):
    other: int = Field(description="the person whose faces move to this one")


def names_changed(state: WebState) -> None:
    """A name was given, changed or taken away: search reads the current tags again (the
    typed words are matched against them), so the change is found at once."""
    state.cache.pop("tag_counts", None)


def _change(state: WebState, act: Callable[[psycopg.Connection[Any]], T | None], missing: str) -> T:
    """One change to who is who, then search told (``names_changed``); a 404 saying
    ``missing`` when the person or face was not there."""
    with state.pool.connection() as conn:
        done = act(conn)
    names_changed(state)
    if done is None:
        raise HTTPException(404, missing)
    return done


def _clean(name: str) -> str:
    try:
        return store.clean_name(name)
    except ValueError as exc:
        raise HTTPException(400, f"name: {exc}") from None


@router.get("/api/people", summary="People: id, name, number of faces and photos, a sample face")
def list_people(state: State, named: bool = False) -> list[dict[str, Any]]:
    with state.pool.connection() as conn:
        return store.list_people(conn, named_only=named)


@router.get("/api/people/{person_id}", summary="One person: their faces and photos")
def person(person_id: int, state: State) -> dict[str, Any]:
    with state.pool.connection() as conn:
        found = store.person(conn, person_id)
    if found is None:
        raise HTTPException(404, f"no person {person_id}")
    return found


def _name_person(state: WebState, person_id: int, name: str) -> dict[str, Any]:
    with state.pool.connection() as conn:
        pid = store.name_person(conn, person_id, name)
        if pid is None:
            raise HTTPException(404, f"no person {person_id}")
        joined = gather(conn, pid, state.settings.tagging.face_match_distance)
    names_changed(state)
    return {"person_id": pid, "name": name, "faces_joined": joined}


@router.post("/api/people/{person_id}/name", summary="Name (or rename) a person")
async def name_person(person_id: int, body: NameIn, state: State) -> dict[str, Any]:
    return await run_in_threadpool(_name_person, state, person_id, _clean(body.name))


@router.post("/api/people/{person_id}/merge", summary="Merge another person into this one")
def merge(person_id: int, body: MergeIn, state: State) -> dict[str, Any]:
    kept = _change(
        state,
        lambda conn: store.merge(conn, person_id, body.other),
        f"no person {person_id} or {body.other}",
    )
    return {"person_id": kept, "merged": body.other}


@router.post("/api/people/{person_id}/forget", summary="Forget a person (name and descriptors)")
def forget(person_id: int, state: State) -> dict[str, Any]:
    return _change(state, lambda conn: store.forget(conn, person_id), f"no person {person_id}")


@router.get("/photos/{photo_id}/faces", summary="A photo's faces: boxes, people, scores")
def photo_faces(photo_id: str, state: State) -> dict[str, Any]:
    pid = photo_id_of(photo_id)
    with state.pool.connection() as conn:
        return {"photo_id": pid, "faces": store.photo_faces(conn, pid)}


def _name_face(state: WebState, face_id: int, name: str) -> dict[str, Any]:
    with state.pool.connection() as conn:
        done = store.name_face(conn, face_id, name)
        if done is None:
            raise HTTPException(404, f"no face {face_id}")
        done["faces_joined"] = gather(
            conn, done["person_id"], state.settings.tagging.face_match_distance
        )
    names_changed(state)
    return done


@router.post("/faces/{face_id}/name", summary="Name the person this face belongs to")
async def name_face(face_id: int, body: NameIn, state: State) -> dict[str, Any]:
    return await run_in_threadpool(_name_face, state, face_id, _clean(body.name))


@router.post("/faces/{face_id}/remove", summary="This face is not its person")
def remove_face(face_id: int, state: State) -> dict[str, Any]:
    return _change(state, lambda conn: store.remove_face(conn, face_id), f"no face {face_id}")


def _crop(state: WebState, face_id: int) -> bytes:
    with state.pool.connection() as conn:
        found = store.face(conn, face_id)
    if found is None:
        raise HTTPException(404, f"no face {face_id}")
    limits = state.settings.limits
    if found["photo_id"] is None:
        # A video's face: cut from the one frame it was seen in (no frame is kept).
        with state.pool.connection() as conn:
            where = store.video_face_frame(conn, face_id)
        if where is None:
            raise HTTPException(404, f"no picture of face {face_id}: its video is gone")
        blob_id, frame = where
        try:
            return face_crops.crop_video(
                blob_file(state.blobs, blob_id), frame, tuple(found["box"]),
                state.settings.video.max_video_pixels,
            )  # fmt: skip
        except AutotagError as exc:
            raise HTTPException(404, f"no picture of face {face_id}: {exc}") from None
    try:
        x, y, w, h = found["box"]
        return face_crops.crop(
            state.blobs, found["photo_id"], (x, y, w, h), decode_limits(limits),
            limits.max_file_bytes,
        )  # fmt: skip
    except AutotagError as exc:
        raise HTTPException(404, f"no picture of face {face_id}: {exc}") from None


@router.get(
    "/faces/{face_id}/crop",
    summary="A face as a small JPEG, cut from its photo when asked (never stored apart)",
    response_class=Response,
)
async def face_crop(face_id: int, state: State) -> Response:
    body = await run_in_threadpool(_crop, state, face_id)
    return Response(
        body,
        media_type="image/jpeg",
        headers={
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=60",
        },
    )
