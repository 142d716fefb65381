"""Getting videos in: a file becomes a blob, a ``videos`` row and one queued entry per
segment on the segment stream, so a failure costs one segment, never the whole video.

Unlike a photo, a video is probed here (container, frame size, rate, length, one decoded
frame): splitting it needs its length, and the limits (bytes, seconds, segments, pixels per
frame) are checked before anything is queued. A video that fails the probe is stored as a
failed ``videos`` row with the reason and reported ``rejected``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autotag.config import ServiceSettings, VideoSettings
from autotag.pipeline.video_contract import SegmentJob
from autotag.storage import database, videos
from autotag.storage.blobs import BlobStore, BlobTooLarge
from autotag.storage.item_stream import ItemStream
from autotag.vision.video_frames import VideoError, VideoInfo, VideoLimits, probe
from autotag.vision.where_when import describe_video

QUEUED = "queued"
DUPLICATE = "duplicate"
ALREADY_DONE = "already-done"
REJECTED = "rejected"
ERROR = "error"


def video_limits(video: VideoSettings) -> VideoLimits:
    return VideoLimits(
        max_bytes=video.max_video_bytes,
        max_secs=video.max_video_secs,
        max_segments=video.max_video_segments,
        max_pixels=video.max_video_pixels,
        segment_secs=video.segment_secs,
    )


@dataclass
class VideoUploadRecord:
    """What happened to one video file (``autotag upload`` prints it like a photo's)."""

    path: str
    video_id: str | None
    status: str
    reason: str | None = None
    segments: int = 0
    duration_secs: float | None = None

    @property
    def photo_id(self) -> str | None:  # the upload listing's id column
        return self.video_id

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "video", **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.as_dict())


def plan_segments(video_id: str, info: VideoInfo, segment_secs: float) -> list[SegmentJob]:
    """The segments of an uploaded file: frame ranges of about ``segment_secs`` each."""
    per = segment_secs * info.fps
    n = info.segment_count(segment_secs)
    return [
        SegmentJob(
            video_id,
            i,
            video_id,
            info.fps,
            round(i * per),
            info.frames if i == n - 1 else min(info.frames, round((i + 1) * per)),
        )
        for i in range(n)
    ]


def enqueue_segments(
    conn: Any, stream: ItemStream, jobs: list[SegmentJob], *, nbytes: int = 0
) -> None:
    """Register segments as queued, then put each on the segment stream."""
    if not jobs:
        return
    rows = [videos.SegmentRow(j.segment, j.blob_id, j.start_secs, j.end_secs) for j in jobs]
    videos.add_segments(conn, jobs[0].video_id, rows, nbytes=nbytes)
    for j in jobs:
        stream.enqueue(j.key, j.to_json())


def upload_video(
    services: ServiceSettings,
    video: VideoSettings,
    conn: Any,
    stream: ItemStream,
    blobs: BlobStore,
    path: Path,
    *,
    force: bool = False,
    source: str | None = None,
) -> VideoUploadRecord:
    """Store, probe, register and queue one video file (``source``: the name to show, when
    ``path`` is a temporary copy, as an HTTP upload's is)."""
    name = source or path.name
    limit = video.max_video_bytes
    try:
        fh = open(path, "rb")
    except OSError as exc:
        return VideoUploadRecord(str(path), None, ERROR, f"cannot read: {exc.strerror or exc}")
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            return VideoUploadRecord(
                str(path), None, REJECTED, f"{size} bytes is over the {limit}-byte video limit"
            )
        try:
            video_id, blob, nbytes = blobs.put_stream(fh, max_bytes=limit)
        except BlobTooLarge:
            return VideoUploadRecord(str(path), None, REJECTED, f"grew over {limit} bytes")
    with database.pg_errors(services), stream.errors():
        previous = videos.video_status(conn, video_id)
        if previous in ("queued", "recording") and not force:
            return VideoUploadRecord(str(path), video_id, DUPLICATE, "already queued")
        if previous == "done" and not force:
            return VideoUploadRecord(str(path), video_id, ALREADY_DONE)
        try:
            info = probe(blob, video_limits(video))
        except VideoError as exc:
            videos.register_video(
                conn, video_id, kind="upload", source=name, nbytes=nbytes,
                status="failed", reason=str(exc),
            )  # fmt: skip
            return VideoUploadRecord(str(path), video_id, REJECTED, str(exc))
        meta = {**asdict(info), "duration_secs": info.duration_secs}
        videos.register_video(conn, video_id, kind="upload", source=name, nbytes=nbytes, info=meta)
        # When and where it was taken (its container's creation time and position): the
        # video's place and time words; a malformed box costs only what it would have said.
        fields, words = describe_video(blob)
        videos.set_where_when(conn, video_id, fields, [t.tag for t in words])
        jobs = plan_segments(video_id, info, video.segment_secs)
        try:
            enqueue_segments(conn, stream, jobs)
        except Exception:
            videos.forget_video(conn, video_id)  # nothing half-queued is left behind
            raise
    return VideoUploadRecord(
        str(path), video_id, QUEUED, None, len(jobs), round(info.duration_secs, 3)
    )
