"""The video writer's batched, idempotent writes of segment results.

A batch is one transaction: each segment's row is updated, its detections, tags and faces
replaced (so a replayed segment never duplicates anything; a face a person named keeps its
name, ``storage.people.store_segment_faces``), and its video's status settled from its
segments. A result the database refuses as data is stored instead as a failed segment with
the reason, so one bad result cannot make Storm replay a batch forever.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import psycopg

from autotag.config import ServiceSettings
from autotag.contract import FaceFound
from autotag.storage import people, videos
from autotag.storage.database import connect, first_line
from autotag.storage.writer import DELETE_LOCK, is_transient

log = logging.getLogger(__name__)


class StorableDetection(Protocol):
    frame: int
    secs: float
    kind: str
    x: int
    y: int
    w: int
    h: int
    score: float
    track: int
    vector: np.ndarray | None


class StorableFace(Protocol):
    """A segment's face track (``pipeline.video_contract.SegmentFace``)."""

    @property
    def track(self) -> int: ...
    @property
    def secs(self) -> float: ...
    @property
    def frames(self) -> int: ...
    @property
    def face(self) -> FaceFound: ...


class StorableSegment(Protocol):
    """What the writer reads of one segment's result (``pipeline.video_contract``): read-only
    members, so a result with a list of its own detections (or no reason) is one too."""

    @property
    def video_id(self) -> str: ...
    @property
    def segment(self) -> int: ...
    @property
    def status(self) -> str: ...  # 'done' | 'failed'
    @property
    def model_version(self) -> str | None: ...
    @property
    def feature_set(self) -> str | None: ...
    @property
    def tags(self) -> Sequence[tuple[str, float, int]]: ...
    @property
    def detections(self) -> Sequence[StorableDetection]: ...
    @property
    def stats(self) -> dict[str, Any]: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def faces(self) -> Sequence[StorableFace]: ...


def _literal(v: np.ndarray | None) -> str | None:
    """A real[] literal, or None for no vector or one we refuse to store (non-finite)."""
    if v is None:
        return None
    arr = np.asarray(v, dtype=np.float32).ravel()
    if arr.size == 0 or not np.isfinite(arr).all():
        return None
    return "{" + ",".join(map(repr, arr.tolist())) + "}"


def _clean(text: str | None) -> str | None:
    return None if text is None else str(text).replace("\x00", "")


_UPDATE_SEGMENT = """
UPDATE video_segments SET
    status = CASE WHEN status = 'done' AND %(status)s = 'failed' THEN 'done' ELSE %(status)s END,
    reason = CASE WHEN status = 'done' AND %(status)s = 'failed' THEN reason ELSE %(reason)s END,
    attempts = GREATEST(attempts, %(attempts)s),
    model_version = COALESCE(%(mv)s, model_version),
    feature_set = COALESCE(%(fs)s, feature_set),
    frames_decoded = COALESCE(%(decoded)s, frames_decoded),
    frames_analysed = COALESCE(%(analysed)s, frames_analysed),
    stats = %(stats)s::jsonb,
    analysed_at = now()
WHERE video_id = %(vid)s AND segment = %(seg)s
RETURNING status
"""

_INSERT_DETECTIONS = """
INSERT INTO video_detections (video_id, segment, camera, frame, at_secs, kind, track,
                              x, y, w, h, score, feature_set, feature)
SELECT %(vid)s, %(seg)s, v.camera, d.frame, d.at_secs, d.kind, d.track, d.x, d.y, d.w, d.h,
       d.score, CASE WHEN d.feature IS NOT NULL THEN %(fs)s END, d.feature::real[]
FROM unnest(%(frame)s::int[], %(at)s::real[], %(kind)s::text[], %(track)s::int[],
            %(x)s::int[], %(y)s::int[], %(w)s::int[], %(h)s::int[], %(score)s::real[],
            %(feature)s::text[])
     AS d(frame, at_secs, kind, track, x, y, w, h, score, feature)
CROSS JOIN (SELECT camera FROM videos WHERE video_id = %(vid)s) v
"""

_INSERT_TAGS = """
INSERT INTO video_segment_tags (video_id, segment, tag, score, frames, model_version)
SELECT %(vid)s, %(seg)s, t.tag, t.score, t.frames, %(mv)s
FROM unnest(%(tag)s::text[], %(score)s::real[], %(frames)s::int[]) AS t(tag, score, frames)
"""


