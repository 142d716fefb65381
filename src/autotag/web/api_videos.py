"""Videos over HTTP: a video's timeline and re-identification of a detected person.

GET /videos/<id>                 a video's timeline (tags, detections per segment)
GET /reid/<detection_id>?top=    the same person in other segments, videos, cameras

Segments carrying a tag are listed by ``GET /tags/<tag>`` beside the photos (api_search).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from autotag.errors import AutotagError
from autotag.search.reid import ReidIndex
from autotag.storage import videos
from autotag.web.api_photos import State
from autotag.web.api_search import Limit, jsonable

router = APIRouter(tags=["videos"])


@router.get("/videos/{video_id}", summary="A video's timeline: tags and detections per segment")
def timeline(video_id: str, state: State) -> dict[str, Any]:
    with state.pool.connection() as conn:
        vid = videos.resolve_video_id(conn, video_id)
        info = None if vid is None else videos.show_video(conn, vid)
    if info is None:
        raise HTTPException(404, f"no video {video_id!r}")
    return jsonable(info.as_dict())


@router.get("/reid/{detection_id}", summary="The same person in other segments, by vector")
def reid(detection_id: int, state: State, top: Limit = 10) -> dict[str, Any]:
    with state.pool.connection() as conn:
        index = ReidIndex(conn)
        index.load()
        try:
            query, hits = index.like_detection(detection_id, top)
        except AutotagError as exc:
            raise HTTPException(404, str(exc)) from None
    return jsonable({"query": query, "results": hits})
