"""A live camera (a device, a stream URL, or a file played at its real frame rate) cut into
segments as it runs: each segment is written as a small MJPEG file, stored as a blob,
registered and queued on the segment stream at once, so analysis follows the camera.

Frames are read on a thread of their own, because opening or reading a source can block
for good (a stream that never sends, a FIFO nobody writes to): the recorder waits at most
``stall_secs`` for each frame, then ends the run with the reason. A run that yielded no frame
at all ends ``failed``.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import re
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from autotag.checksums import bytes_sha256
from autotag.config import QueueSettings, ServiceSettings, VideoSettings
from autotag.errors import AutotagError
from autotag.pipeline.video_contract import SegmentJob
from autotag.pipeline.video_intake import enqueue_segments
from autotag.storage import database, videos
from autotag.storage.blobs import BlobStore
from autotag.storage.item_stream import client, segment_stream
from autotag.vision.video_frames import VideoError, check_frame_size, open_capture

log = logging.getLogger(__name__)

_URL = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp|srt)://", re.IGNORECASE)


def parse_source(text: str) -> tuple[str | int, bool]:
    """(what OpenCV opens, whether it is a file to play at its real rate)."""
    t = text.strip()
    if t.isdigit():
        return int(t), False
    if _URL.match(t):
        return t, False
    p = Path(t).expanduser()
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        raise AutotagError(f"camera source {text!r}: {exc.strerror or exc}") from None
    if stat.S_ISREG(mode):
        return str(p.resolve()), True
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return str(p.resolve()), False
    raise AutotagError(f"camera source {text!r} is not a file, device, FIFO or stream URL")


def display_source(text: str) -> str:
    """The source as stored: a URL's user name and password are dropped."""
    return re.sub(r"^([a-z]+://)[^/@]*@", r"\1", text.strip(), flags=re.IGNORECASE)


@dataclass
class CameraRun:
    video_id: str
    name: str
    status: str = "recording"
    reason: str | None = None
    frames: int = 0
    segments: int = 0


_END = object()


class _Feed:
    """Frames from the source on a daemon thread: (seconds since start, frame) in a queue."""

    def __init__(self, source: str | int, realtime: bool) -> None:
        self.frames: queue.Queue[Any] = queue.Queue(maxsize=256)
        self.fps = 0.0
        self.error: str | None = None
        self.thread = threading.Thread(
            target=self._run, args=(source, realtime), name="camera-feed", daemon=True
        )
        self.stopping = threading.Event()
        self.thread.start()

    def _run(self, source: str | int, realtime: bool) -> None:
        cap = open_capture(source)
        try:
            if not cap.isOpened():
                self.error = "cannot open the source"
                return
            fps = float(cap.get(cv2.CAP_PROP_FPS))
            self.fps = fps if math.isfinite(fps) and 0.1 <= fps <= 1000 else 0.0
            t0 = time.monotonic()
            n = 0
            while not self.stopping.is_set():
                ok, frame = cap.read()
                if not ok or frame is None or frame.size == 0:
                    return
                if realtime and self.fps:
                    at = n / self.fps
                    time.sleep(max(0.0, t0 + at - time.monotonic()))
                else:
                    at = time.monotonic() - t0
                self.frames.put((at, frame))
                n += 1
        finally:
            cap.release()
            self.frames.put(_END)


