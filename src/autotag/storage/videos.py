"""The ``videos`` rows outside the video writer: registering uploads and camera runs and
their segments, and reading back what was found (segments by tag, a video's timeline,
detections and their vectors for re-identification).

Results of analysis are written by ``storage.video_writer``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row


@dataclass(frozen=True)
class SegmentRow:
    segment: int
    blob_id: str
    start_secs: float
    end_secs: float


def register_video(
    conn: psycopg.Connection[Any],
    video_id: str,
    *,
    kind: str,
    source: str | None,
    camera: str | None = None,
    nbytes: int | None = None,
    status: str = "queued",
    reason: str | None = None,
    info: dict[str, Any] | None = None,
) -> str | None:
    """Insert a video (or reset one that failed before) with ``status``; returns the status it
    had before (None if new). Its old segments and everything found in them are dropped."""
    info = info or {}
    row = conn.execute(
        """
        WITH old AS (SELECT status FROM videos WHERE video_id = %(id)s)
        INSERT INTO videos AS v (video_id, kind, camera, source, status, reason, format, fps,
                                 width, height, duration_secs, bytes)
        VALUES (%(id)s, %(kind)s, %(camera)s, %(source)s, %(status)s, %(reason)s, %(format)s,
                %(fps)s, %(width)s, %(height)s, %(duration)s, %(bytes)s)
        ON CONFLICT (video_id) DO UPDATE SET
            status = EXCLUDED.status, reason = EXCLUDED.reason, format = EXCLUDED.format,
            fps = EXCLUDED.fps, width = EXCLUDED.width, height = EXCLUDED.height,
            duration_secs = EXCLUDED.duration_secs, segments = 0, done_at = NULL,
            source = COALESCE(v.source, EXCLUDED.source), bytes = COALESCE(v.bytes, EXCLUDED.bytes)
        RETURNING (SELECT status FROM old)
        """,
        {
            "id": video_id,
            "kind": kind,
            "camera": camera,
            "source": source,
            "status": status,
            "reason": reason,
            "format": info.get("format"),
            "fps": info.get("fps"),
            "width": info.get("width"),
            "height": info.get("height"),
            "duration": info.get("duration_secs"),
            "bytes": nbytes,
        },
    ).fetchone()
    previous = row[0] if row else None
    if previous is not None:
        conn.execute("DELETE FROM video_segments WHERE video_id = %s", (video_id,))
    return previous


WHERE_WHEN_COLUMNS = (
    "taken_local", "taken_at", "taken_source", "latitude", "longitude", "altitude", "place",
)  # fmt: skip


def set_where_when(
    conn: psycopg.Connection[Any], video_id: str, fields: dict[str, Any], words: Sequence[str]
) -> None:
    """Store what the video's container said (``where_when.describe_video``'s fields) and its
    place and time words (``meta_tags``: every analysed segment is found by them)."""
    conn.execute(
        """
        UPDATE videos SET taken_local = %(taken_local)s, taken_at = %(taken_at)s,
            taken_source = %(taken_source)s, latitude = %(latitude)s,
            longitude = %(longitude)s, altitude = %(altitude)s, place = %(place)s,
            meta_tags = %(words)s
        WHERE video_id = %(id)s
        """,
        {
            **{k: fields.get(k) for k in WHERE_WHEN_COLUMNS},
            "words": sorted({w.lower() for w in words}),
            "id": video_id,
        },
    )


def video_status(conn: psycopg.Connection[Any], video_id: str) -> str | None:
    row = conn.execute("SELECT status FROM videos WHERE video_id = %s", (video_id,)).fetchone()
    return None if row is None else str(row[0])


def add_segments(
    conn: psycopg.Connection[Any],
    video_id: str,
    segments: Sequence[SegmentRow],
    *,
    nbytes: int = 0,
) -> None:
    """Add queued segments (a camera adds one at a time, with its blob's bytes)."""
    with conn.transaction():
        conn.cursor().executemany(
            "INSERT INTO video_segments (video_id, segment, blob_id, start_secs, end_secs)"
            " VALUES (%s, %s, %s, %s, %s)",
            [(video_id, s.segment, s.blob_id, s.start_secs, s.end_secs) for s in segments],
        )
        conn.execute(
            """
            UPDATE videos SET segments = segments + %s, bytes = COALESCE(bytes, 0) + %s,
                duration_secs = GREATEST(COALESCE(duration_secs, 0), %s)
            WHERE video_id = %s
            """,
            (len(segments), nbytes, max((s.end_secs for s in segments), default=0.0), video_id),
        )


def set_status(
    conn: psycopg.Connection[Any], video_id: str, status: str, reason: str | None = None
) -> None:
    """A camera run's end: 'queued' (its segments settle it), or 'failed' with a reason."""
    conn.execute(
        "UPDATE videos SET status = %s, reason = COALESCE(%s, reason) WHERE video_id = %s",
        (status, reason, video_id),
    )


def forget_video(conn: psycopg.Connection[Any], video_id: str) -> None:
    """Drop a video registered by an upload that could not be queued after all."""
    conn.execute("DELETE FROM videos WHERE video_id = %s", (video_id,))


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentHit:
    """A video segment carrying a tag, with its time range."""

    video_id: str
    segment: int
    start_secs: float
    end_secs: float
    tag: str
    score: float
    frames: int
    source: str | None
    camera: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "video_segment",
            "video_id": self.video_id,
            "segment": self.segment,
            "start_secs": round(self.start_secs, 3),
            "end_secs": round(self.end_secs, 3),
            "tag": self.tag,
            "score": round(self.score, 6),
            "frames": self.frames,
            "source": self.source,
            "camera": self.camera,
        }


