"""The tuple contract of the topology's video branch, and its codec.

    videos spout ──SEGMENT_FIELDS──▶ video bolt ──SEGMENT_RESULT_FIELDS──▶ video writer

A segment's stream entry reuses the photo stream's fields: ``photo_id`` holds the segment
key ``<video_id>:<n>`` and ``source`` the ``SegmentJob`` as JSON (which blob, which frames),
so retries and dead letters work exactly as for photos. Tuples carry no pixels: a result is
the segment's tags, its detections (boxes, scores, and a base64 float32 vector each) and a
face per face track (box, face descriptor, the known person it matched).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from autotag.contract import WIRE, FaceFound, decode_vector, encode_vector

# videos spout -> video bolt; the tuple id is the Redis stream entry id.
SEGMENT_FIELDS = ["segment_key", "job", "attempt"]
# video bolt (and the videos spout's dead letters) -> video writer.
SEGMENT_RESULT_FIELDS = [
    "video_id",
    "segment",
    "status",
    "model_version",
    "feature_set",
    "tags",
    "detections",
    "stats",
    "reason",
    "attempts",
    "faces",
]
DONE, FAILED = "done", "failed"
PERSON, FACE = "person", "face"


@dataclass(frozen=True)
class SegmentJob:
    """One segment to analyse: frames [start_frame, stop_frame) of blob ``blob_id``.

    ``offset_secs`` is added to frame times: 0 for an uploaded file (its segments are
    ranges of one blob), the segment's start for a camera (each segment is its own blob).
    """

    video_id: str
    segment: int
    blob_id: str
    fps: float
    start_frame: int
    stop_frame: int
    offset_secs: float = 0.0
    camera: str | None = None

    @property
    def key(self) -> str:
        return f"{self.video_id}:{self.segment}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SegmentJob:
        d = json.loads(text)
        return cls(
            video_id=str(d["video_id"]),
            segment=int(d["segment"]),
            blob_id=str(d["blob_id"]),
            fps=float(d["fps"]),
            start_frame=int(d["start_frame"]),
            stop_frame=int(d["stop_frame"]),
            offset_secs=float(d.get("offset_secs") or 0.0),
            camera=d.get("camera"),
        )

    def secs(self, frame: int) -> float:
        """A frame's time in the video (or camera stream)."""
        return self.offset_secs + frame / self.fps

    @property
    def start_secs(self) -> float:
        return self.secs(self.start_frame)

    @property
    def end_secs(self) -> float:
        return self.secs(self.stop_frame)


def parse_segment_key(key: str) -> tuple[str, int]:
    """``<video_id>:<n>`` → (video_id, n); ValueError for anything else."""
    video_id, _, n = key.rpartition(":")
    if not video_id or not n.isdigit():
        raise ValueError(f"not a segment key: {key!r}")
    return video_id, int(n)


@dataclass
class Detection:
    """A person or face in one analysed frame; ``vector`` (the CNN on the crop) is kept for
    a track's best box in each stretch of a few seconds, not for every box."""

    frame: int
    secs: float
    kind: str  # PERSON | FACE
    x: int
    y: int
    w: int
    h: int
    score: float
    track: int
    vector: np.ndarray | None = None

    def to_list(self) -> list[Any]:
        vec = None if self.vector is None else encode_vector(self.vector)
        box = [self.x, self.y, self.w, self.h]
        return [self.frame, round(self.secs, 3), self.kind, *box, self.score, self.track, vec]

    @classmethod
    def from_list(cls, v: Sequence[Any]) -> Detection:
        frame, secs, kind, x, y, w, h, score, track, vec = v
        return cls(
            int(frame),
            float(secs),
            str(kind),
            int(x),
            int(y),
            int(w),
            int(h),
            float(score),
            int(track),
            None if vec is None else np.asarray(decode_vector(vec), dtype=np.float32),
        )


@dataclass
class SegmentFace:
    """One face track of a segment, by its representative face (the one matched to a known
    person, else the sharpest): stored in ``faces`` with the segment and time it came from,
    so a face first seen in a video is clustered and named like a photo's."""

    track: int
    frame: int
    secs: float
    frames: int  # analysed frames the track had a face in
    face: FaceFound

    def to_list(self) -> list[Any]:
        (face,) = WIRE["faces"][0]([self.face])
        return [self.track, self.frame, round(self.secs, 3), self.frames, face]

    @classmethod
    def from_list(cls, v: Sequence[Any]) -> SegmentFace:
        track, frame, secs, frames, face = v
        (found,) = WIRE["faces"][1]([face])
        return cls(int(track), int(frame), float(secs), int(frames), found)


@dataclass
class SegmentResult:
    """What was found in one segment (tags, detections, counts) or why it failed."""

    video_id: str
    segment: int
    status: str  # DONE | FAILED
    model_version: str | None = None
    feature_set: str | None = None  # of the detection vectors
    tags: list[tuple[str, float, int]] = field(default_factory=list)  # (tag, best score, frames)
    detections: list[Detection] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    attempts: int = 0
    faces: list[SegmentFace] = field(default_factory=list)

    @classmethod
    def failed(
        cls, video_id: str, segment: int, reason: str, attempts: int = 0, **stats: Any
    ) -> SegmentResult:
        return cls(video_id, segment, FAILED, reason=reason, attempts=attempts, stats=stats)

    def to_tuple(self) -> list[Any]:
        """The JSON-safe tuple, laid out as ``SEGMENT_RESULT_FIELDS``."""
        return [
            self.video_id,
            self.segment,
            self.status,
            self.model_version,
            self.feature_set,
            [[t, float(s), int(n)] for t, s, n in self.tags],
            [d.to_list() for d in self.detections],
            dict(self.stats),
            self.reason,
            self.attempts,
            [f.to_list() for f in self.faces],
        ]

    @classmethod
    def from_tuple(cls, values: Sequence[Any]) -> SegmentResult:
        # A tuple of a bolt started before faces travelled has no faces field.
        vid, seg, status, mv, fs, tags, dets, stats, reason, attempts = values[:10]
        faces = values[10] if len(values) > 10 else None
        return cls(
            video_id=str(vid),
            segment=int(seg),
            status=str(status),
            model_version=mv,
            feature_set=fs,
            tags=[(str(t), float(s), int(n)) for t, s, n in (tags or [])],
            detections=[Detection.from_list(d) for d in (dets or [])],
            stats=dict(stats or {}),
            reason=reason,
            attempts=int(attempts or 0),
            faces=[SegmentFace.from_list(f) for f in (faces or [])],
        )
