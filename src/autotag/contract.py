"""The result contract, written once: what a tag is, and what is decided about one photo.

The autotag bolt emits a ``PhotoResult``, the spout emits one for a photo it gave up on, the
DB writer decodes it and ``storage.writer`` stores it. Everything they agree on lives here:
the tag kinds, the statuses, the result's fields in tuple order, how each field travels
through Storm's JSON multilang protocol, and which ``photos`` column a field is stored in.

Adding a field (faces, places) is one edit to ``PhotoResult`` — a dataclass field with a
default, declared with ``stored()`` if it has a ``photos`` column — plus a migration for the
column: the tuple form, the topology's declared fields and the writer's statements all
follow from the dataclass. A tuple from an older bolt, shorter than today's, decodes with the
new fields at their defaults.

This module is the ground floor: no numpy, no OpenCV, nothing of vision, so the spout and
the DB writer load without the models. A feature vector travels as base64 of little-endian
float32 and decodes to an ``array('f')``, which numpy reads without a copy
(``np.asarray``).
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, NamedTuple

# What a tag is, as the tags table's CHECK constraint allows them (a test compares the two).
# leaf: a class of the bundle; concept: a word over leaves (``via`` its best leaf); detector:
# a detector's tag (face, person); property: a pixel property (monochrome); learned: a tag
# the learner fitted on a person's labels (``learning.learner``; ``via`` the bundle that learned it).
# place, time, keyword: from the file's metadata (where and when it was taken, the owner's
# keywords; ``autotag.vision.where_when``; a place alias has ``via`` the usual name).
# person: a named person's face is in the photo (the tag is the name; ``storage.people``).
KINDS = ("leaf", "concept", "detector", "property", "learned", "place", "time", "keyword", "person")
TAGGED, FAILED = "tagged", "failed"
STATUSES = (TAGGED, FAILED)

# spout -> autotag bolt; the tuple id is the Redis stream entry id.
PHOTO_FIELDS = ["photo_id", "source", "attempt"]


class Tag(NamedTuple):
    """One tag of a photo: what it says, how sure, what kind, and for a concept its leaf."""

    tag: str
    score: float
    kind: str = "leaf"  # one of KINDS
    via: str | None = None  # a concept's contributing leaf


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


def encode_vector(vector: Any) -> str:
    """base64 of little-endian float32: the tuple form of a feature vector (a float32 numpy
    array is read through its buffer, anything else element by element)."""
    try:
        view = memoryview(vector)
        raw = view.tobytes() if view.format == "f" and view.c_contiguous else b""
    except TypeError:
        raw = b""
    if not raw:
        values = array("f", (float(x) for x in _flat(vector)))
        if sys.byteorder == "big":
            values.byteswap()
        return base64.b64encode(values.tobytes()).decode("ascii")
    if sys.byteorder == "big":
        swapped = array("f", raw)
        swapped.byteswap()
        raw = swapped.tobytes()
    return base64.b64encode(raw).decode("ascii")


def _flat(values: Any) -> Iterable[Any]:
    for v in values:
        if isinstance(v, int | float):
            yield v
        else:
            try:
                yield from _flat(v)
            except TypeError:
                yield v


def decode_vector(text: str | None) -> array[float] | None:
    """The inverse of ``encode_vector``; a payload that is not whole float32s is an error."""
    if not text:
        return None
    raw = base64.b64decode(text)
    if len(raw) % 4:
        raise ValueError(f"vector payload of {len(raw)} bytes is not float32")
    values = array("f")
    values.frombytes(raw)
    if sys.byteorder == "big":
        values.byteswap()
    return values


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _tags_to_wire(tags: Sequence[Tag]) -> list[list[Any]]:
    return [[t.tag, float(t.score), t.kind, t.via] for t in tags]


def _tags_from_wire(value: Any) -> list[Tag]:
    return [decode_tag(t) for t in (value or [])]


def _vector_to_wire(vector: Any) -> str | None:
    return None if vector is None else encode_vector(vector)


class FaceFound(NamedTuple):
    """One face of a photo: its box ``(x, y, w, h)`` in the photo's own pixels, the detector's
    score, and for a face big enough to recognise its quality, descriptor (float32 values)
    and descriptor model; ``person_id`` the known person the autotag bolt matched it to (at
    ``person_score``), if any. Stored in the ``faces`` table (``storage.people``)."""

    box: tuple[int, int, int, int]
    score: float
    quality: float | None = None
    embedding: Any = None
    model_version: str | None = None
    person_id: int | None = None
    person_score: float | None = None


def decode_face(entry: Any) -> FaceFound:
    """A FaceFound from itself or its wire form (a dict); anything else is an error."""
    if isinstance(entry, FaceFound):
        return entry
    if not isinstance(entry, dict):
        raise ValueError(f"a face is a FaceFound or its dict, not {type(entry).__name__}")
    x, y, w, h = (int(v) for v in entry["box"])
    emb = entry.get("embedding")
    return FaceFound(
        (x, y, w, h),
        float(entry["score"]),
        None if entry.get("quality") is None else float(entry["quality"]),
        decode_vector(emb) if isinstance(emb, str) else emb,
        entry.get("model_version"),
        _optional_int(entry.get("person_id")),
        None if entry.get("person_score") is None else float(entry["person_score"]),
    )


def _faces_to_wire(faces: Sequence[FaceFound]) -> list[dict[str, Any]]:
    return [
        {
            "box": [int(v) for v in f.box],
            "score": float(f.score),
            "quality": None if f.quality is None else float(f.quality),
            "embedding": _vector_to_wire(f.embedding),
            "model_version": f.model_version,
            "person_id": f.person_id,
            "person_score": None if f.person_score is None else float(f.person_score),
        }
        for f in map(decode_face, faces)
    ]


def _faces_from_wire(value: Any) -> list[FaceFound]:
    return [decode_face(f) for f in (value or [])]


# How a field travels in a tuple: name -> (to JSON, from JSON). Fields without one travel as
# they are (strings, numbers, None).
# A carried field's codec: (to the JSON-safe tuple value, back from it).
WIRE: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "int": (_optional_int, _optional_int),
    "tags": (_tags_to_wire, _tags_from_wire),
    "vector": (_vector_to_wire, decode_vector),
    "faces": (_faces_to_wire, _faces_from_wire),
}


@dataclass(frozen=True)
class Column:
    """Where a result field is stored in ``photos``, and how a new value meets the old one.

    merge: ``keep`` (the new value unless it is NULL), ``replace`` (always the new value),
    ``greatest`` (the larger), ``status`` (a failure never downgrades a tagged photo).
    ``tagged_only``: stored only for a tagged result (NULL for a failed one).
    """

    name: str
    sql_type: str
    merge: str = "keep"
    tagged_only: bool = False


def stored(
    sql_type: str,
    *,
    merge: str = "keep",
    default: Any = MISSING,
    wire: str | None = None,
    tagged_only: bool = False,
    column: str | None = None,
) -> Any:
    """A result field with a ``photos`` column (named as the field unless ``column`` says)."""
    meta = {"column": Column(column or "", sql_type, merge, tagged_only), "wire": wire}
    return field(default=default, metadata=meta)


def carried(*, wire: str | None = None, default: Any = None, factory: Any = None) -> Any:
    """A result field that travels in the tuple but has no ``photos`` column of its own."""
    if factory is not None:
        return field(default_factory=factory, metadata={"wire": wire})
    return field(default=default, metadata={"wire": wire})


@dataclass
class PhotoResult:
    """What was decided about one photo: tagged (tags, vector, size) or failed (a reason).

    A bad image is a *failed result*, never a Storm failure, so it is stored and not replayed.
    Field order is tuple order; new fields go at the end, with a default.
    """

    photo_id: str = stored("text", merge="replace")
    status: str = stored("text", merge="status")  # one of STATUSES
    model_version: str | None = stored("text", default=None, tagged_only=True)
    feature_set: str | None = carried()  # stored with the vector, in photo_vectors
    tags: list[Tag] = carried(wire="tags", factory=list)  # stored in tags
    vector: Any = carried(wire="vector")  # float32 values; stored in photo_vectors
    width: int | None = stored("int", default=None, wire="int")
    height: int | None = stored("int", default=None, wire="int")
    reason: str | None = stored("text", default=None, merge="replace")
    attempts: int = stored("int", merge="greatest", default=0, wire="int")
    # What the file says (vision.metadata): when (wall clock; the instant when its offset is
    # known; where the date came from), where, with what, and the owner's own words.
    taken_local: str | None = stored("timestamp", default=None, tagged_only=True)
    taken_at: str | None = stored("timestamptz", default=None, tagged_only=True)
    taken_source: str | None = stored("text", default=None, tagged_only=True)
    latitude: float | None = stored("double precision", default=None, tagged_only=True)
    longitude: float | None = stored("double precision", default=None, tagged_only=True)
    altitude: float | None = stored("double precision", default=None, tagged_only=True)
    place: str | None = stored("text", default=None, tagged_only=True)
    camera: str | None = stored("text", default=None, tagged_only=True)
    lens: str | None = stored("text", default=None, tagged_only=True)
    keywords: str | None = stored("text", default=None, tagged_only=True)  # "; "-joined
    title: str | None = stored("text", default=None, tagged_only=True)
    description: str | None = stored("text", default=None, tagged_only=True)
    # Every face found (FaceFound); stored in the faces table, with person tags from it.
    faces: list[FaceFound] = carried(wire="faces", factory=list)
    # The person detector's boxes (vision.person_detector), JSON text [[x, y, w, h, score]...]
    # in the photo's own pixels; NULL when no person detector looked (migration 0013).
    person_boxes: str | None = stored("text", default=None, tagged_only=True)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"result status must be one of {STATUSES}, not {self.status!r}")
        self.tags = [decode_tag(t) for t in self.tags]  # (tag, score) pairs become leaves
        self.faces = [decode_face(f) for f in self.faces]

    @classmethod
    def tagged(cls, photo_id: str, outcome: Any) -> PhotoResult:
        """A tagged result from what a tagger returned: every field of the contract that
        ``outcome`` has an attribute for is copied (tags, vector, size, and new fields)."""
        values: dict[str, Any] = {
            f.name: getattr(outcome, f.name)
            for f in fields(cls)
            if f.name not in ("photo_id", "status") and hasattr(outcome, f.name)
        }
        return cls(photo_id, TAGGED, **values)

    @classmethod
    def failed(cls, photo_id: str, reason: str, attempts: int = 0) -> PhotoResult:
        return cls(photo_id, FAILED, reason=reason, attempts=attempts)

    @classmethod
    def field_names(cls) -> list[str]:
        """The tuple's fields, in order: what the bolt and the spout declare as outputs."""
        return [f.name for f in fields(cls)]

    @classmethod
    def columns(cls) -> list[tuple[str, Column]]:
        """(field, its ``photos`` column) for every stored field, in field order."""
        out = []
        for f in fields(cls):
            col = f.metadata.get("column")
            if col is not None:
                out.append((f.name, replace(col, name=col.name or f.name)))
        return out

    @classmethod
    def from_tuple(cls, values: Sequence[Any]) -> PhotoResult:
        """From a tuple laid out as ``field_names()`` (a shorter one: defaults for the rest)."""
        names = fields(cls)
        if len(values) > len(names):
            raise ValueError(f"a result tuple has {len(names)} fields, not {len(values)}")
        kwargs: dict[str, Any] = {}
        for f, value in zip(names, values, strict=False):
            wire = f.metadata.get("wire")
            kwargs[f.name] = WIRE[wire][1](value) if wire else value
        return cls(**kwargs)

    def to_tuple(self) -> list[Any]:
        """The JSON-safe tuple, laid out as ``field_names()``."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            wire = f.metadata.get("wire")
            out.append(WIRE[wire][0](value) if wire else value)
        return out


# autotag bolt (and the spout's dead letters) -> DB writer.
RESULT_FIELDS = PhotoResult.field_names()
