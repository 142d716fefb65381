"""Video files → what they hold (``probe``) and the frames of one segment worth analysing.

A video is untrusted like a photo, so ``probe`` checks in the same order as ``decode``: bytes
on disk, the container from its magic bytes, then the frame size, frame rate and length from
the header, and only then one decoded frame. A segment is read by seeking to its first frame
(a failure replays one segment, never the whole video) and decoding forward to its last.

Not every decoded frame is analysed. ``FrameSampler`` keeps a frame when it is on the
sampling grid *and* something moved since the last kept frame, or when the picture cut to a
new scene; still footage is looked at once every ``static_every`` frames, so it costs little.
Motion is the share of pixels that changed on a small grey thumbnail.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from autotag.errors import AutotagError

# Names that say "video" even when the bytes do not (so a renamed text file gets a video
# reason, not a photo one).
VIDEO_SUFFIXES = frozenset(
    ".avi .mp4 .m4v .mov .mkv .webm .mpg .mpeg .ts .m2ts .flv .ogv .wmv .asf .3gp".split()
)
THUMB_WIDTH = 160
CHANGED_LEVEL = 12  # grey levels a thumbnail pixel must move to count as changed


class VideoError(AutotagError):
    """A video (or a segment of one) that cannot be analysed; the reason is stored."""


@dataclass(frozen=True)
class VideoLimits:
    """What one untrusted video may cost: bytes, seconds, segments, pixels per frame."""

    max_bytes: int
    max_secs: float
    max_segments: int
    max_pixels: int
    segment_secs: float


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` read from a video's header (and its first frame)."""

    format: str
    fps: float
    frames: int
    width: int
    height: int

    @property
    def duration_secs(self) -> float:
        return self.frames / self.fps

    def segment_count(self, segment_secs: float) -> int:
        return max(1, math.ceil(self.duration_secs / segment_secs - 1e-9))


def sniff_video(head: bytes) -> str | None:
    """The container named by the magic bytes, or None when it is none we know."""
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc", b"avif", b"avis"):
            return None  # still images in an ISO container
        return "MOV" if brand == b"qt  " else "MP4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "MOV"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "MKV/WebM"
    if head[:1] == b"\x47" and len(head) > 376 and head[188:189] == head[376:377] == b"\x47":
        return "MPEG-TS"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "MPEG"
    if head[:3] == b"FLV":
        return "FLV"
    if head[:4] == b"OggS":
        return "Ogg"
    if head[:8] == b"\x30\x26\xb2\x75\x8e\x66\xcf\x11":
        return "ASF/WMV"
    return None


def looks_like_video(head: bytes, name: str) -> bool:
    """True for video bytes, or a video file name (whose bytes ``probe`` then judges)."""
    return sniff_video(head) is not None or Path(name).suffix.lower() in VIDEO_SUFFIXES


def _describe_not_video(head: bytes) -> str:
    if not head:
        return "empty file (0 bytes)"
    if head[:3] == b"\xff\xd8\xff" or head[:8] == b"\x89PNG\r\n\x1a\n" or head[:3] == b"GIF":
        return "not a video: a still image"
    try:
        head[:512].decode("utf-8")
    except UnicodeDecodeError:
        first = " ".join(f"{b:02x}" for b in head[:8])
        return f"not a video: unknown format (first bytes {first})"
    return "not a video: plain text"


def _fmt_mpx(pixels: int) -> str:
    return f"{pixels / 1_000_000:.1f} Mpx"


def check_frame_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise VideoError(f"video frames have zero size ({width}x{height})")
    if width * height > max_pixels:
        raise VideoError(
            f"video frames are {width}x{height} = {_fmt_mpx(width * height)},"
            f" limit {_fmt_mpx(max_pixels)}"
        )


def open_capture(source: str | Path | int) -> cv2.VideoCapture:
    """An FFmpeg capture with open/read timeouts (they bound network streams; a file blocks
    only as long as its reads do)."""
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 10_000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 10_000]
    if isinstance(source, int):
        return cv2.VideoCapture(source, cv2.CAP_ANY, params)
    return cv2.VideoCapture(str(source), cv2.CAP_FFMPEG, params)