def search_segments(
    conn: psycopg.Connection[Any], tag: str, min_score: float = 0.0, limit: int = 50
) -> list[SegmentHit]:
    """Segments whose analysed frames carried ``tag`` (case-insensitive), best score first."""
    rows = conn.execute(
        """
        SELECT t.video_id, t.segment, s.start_secs, s.end_secs, t.tag, t.score, t.frames,
               v.source, v.camera
        FROM video_segment_tags t
        JOIN video_segments s USING (video_id, segment)
        JOIN videos v USING (video_id)
        WHERE lower(t.tag) = lower(%(tag)s) AND t.score >= %(min)s AND s.status = 'done'
        UNION ALL
        -- the video's own place and time words (its container's metadata) tag every segment
        SELECT s.video_id, s.segment, s.start_secs, s.end_secs, lower(%(tag)s), 1.0,
               coalesce(s.frames_analysed, 0), v.source, v.camera
        FROM video_segments s
        JOIN videos v USING (video_id)
        WHERE v.meta_tags @> ARRAY[lower(%(tag)s)] AND s.status = 'done' AND %(min)s <= 1.0
        ORDER BY 6 DESC, 1, 2
        LIMIT %(limit)s
        """,
        {"tag": tag.strip(), "min": float(min_score), "limit": int(limit)},
    ).fetchall()
    return [SegmentHit(*r) for r in rows]


@dataclass
class VideoInfo:
    """A video row with its segments, each with tags and detection counts."""

    video: dict[str, Any]
    segments: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.video, "segments": self.segments}


def _iso(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    for k in keys:
        if row.get(k) is not None:
            row[k] = row[k].isoformat()
    return row


def show_video(conn: psycopg.Connection[Any], video_id: str) -> VideoInfo | None:
    """Everything known about one video: its row and a timeline of its segments."""
    with conn.cursor(row_factory=dict_row) as cur:
        video = cur.execute(
            "SELECT video_id, kind, camera, source, status, reason, format, fps, width, height,"
            " duration_secs, bytes, segments, uploaded_at, done_at, taken_local, taken_at,"
            " taken_source, latitude, longitude, altitude, place, meta_tags FROM videos"
            " WHERE video_id = %s",
            (video_id,),
        ).fetchone()
        if video is None:
            return None
        segments = cur.execute(
            "SELECT segment, start_secs, end_secs, status, reason, attempts, model_version,"
            " frames_decoded, frames_analysed FROM video_segments WHERE video_id = %s"
            " ORDER BY segment",
            (video_id,),
        ).fetchall()
        tags: dict[int, list[dict[str, Any]]] = {}
        for r in cur.execute(
            "SELECT segment, tag, score, frames FROM video_segment_tags WHERE video_id = %s"
            " ORDER BY segment, score DESC, tag",
            (video_id,),
        ):
            tags.setdefault(r["segment"], []).append(
                {"tag": r["tag"], "score": round(float(r["score"]), 6), "frames": r["frames"]}
            )
        found: dict[int, dict[str, Any]] = {}
        for r in cur.execute(
            "SELECT segment, kind, count(*) AS n, count(DISTINCT track) AS tracks,"
            " count(feature) AS vectors FROM video_detections WHERE video_id = %s"
            " GROUP BY segment, kind ORDER BY segment, kind",
            (video_id,),
        ):
            found.setdefault(r["segment"], {})[r["kind"]] = {
                "boxes": r["n"],
                "tracks": r["tracks"],
                "vectors": r["vectors"],
            }
    for s in segments:
        s["tags"] = tags.get(s["segment"], [])
        s["detections"] = found.get(s["segment"], {})
    return VideoInfo(_iso(video, "uploaded_at", "done_at", "taken_local", "taken_at"), segments)


def list_videos(
    conn: psycopg.Connection[Any], status: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Videos and camera runs, newest first (optionally of one status), with their reasons."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT video_id, kind, camera, source, status, reason, duration_secs, segments,"
            " uploaded_at FROM videos WHERE (%s::text IS NULL OR status = %s::text)"
            " ORDER BY uploaded_at DESC, video_id LIMIT %s",
            (status, status, int(limit)),
        ).fetchall()
    return [_iso(r, "uploaded_at") for r in rows]


def resolve_video_id(conn: psycopg.Connection[Any], prefix: str) -> str | None:
    """A video id from a unique prefix (at least 6 hex characters); None if unknown."""
    p = prefix.strip().lower()
    if len(p) < 6 or any(c not in "0123456789abcdef" for c in p):
        return None
    rows = conn.execute(
        "SELECT video_id FROM videos WHERE video_id LIKE %s ORDER BY video_id LIMIT 2",
        (p + "%",),
    ).fetchall()
    return rows[0][0] if len(rows) == 1 else None


def detections(
    conn: psycopg.Connection[Any],
    video_id: str,
    segment: int | None = None,
    kind: str | None = None,
) -> list[dict[str, Any]]:
    """A video's detections (boxes, times, scores, whether a vector is kept), in time order."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            SELECT detection_id, video_id, segment, camera, frame, at_secs, kind, track,
                   x, y, w, h, score, feature IS NOT NULL AS has_vector
            FROM video_detections
            WHERE video_id = %s AND (%s::int IS NULL OR segment = %s::int)
              AND (%s::text IS NULL OR kind = %s::text)
            ORDER BY at_secs, detection_id
            """,
            (video_id, segment, segment, kind, kind),
        ).fetchall()


