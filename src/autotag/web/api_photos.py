"""Photos over HTTP: upload, details, the image and its thumbnail, labels, retry.

POST /photos                         the photo's bytes as the body (image/* type)
GET  /photos/<id>                    a photo, its current tags, whether it has a vector
GET  /photos/<id>/image              the stored bytes (only if they are an image)
GET  /photos/<id>/thumbnail          a small JPEG, or a placeholder saying why not
GET|POST /photos/<id>/labels         tag corrections; DELETE /photos/<id>/labels/<tag>
POST /photos/<id>/retry              re-queue a failed photo
GET  /labels.csv                     every label, as ``autotag train --labels`` reads
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from autotag.pipeline import intake
from autotag.pipeline.requeue import requeue
from autotag.storage import blobs, labels, lookups
from autotag.storage.blobs import BlobTooLarge
from autotag.vision.decode import sniff_format
from autotag.web.learner import learner_for
from autotag.web.state import WebState, web_state

router = APIRouter(tags=["photos"])

# Seconds a client may pause mid-upload before the upload is dropped.
UPLOAD_STALL_SECS = 60
# Bodies are spooled to disk past this size while they arrive.
SPOOL_BYTES = 1 << 20

State = Annotated[WebState, Depends(web_state)]


def photo_id_of(raw: str) -> str:
    try:
        return blobs.validate_id(raw)
    except ValueError:
        raise HTTPException(400, "photo id must be 64 hex characters") from None


def source_name(raw: str | None) -> str:
    """A display name from a client's file name: no directories, no NULs, at most 255."""
    name = Path((raw or "").replace("\\", "/")).name.replace("\x00", "")
    return name[:255] or "upload"


class UploadResult(BaseModel):
    photo_id: str
    status: str = Field(description="queued | duplicate | already-tagged")
    bytes: int
    source: str
    reason: str | None = None


def check_length(request: Request, limit: int, what: str = "photo") -> None:
    """A declared Content-Length (411 without one, 400 if malformed) within ``limit`` (413)."""
    length = request.headers.get("content-length")
    if length is None or request.headers.get("transfer-encoding"):
        raise HTTPException(411, "Content-Length is required")
    try:
        declared = int(length)
    except ValueError:
        raise HTTPException(400, "bad Content-Length") from None
    if declared > limit:
        raise HTTPException(413, f"larger than the {limit}-byte {what} limit")


async def body_chunks(request: Request, limit: int, what: str = "photo") -> AsyncIterator[bytes]:
    """The request body as it arrives: refused (413) as soon as it passes ``limit`` bytes,
    dropped (408) when the client stalls. ``what`` names the limit in the message."""
    total = 0
    chunks = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), UPLOAD_STALL_SECS)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise HTTPException(408, f"upload stalled for {UPLOAD_STALL_SECS}s") from None
        total += len(chunk)
        if total > limit:
            raise HTTPException(413, f"larger than the {limit}-byte {what} limit")
        yield chunk


async def _spool(request: Request, limit: int) -> Any:
    """The body in a temp file (``body_chunks``' limits); the caller closes it."""
    spool = tempfile.SpooledTemporaryFile(SPOOL_BYTES)  # noqa: SIM115 - closed by the caller
    try:
        async for chunk in body_chunks(request, limit):
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


@router.post(
    "/photos",
    status_code=202,
    response_model=UploadResult,
    response_model_exclude_none=True,
    responses={200: {"description": "already known (duplicate or already tagged)"}},
    summary="Upload a photo (its bytes as the body, Content-Type image/...)",
)
async def upload(
    request: Request,
    response: Response,
    state: State,
    name: Annotated[str | None, Query(description="file name to show")] = None,
    force: Annotated[bool, Query(description="queue again even if tagged")] = False,
) -> dict[str, Any]:
    s = state.settings
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("image/"):
        raise HTTPException(415, "send the photo's bytes as the body with Content-Type image/...")
    check_length(request, s.limits.max_file_bytes)
    source = source_name(name or request.headers.get("x-filename"))
    async with state.uploads:
        spool = await _spool(request, s.limits.max_file_bytes)
        with spool:
            try:
                photo_id, _path, nbytes = await run_in_threadpool(
                    state.blobs.put_stream, spool, max_bytes=s.limits.max_file_bytes
                )
            except BlobTooLarge as exc:
                raise HTTPException(413, str(exc)) from None
    status, reason = await run_in_threadpool(_register, state, photo_id, source, nbytes, force)
    response.status_code = 202 if status == intake.QUEUED else 200
    out: dict[str, Any] = {"photo_id": photo_id, "status": status, "bytes": nbytes}
    out["source"] = source
    if reason:
        out["reason"] = reason
    return out