def _write_one(conn: psycopg.Connection[Any], r: StorableSegment) -> None:
    key = {"vid": r.video_id, "seg": int(r.segment)}
    row = conn.execute(
        _UPDATE_SEGMENT,
        {
            **key,
            "status": r.status,
            "reason": _clean(r.reason),
            "attempts": int(r.attempts or 0),
            "mv": _clean(r.model_version),
            "fs": _clean(r.feature_set),
            "decoded": r.stats.get("frames_decoded"),
            "analysed": r.stats.get("frames_analysed"),
            "stats": json.dumps(r.stats),
        },
    ).fetchone()
    if row is None:
        # Not registered, or its video was deleted while the segment was queued or analysed.
        log.warning("segment %s:%s is not registered; result dropped", r.video_id, r.segment)
        return
    if r.status != "done":
        return
    if not r.model_version:
        raise ValueError(f"done segment {r.video_id}:{r.segment} has no model_version")
    conn.execute("DELETE FROM video_detections WHERE video_id = %(vid)s AND segment = %(seg)s", key)
    conn.execute(
        "DELETE FROM video_segment_tags WHERE video_id = %(vid)s AND segment = %(seg)s", key
    )
    d = r.detections
    if d:
        conn.execute(
            _INSERT_DETECTIONS,
            {
                **key,
                "fs": _clean(r.feature_set),
                "frame": [x.frame for x in d],
                "at": [x.secs for x in d],
                "kind": [x.kind for x in d],
                "track": [x.track for x in d],
                "x": [x.x for x in d],
                "y": [x.y for x in d],
                "w": [x.w for x in d],
                "h": [x.h for x in d],
                "score": [x.score for x in d],
                "feature": [_literal(x.vector) for x in d],
            },
        )
    best: dict[str, tuple[float, int]] = {}
    for tag, score, frames in r.tags:
        name = _clean(tag) or ""
        if name and np.isfinite(score) and (name not in best or score > best[name][0]):
            best[name] = (float(score), int(frames))
    if best:
        conn.execute(
            _INSERT_TAGS,
            {
                **key,
                "mv": _clean(r.model_version),
                "tag": list(best),
                "score": [s for s, _ in best.values()],
                "frames": [n for _, n in best.values()],
            },
        )
    # Its faces (one per face track) join the people's faces; the names of the known people
    # among them become the segment's person tags.
    people.store_segment_faces(
        conn,
        r.video_id,
        int(r.segment),
        [people.TrackFace(f.track, f.secs, f.frames, f.face) for f in r.faces],
    )


def _write(conn: psycopg.Connection[Any], batch: Sequence[StorableSegment]) -> None:
    with conn.transaction():
        # Shared with other writers, exclusive for a delete (storage.deletion): a batch
        # commits wholly before a video is trashed (and its rows go to the trash with it) or
        # starts after it, when its segment rows are gone and the result is dropped.
        conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (DELETE_LOCK,))
        for r in batch:
            _write_one(conn, r)
        videos.settle(conn, sorted({r.video_id for r in batch}))


def write_segment_results(conn: psycopg.Connection[Any], results: Sequence[StorableSegment]) -> int:
    """Store a batch of segment results in one transaction; returns the results stored.

    Idempotent (a segment's detections and tags are replaced; a 'failed' result never
    downgrades a 'done' segment). A batch refused as data is retried one result at a time,
    and a result still refused is stored as a failed segment with the reason. Only
    connection-class errors (``is_transient``) propagate: the batcher keeps the batch and
    retries it, then fails the tuples back to Storm, which replays them.
    """
    last: dict[tuple[str, int], StorableSegment] = {}
    for r in results:
        if r.status not in ("done", "failed"):
            raise ValueError(f"segment status must be 'done' or 'failed', not {r.status!r}")
        last[(r.video_id, int(r.segment))] = r
    batch = [last[k] for k in sorted(last)]
    if not batch:
        return 0
    try:
        _write(conn, batch)
        return len(batch)
    except Exception as exc:
        if is_transient(exc):
            raise
        log.warning("segment batch of %d refused (%s); one by one", len(batch), first_line(exc))
    stored = 0
    for r in batch:
        try:
            _write(conn, [r])
            stored += 1
            continue
        except Exception as exc:
            if is_transient(exc):
                raise
            reason = f"could not store result: {first_line(exc)}"
        try:
            _write(conn, [_Failed(r.video_id, int(r.segment), reason, r.attempts)])
            log.error("segment %s:%s: %s", r.video_id, r.segment, reason)
            stored += 1
        except Exception as exc:
            if is_transient(exc):
                raise
            log.error("dropping the result for %s:%s: %s", r.video_id, r.segment, first_line(exc))
    return stored


class _Failed:
    """A segment result the database refused, stored instead as failed with the reason."""

    status: str = "failed"
    model_version: str | None = None
    feature_set: str | None = None
    tags: Sequence[tuple[str, float, int]] = ()
    detections: Sequence[StorableDetection] = ()
    faces: Sequence[StorableFace] = ()

    def __init__(self, video_id: str, segment: int, reason: str, attempts: int) -> None:
        self.video_id = video_id
        self.segment = segment
        self.reason = reason
        self.attempts = attempts
        self.stats: dict[str, Any] = {}


class SegmentWriter:
    """``write_segment_results`` on a connection it holds, reconnecting after an outage."""

    def __init__(self, services: ServiceSettings) -> None:
        self.services = services
        self.conn: psycopg.Connection[Any] | None = None

    def write(self, results: Sequence[StorableSegment]) -> int:
        if self.conn is None or self.conn.closed:
            self.conn = connect(self.services, migrate_schema=False)
        return write_segment_results(self.conn, results)

    def reset(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
        self.conn = None