def detection(conn: psycopg.Connection[Any], detection_id: int) -> dict[str, Any] | None:
    """One detection with its vector (``feature``: float32 array, or None)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT detection_id, video_id, segment, camera, frame, at_secs, kind, track,"
            " x, y, w, h, score, feature_set, feature FROM video_detections"
            " WHERE detection_id = %s",
            (int(detection_id),),
        ).fetchone()
    if row is not None and row["feature"] is not None:
        row["feature"] = np.asarray(row["feature"], dtype=np.float32)
    return row


def detection_vectors(
    conn: psycopg.Connection[Any], feature_set: str, kind: str = "person", batch: int = 2000
) -> Iterator[tuple[list[int], np.ndarray]]:
    """(detection ids, vectors) of every kept vector of a feature set, in batches."""
    last = 0
    while True:
        rows = conn.execute(
            "SELECT detection_id, feature FROM video_detections"
            " WHERE feature_set = %s AND kind = %s AND feature IS NOT NULL"
            " AND detection_id > %s ORDER BY detection_id LIMIT %s",
            (feature_set, kind, last, batch),
        ).fetchall()
        if not rows:
            return
        last = int(rows[-1][0])
        yield [int(r[0]) for r in rows], np.asarray([r[1] for r in rows], dtype=np.float32)


def detection_rows(conn: psycopg.Connection[Any], ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Detections by id (no vectors), with their video's source."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT d.detection_id, d.video_id, d.segment, d.camera, d.frame, d.at_secs,"
            " d.kind, d.track, d.x, d.y, d.w, d.h, d.score, v.source"
            " FROM video_detections d JOIN videos v USING (video_id)"
            " WHERE d.detection_id = ANY(%s)",
            (list(ids),),
        ).fetchall()
    return {int(r["detection_id"]): r for r in rows}


_SETTLE = """
UPDATE videos v SET
    status = CASE WHEN c.queued > 0 THEN 'queued' WHEN c.done > 0 THEN 'done' ELSE 'failed' END,
    reason = CASE
        WHEN c.queued > 0 THEN v.reason
        WHEN c.failed > 0 THEN c.failed || ' of ' || c.total || ' segments failed; first: '
                               || coalesce(c.first_reason, 'unknown')
        WHEN c.truncated > 0 THEN c.truncated_reason
    END,
    done_at = CASE WHEN c.queued = 0 THEN now() END
FROM (
    SELECT video_id, count(*) AS total,
           count(*) FILTER (WHERE status = 'queued') AS queued,
           count(*) FILTER (WHERE status = 'done') AS done,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           (array_agg(reason ORDER BY segment) FILTER (WHERE status = 'failed'))[1]
               AS first_reason,
           count(*) FILTER (WHERE status = 'done' AND reason IS NOT NULL) AS truncated,
           (array_agg('segment ' || segment || ': ' || reason ORDER BY segment)
               FILTER (WHERE status = 'done' AND reason IS NOT NULL))[1] AS truncated_reason
    FROM video_segments WHERE video_id = ANY(%s::text[]) GROUP BY video_id
) c
WHERE v.video_id = c.video_id AND v.status <> 'recording'
"""


def settle(conn: psycopg.Connection[Any], video_ids: Sequence[str]) -> None:
    """Set videos' status from their segments: queued while any is queued, else done if any
    is done (with the first problem as the reason), else failed. A recording camera waits."""
    if video_ids:
        conn.execute(_SETTLE, (list(video_ids),))