class _SegmentFile:
    """One segment being written: an MJPEG AVI in a temp folder."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], start_secs: float):
        self.path = path
        self.size = size
        self.start_secs = start_secs
        self.frames = 0
        self.last_secs = start_secs
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
        if not self.writer.isOpened():
            raise AutotagError(f"cannot write a segment file in {path.parent}")

    def add(self, at: float, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(frame)
        self.frames += 1
        self.last_secs = at

    def close(self) -> None:
        self.writer.release()


class CameraRecorder:
    """Records one camera run into queued segments (holds its Postgres and Redis connections)."""

    def __init__(
        self,
        services: ServiceSettings,
        queue_settings: QueueSettings,
        video: VideoSettings,
        source: str,
        name: str,
        *,
        blob_dir: Path,
        work_dir: Path,
        segment_secs: float | None = None,
        stall_secs: float = 10.0,
        on_segment: Callable[[SegmentJob], None] | None = None,
    ) -> None:
        """Segments go into the blobs in ``blob_dir``; ``work_dir`` holds the one being cut."""
        self.services = services
        self.queue_settings = queue_settings
        self.video = video
        self.opened, self.realtime = parse_source(source)
        self.source = display_source(source)
        self.name = name
        self.segment_secs = segment_secs or video.segment_secs
        self.stall_secs = stall_secs
        self.on_segment = on_segment
        self.blobs = BlobStore(blob_dir)
        self.tmp = work_dir
        seed = f"camera\n{name}\n{time.time_ns()}\n{os.getpid()}".encode()
        self.run = CameraRun(bytes_sha256(seed), name)

    def record(
        self, *, max_secs: float | None = None, stop: threading.Event | None = None
    ) -> CameraRun:
        """Record until the source ends, stalls, ``max_secs`` pass or ``stop`` is set."""
        stop = stop or threading.Event()
        self.tmp.mkdir(parents=True, exist_ok=True)
        with database.connect(self.services) as conn, database.pg_errors(self.services):
            stream = segment_stream(
                self.services, self.queue_settings, client(self.services, check=True)
            )
            videos.register_video(
                conn,
                self.run.video_id,
                kind="camera",
                source=self.source,
                camera=self.name,
                status="recording",
            )
            try:
                self._loop(conn, stream, max_secs, stop)
            finally:
                stream.redis.close()
                self._finish(conn)
        return self.run

    def _loop(self, conn: Any, stream: Any, max_secs: float | None, stop: threading.Event) -> None:
        feed = _Feed(self.opened, self.realtime)
        current: _SegmentFile | None = None
        try:
            while not stop.is_set():
                try:
                    item = feed.frames.get(timeout=self.stall_secs)
                except queue.Empty:
                    self.run.reason = f"no frame from the source for {self.stall_secs:g} s"
                    break
                if item is _END:
                    if feed.error:
                        self.run.reason = feed.error
                    break
                at, frame = item
                if max_secs is not None and at >= max_secs:
                    break
                if current is not None and at - current.start_secs >= self.segment_secs - 1e-6:
                    self._close(conn, stream, current, feed.fps)
                    current = None
                    if self.run.segments >= self.video.max_video_segments:
                        self.run.reason = f"stopped at the {self.run.segments}-segment limit"
                        break
                if current is None:
                    check_frame_size(frame.shape[1], frame.shape[0], self.video.max_video_pixels)
                    index = self.run.segments
                    path = self.tmp / f"{self.run.video_id[:16]}-{index}.avi"
                    size = (frame.shape[1], frame.shape[0])
                    current = _SegmentFile(path, feed.fps or 25.0, size, at)
                current.add(at, frame)
                self.run.frames += 1
        except VideoError as exc:
            self.run.reason = str(exc)
        finally:
            feed.stopping.set()
            if current is not None:
                self._close(conn, stream, current, feed.fps)

    def _close(self, conn: Any, stream: Any, seg: _SegmentFile, fps: float) -> None:
        seg.close()
        try:
            if seg.frames == 0:
                return
            if not fps:  # a live source without a rate: what actually arrived
                fps = max(0.1, seg.frames / max(seg.last_secs - seg.start_secs, 1e-3))
            blob_id, _ = self.blobs.put_file(seg.path)
            job = SegmentJob(
                self.run.video_id,
                self.run.segments,
                blob_id,
                fps,
                0,
                seg.frames,
                offset_secs=seg.start_secs,
                camera=self.name,
            )
            enqueue_segments(conn, stream, [job], nbytes=seg.path.stat().st_size)
            self.run.segments += 1
            if self.on_segment is not None:
                self.on_segment(job)
        finally:
            seg.path.unlink(missing_ok=True)

    def _finish(self, conn: Any) -> None:
        if self.run.segments == 0:
            self.run.status = "failed"
            self.run.reason = self.run.reason or "the source gave no frames"
            videos.set_status(conn, self.run.video_id, "failed", self.run.reason)
            return
        self.run.status = "queued"
        videos.set_status(conn, self.run.video_id, "queued", self.run.reason)
        videos.settle(conn, [self.run.video_id])
