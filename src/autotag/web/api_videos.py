"""Videos over HTTP: upload, a video's timeline, re-identification of a detected person.

POST /videos                     the video's bytes as the body (video/* type): stored, probed,
                                 split into segments and queued, as ``autotag upload`` does
GET  /videos/<id>                a video's timeline (tags, detections per segment)
GET  /reid/<detection_id>?top=   the same person in other segments, videos, cameras

Segments carrying a tag are listed by ``GET /tags/<tag>`` beside the photos (api_search).

An uploaded video is streamed to a private temporary file under the run directory (refused
once it passes the video byte limit), judged by its first bytes, then handed to
``pipeline.video_intake.upload_video`` (the CLI's code): its limits on length, segments and
frame size give a 422 with the reason, which is also stored on the failed ``videos`` row.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from autotag.config import Settings
from autotag.errors import AutotagError
from autotag.pipeline import video_intake
from autotag.similarity.reid import ReidIndex
from autotag.storage import item_stream, videos
from autotag.vision.video_frames import sniff_video
from autotag.web.api_photos import State, body_chunks, check_length, source_name
from autotag.web.api_search import Limit, jsonable
from autotag.web.state import WebState

router = APIRouter(tags=["videos"])

KNOWN_CONTAINERS = "AVI, MP4, MOV, MKV/WebM, MPEG, MPEG-TS, FLV, Ogg, ASF/WMV"
_STATUS = {
    video_intake.QUEUED: 202,
    video_intake.DUPLICATE: 200,
    video_intake.ALREADY_DONE: 200,
    video_intake.REJECTED: 422,
}


def upload_dir(settings: Settings) -> Path:
    """Where uploads wait while they arrive: the run directory's own, private."""
    path = settings.run_dir / "uploads"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


async def _spool_to_file(request: Request, limit: int, directory: Path) -> Path:
    """The body in a new 0600 file of ours (``body_chunks``' limits); removed on any
    failure."""
    fd, name = tempfile.mkstemp(prefix="video-", suffix=".part", dir=directory)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in body_chunks(request, limit, "video"):
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(512)


def _register(
    state: WebState, path: Path, source: str, force: bool
) -> video_intake.VideoUploadRecord:
    with state.pool.connection() as conn, state.stream.errors():
        s = state.settings
        segments = item_stream.segment_stream(s.services, s.queue, state.stream.redis)
        return video_intake.upload_video(
            s.services, s.video, conn, segments, state.blobs, path, force=force, source=source
        )


@router.post(
    "/videos",
    status_code=202,
    summary="Upload a video (its bytes as the body, Content-Type video/...): split into "
    "segments and queued",
    responses={
        200: {"description": "already known (duplicate or already done)"},
        415: {"description": "not a video by its bytes"},
        422: {"description": "a video over a limit or unreadable; the reason is stored"},
    },
)
async def upload(
    request: Request,
    state: State,
    name: Annotated[str | None, Query(description="file name to show")] = None,
    force: Annotated[bool, Query(description="queue again even if done")] = False,
) -> Response:
    s = state.settings
    limit = s.video.max_video_bytes
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("video/"):
        raise HTTPException(415, "send the video's bytes as the body with Content-Type video/...")
    check_length(request, limit, "video")
    source = source_name(name or request.headers.get("x-filename"))
    async with state.uploads:
        path = await _spool_to_file(request, limit, upload_dir(s))
        try:
            head = await run_in_threadpool(_head, path)
            if not head:
                raise HTTPException(400, "empty body (0 bytes)")
            if sniff_video(head) is None:
                first = " ".join(f"{b:02x}" for b in head[:8])
                raise HTTPException(
                    415,
                    f"not a video by its bytes (first bytes {first}); known: {KNOWN_CONTAINERS}",
                )
            rec = await run_in_threadpool(_register, state, path, source, force)
        finally:
            path.unlink(missing_ok=True)
    if rec.status == video_intake.ERROR:
        raise HTTPException(500, rec.reason or "the video could not be stored")
    out: dict[str, Any] = {
        "video_id": rec.video_id,
        "status": rec.status,
        "source": source,
        "segments": rec.segments,
        "duration_secs": rec.duration_secs,
    }
    if rec.reason:
        out["reason"] = rec.reason
    if rec.status == video_intake.REJECTED:
        out["error"] = f"video rejected: {rec.reason}"
    return JSONResponse(out, status_code=_STATUS.get(rec.status, 200))


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
