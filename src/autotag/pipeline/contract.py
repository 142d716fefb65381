"""The tuple contract between the topology's components, and its codec.

Storm's multilang protocol is JSON, so tuples carry no image bytes: the spout sends a
photo's id (its bytes live in the blob store), and the autotag bolt sends a
``PhotoResult`` whose vector is base64 of little-endian float32 and whose tags are
``[tag, score, kind, via]`` lists (a ``[tag, score]`` pair from an older bolt is a leaf).
These field lists are what the spout and bolts declare as their ``outputs``;
ARCHITECTURE.md documents them.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autotag.vision.tagger import KINDS, Tag, TagResult

# spout -> autotag bolt; the tuple id is the Redis stream entry id.
PHOTO_FIELDS = ["photo_id", "source", "attempt"]
# autotag bolt (and the spout's dead letters) -> DB writer.
RESULT_FIELDS = [
    "photo_id",
    "status",
    "model_version",
    "feature_set",
    "tags",
    "vector",
    "width",
    "height",
    "reason",
    "attempts",
]
TAGGED, FAILED = "tagged", "failed"


def decode_tag(entry: Sequence[Any]) -> Tag:
    """``[tag, score]`` (a leaf) or ``[tag, score, kind, via]`` → a Tag; a bad kind is an error."""
    if isinstance(entry, Tag):
        return entry
    if len(entry) == 2:
        return Tag(str(entry[0]), float(entry[1]))
    tag, score, kind, via = entry
    if kind not in KINDS:
        raise ValueError(f"tag kind {kind!r} is not one of {KINDS}")
    return Tag(str(tag), float(score), str(kind), None if via is None else str(via))


def encode_vector(vector: np.ndarray) -> str:
    """base64 of little-endian float32: the tuple form of a feature vector."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str | None) -> np.ndarray | None:
    """The inverse of ``encode_vector``; a payload that is not whole float32s is an error."""
    if not text:
        return None
    raw = base64.b64decode(text)
    if len(raw) % 4:
        raise ValueError(f"vector payload of {len(raw)} bytes is not float32")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


@dataclass
class PhotoResult:
    """What was decided about one photo: tagged (tags, vector, size) or failed (a reason).

    A bad image is a *failed result*, never a Storm failure, so it is stored and not replayed.
    """

    photo_id: str
    status: str  # TAGGED | FAILED
    model_version: str | None = None
    feature_set: str | None = None
    tags: list[Tag] = field(default_factory=list)
    vector: np.ndarray | None = None
    width: int | None = None
    height: int | None = None
    reason: str | None = None
    attempts: int = 0  # delivery attempts used up (non-zero for dead-lettered photos)

    def __post_init__(self) -> None:
        self.tags = [decode_tag(t) for t in self.tags]  # (tag, score) pairs become leaves

    @classmethod
    def tagged(cls, photo_id: str, r: TagResult) -> PhotoResult:
        return cls(
            photo_id,
            TAGGED,
            model_version=r.model_version,
            feature_set=r.feature_set,
            tags=list(r.tags),
            vector=r.vector,
            width=r.width,
            height=r.height,
        )

    @classmethod
    def failed(cls, photo_id: str, reason: str, attempts: int = 0) -> PhotoResult:
        return cls(photo_id, FAILED, reason=reason, attempts=attempts)

    @classmethod
    def from_tuple(cls, values: Sequence[Any]) -> PhotoResult:
        """From a tuple laid out as ``RESULT_FIELDS``."""
        pid, status, mv, fs, tags, vec, w, h, reason, attempts = values
        return cls(
            photo_id=pid,
            status=status,
            model_version=mv,
            feature_set=fs,
            tags=[decode_tag(t) for t in (tags or [])],
            vector=decode_vector(vec),
            width=None if w is None else int(w),
            height=None if h is None else int(h),
            reason=reason,
            attempts=int(attempts or 0),
        )

    def to_tuple(self) -> list[Any]:
        """The JSON-safe tuple, laid out as ``RESULT_FIELDS``."""
        return [
            self.photo_id,
            self.status,
            self.model_version,
            self.feature_set,
            [[t.tag, float(t.score), t.kind, t.via] for t in self.tags],
            None if self.vector is None else encode_vector(self.vector),
            self.width,
            self.height,
            self.reason,
            self.attempts,
        ]