def probe(path: str | Path, limits: VideoLimits) -> VideoInfo:
    """Read a video's container, frame size, rate and length, within ``limits``, or raise
    VideoError with the reason (empty, not a video, too big, too long, no frames)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise VideoError(f"cannot read {p.name}: {exc.strerror or exc}") from None
    if size == 0:
        raise VideoError("empty file (0 bytes)")
    if size > limits.max_bytes:
        raise VideoError(f"file is {size:,} bytes, limit {limits.max_bytes:,} bytes")
    fmt = sniff_video(head)
    if fmt is None:
        raise VideoError(_describe_not_video(head))
    cap = open_capture(p)
    try:
        if not cap.isOpened():
            raise VideoError(f"cannot open this {fmt} video (truncated, corrupt or unknown codec)")
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        check_frame_size(width, height, limits.max_pixels)
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        if not math.isfinite(fps) or not 0.1 <= fps <= 1000:
            raise VideoError(f"this {fmt} video has no usable frame rate ({fps:g} fps)")
        max_frames = int(limits.max_secs * fps) + 1
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, first = cap.read()
        if not ok or first is None or first.size == 0:
            raise VideoError(f"no decodable frame in this {fmt} video (truncated or corrupt)")
        check_frame_size(first.shape[1], first.shape[0], limits.max_pixels)
        if frames <= 0:  # a stream without a frame count: count, but no further than allowed
            frames = 1
            while frames <= max_frames and cap.grab():
                frames += 1
    finally:
        cap.release()
    info = VideoInfo(fmt, fps, frames, first.shape[1], first.shape[0])
    if frames > max_frames:
        raise VideoError(
            f"video is {info.duration_secs:,.0f} s long, limit {limits.max_secs:,.0f} s"
        )
    segments = info.segment_count(limits.segment_secs)
    if segments > limits.max_segments:
        raise VideoError(f"video has {segments} segments, limit {limits.max_segments}")
    return info


# -- sampling ------------------------------------------------------------------------------


def thumbnail(bgr: np.ndarray) -> np.ndarray:
    """A small grey copy for motion and scene-change tests (INTER_AREA averages noise away)."""
    h, w = bgr.shape[:2]
    tw = min(THUMB_WIDTH, w)
    th = max(1, round(h * tw / w))
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
    return cv2.resize(grey, (tw, th), interpolation=cv2.INTER_AREA)


def changed_share(a: np.ndarray, b: np.ndarray) -> float:
    """Share of thumbnail pixels that moved by more than CHANGED_LEVEL grey levels."""
    if a.shape != b.shape:
        return 1.0
    return float(np.count_nonzero(cv2.absdiff(a, b) > CHANGED_LEVEL)) / a.size


class FrameSampler:
    """Which decoded frames to analyse: see the module docstring.

    ``every``: frames between grid points; ``static_every``: the longest run of still
    frames left unanalysed; ``min_motion`` / ``scene_change``: shares of changed pixels.
    """

    def __init__(
        self,
        every: int,
        static_every: int,
        *,
        min_motion: float = 0.001,
        scene_change: float = 0.5,
    ) -> None:
        self.every = max(1, every)
        self.static_every = max(self.every, static_every)
        self.min_motion = min_motion
        self.scene_change = scene_change
        self._previous: np.ndarray | None = None
        self._kept: np.ndarray | None = None
        self._kept_at = 0
        self._seen = 0

    def consider(self, thumb: np.ndarray) -> str | None:
        """Why this frame is analysed ('first', 'motion', 'scene', 'still'), or None."""
        n, self._seen = self._seen, self._seen + 1
        previous, self._previous = self._previous, thumb
        why: str | None = None
        if self._kept is None:
            why = "first"
        elif previous is not None and changed_share(previous, thumb) >= self.scene_change:
            why = "scene"
        elif n % self.every == 0:
            if changed_share(self._kept, thumb) >= self.min_motion:
                why = "motion"
            elif n - self._kept_at >= self.static_every:
                why = "still"
        if why is not None:
            self._kept, self._kept_at = thumb, n
        return why


@dataclass(frozen=True)
class SampledFrame:
    index: int  # frame number in the video
    secs: float  # its time in the video
    bgr: np.ndarray
    why: str


@dataclass
class SegmentReader:
    """Decodes frames [start, stop) of a video file and yields those the sampler keeps.

    ``decoded`` counts frames read; reading stops at ``stop``, at the end of the file, or
    with VideoError past ``deadline`` (a monotonic time) or on a frame over ``max_pixels``.
    """

    path: Path
    fps: float
    start: int
    stop: int
    sampler: FrameSampler
    max_pixels: int
    deadline: float = math.inf
    decoded: int = 0

    def __iter__(self) -> Iterator[SampledFrame]:
        cap = open_capture(self.path)
        try:
            if not cap.isOpened():
                raise VideoError("cannot open the video (truncated, corrupt or unknown codec)")
            if self.start > 0 and not cap.set(cv2.CAP_PROP_POS_FRAMES, float(self.start)):
                raise VideoError(f"cannot seek to frame {self.start}")
            for index in range(self.start, self.stop):
                if time.monotonic() > self.deadline:
                    raise VideoError(f"segment took too long: stopped after {self.decoded} frames")
                ok, frame = cap.read()
                if not ok or frame is None or frame.size == 0:
                    return
                check_frame_size(frame.shape[1], frame.shape[0], self.max_pixels)
                self.decoded += 1
                why = self.sampler.consider(thumbnail(frame))
                if why is not None:
                    yield SampledFrame(index, index / self.fps, frame, why)
        finally:
            cap.release()