def _register(
    state: WebState, photo_id: str, source: str, nbytes: int, force: bool
) -> tuple[str, str | None]:
    with state.pool.connection() as conn, state.stream.errors():
        s = state.settings
        up = intake.Intake(s.services, s.queue, s.limits, s.video, s.blob_dir)
        up.conn, up.stream = conn, state.stream
        return up.register_and_enqueue(photo_id, source, nbytes, force=force)


@router.get("/photos/{photo_id}", summary="A photo: status, current tags, vectors")
def photo(photo_id: str, state: State) -> dict[str, Any]:
    pid = photo_id_of(photo_id)
    with state.pool.connection() as conn:
        info = lookups.show(conn, pid)
    if info is None:
        raise HTTPException(404, f"no photo {pid}")
    return info.as_dict()


_MEDIA = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
# A stored photo is someone's upload: never let a browser run or sniff it as anything else.
_SAFE = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, max-age=31536000, immutable",  # content-addressed
}


@router.get("/photos/{photo_id}/image", summary="The photo's bytes, if they are an image")
def image(photo_id: str, state: State) -> Response:
    pid = photo_id_of(photo_id)
    try:
        data = state.blobs.read(pid, state.settings.limits.max_file_bytes)
    except blobs.BlobError as exc:
        raise HTTPException(404, str(exc)) from None
    fmt = sniff_format(data)
    if fmt is None:
        raise HTTPException(415, "the stored file is not an image this server shows")
    return Response(data, media_type=_MEDIA[fmt], headers=_SAFE)


@router.get(
    "/photos/{photo_id}/thumbnail",
    summary="A small JPEG (made once, cached), or an SVG placeholder saying why there is none",
)
def thumbnail(photo_id: str, state: State) -> Response:
    pid = photo_id_of(photo_id)
    thumb = state.thumbnails.get(pid)
    headers = dict(_SAFE)
    if thumb.error:
        headers["X-Thumbnail-Error"] = thumb.error.encode("ascii", "replace").decode()[:200]
        headers["Cache-Control"] = "private, no-cache"
    return Response(thumb.body, media_type=thumb.media_type, headers=headers)


class LabelIn(BaseModel):
    tag: str = Field(min_length=1, max_length=labels.MAX_TAG)
    positive: bool = Field(description="true: the tag belongs; false: the tag is wrong")


@router.get("/photos/{photo_id}/labels", summary="A photo's tag corrections, newest first")
def photo_labels(photo_id: str, state: State) -> dict[str, Any]:
    pid = photo_id_of(photo_id)
    with state.pool.connection() as conn:
        rows = labels.photo_labels(conn, pid)
    return {"photo_id": pid, "labels": [r.as_dict() for r in rows]}


@router.post("/photos/{photo_id}/labels", status_code=201, summary="Correct a tag")
def add_label(photo_id: str, body: LabelIn, state: State) -> dict[str, Any]:
    pid = photo_id_of(photo_id)
    try:
        with state.pool.connection() as conn:
            done = labels.set_label(conn, pid, body.tag, body.positive).as_dict()
        learner_for(state).poke()  # learns the tag in the background once it has examples
        return done
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(400, f"tag: {exc}") from None


@router.delete("/photos/{photo_id}/labels/{tag}", summary="Forget a correction")
def delete_label(photo_id: str, tag: str, state: State) -> dict[str, Any]:
    pid = photo_id_of(photo_id)
    try:
        with state.pool.connection() as conn:
            removed = labels.remove_label(conn, pid, tag)
    except ValueError as exc:
        raise HTTPException(400, f"tag: {exc}") from None
    if not removed:
        raise HTTPException(404, f"no label {tag!r} on photo {pid}")
    learner_for(state).poke()
    return {"photo_id": pid, "tag": tag, "removed": True}


@router.get("/labels.csv", summary="Every label as class,photo_id,label (autotag train --labels)")
def labels_csv(state: State) -> Response:
    with state.pool.connection() as conn:
        text = labels.export_csv(conn)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="labels.csv"'},
    )


@router.post("/photos/{photo_id}/retry", summary="Re-queue a failed photo")
def retry(photo_id: str, state: State) -> dict[str, Any]:
    pid = photo_id_of(photo_id)
    s = state.settings
    n = requeue(s.services, s.queue, s.blob_dir, [pid], statuses=("failed",))
    if not n:
        raise HTTPException(409, f"photo {pid} is not a failed photo with its file stored")
    return {"photo_id": pid, "requeued": n}
