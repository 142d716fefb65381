"""People: the faces table, the people table, and the person tags that make names searchable.

Every face the tagger finds is a ``faces`` row (migration 0011): box, detector score,
quality, descriptor, and whose face it is (``person_id``; ``assigned_by`` 'user', 'match' or
'cluster'). A person is a ``people`` row, named or not. A name is found by the one tag query
(``storage.tag_search``) because each photo with a named person's face carries a tag of kind
``person`` (the name) under the photo's current model version: ``refresh_person_tags`` keeps
those rows right, inside the same transaction as every change to who is who, and the DB
writer calls it for each batch of new faces.

A video's faces are ``faces`` rows too (migration 0014): one per face track of a segment
(``video_id``, ``segment``, ``track``, ``at_secs``), stored by the video writer
(``store_segment_faces``); a named person's name is then a ``video_segment_tags`` row of kind
'person', rebuilt like a photo's person tags, so the same name, merge, remove-face and forget
reach the segments, and `autotag search NAME` lists them with their times.

Every change to who is who bumps ``people_version``; the autotag bolts poll it and reload the
people's reference descriptors (``references``). All SQL of people lives here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row

from autotag.contract import FaceFound

# Reference descriptors kept per person for matching: the user-named first, then the
# sharpest (Immich compares with every face; a cap keeps a 1,000-person index small).
REFERENCES_PER_PERSON = 30
DESCRIPTOR_DIM = 128  # dlib's face descriptor (vision.face_identity)

# -- the DB writer's statements (one batch, one transaction) ---------------------------------

# The update half of both face upserts (a photo's and a segment's): a face already stored
# keeps the person someone decided on; a forgotten face keeps no descriptor, and a person
# the face was refused for (``not_people``) is not matched to it again.
_KEEP_DECISIONS = """\
    score = EXCLUDED.score,
    quality = EXCLUDED.quality,
    embedding = CASE WHEN f.forgotten THEN NULL ELSE EXCLUDED.embedding END,
    model_version = EXCLUDED.model_version,
    person_id = CASE
        WHEN f.person_id IS NOT NULL THEN f.person_id
        WHEN f.forgotten OR EXCLUDED.person_id = ANY(f.not_people) THEN NULL
        ELSE EXCLUDED.person_id END,
    assigned_by = CASE
        WHEN f.person_id IS NOT NULL THEN f.assigned_by
        WHEN f.forgotten OR EXCLUDED.person_id = ANY(f.not_people) THEN NULL
        ELSE EXCLUDED.assigned_by END,
    person_score = CASE
        WHEN f.person_id IS NOT NULL THEN f.person_score
        WHEN f.forgotten OR EXCLUDED.person_id = ANY(f.not_people) THEN NULL
        ELSE EXCLUDED.person_score END
"""

# Faces of the batch's photos that the new result no longer has (a re-tag) go.
DELETE_STALE_FACES = """
DELETE FROM faces f
USING unnest(%s::text[]) AS b(photo_id)
WHERE f.photo_id = b.photo_id
  AND (f.photo_id, f.x, f.y, f.w, f.h) NOT IN (
      SELECT * FROM unnest(%s::text[], %s::int[], %s::int[], %s::int[], %s::int[]))
"""

# One row per face (executemany, the descriptor in binary). A face already stored keeps its
# person when it has one (a person's decision is never overwritten by the stream); a match
# to someone the face was refused for, or a forgotten face, stays unassigned; a merged or
# forgotten person is resolved here, so a bolt with stale references does no harm.
UPSERT_FACE = f"""
INSERT INTO faces AS f (photo_id, x, y, w, h, score, quality, embedding, model_version,
                        person_id, assigned_by, person_score)
SELECT v.photo_id, v.x, v.y, v.w, v.h, v.score, v.quality, v.embedding, v.model_version,
       COALESCE(pe.merged_into, pe.person_id),
       CASE WHEN pe.person_id IS NOT NULL THEN 'match' END,
       CASE WHEN pe.person_id IS NOT NULL THEN v.person_score END
FROM (SELECT %s::text AS photo_id, %s::int AS x, %s::int AS y, %s::int AS w, %s::int AS h,
             %s::real AS score, %s::real AS quality, %b::real[] AS embedding,
             %s::text AS model_version, %s::bigint AS person_id, %s::real AS person_score) v
JOIN photos p ON p.photo_id = v.photo_id
LEFT JOIN people pe ON pe.person_id = v.person_id
ON CONFLICT (photo_id, x, y, w, h) DO UPDATE SET
{_KEEP_DECISIONS}"""

# The person tags of these photos, rebuilt from their faces: a named person's name, scored
# by their best face (1.0 for a face a person named), under the photo's current model
# version (so the one tag query finds it at once).
_DELETE_PERSON_TAGS = """
DELETE FROM tags t USING unnest(%s::text[]) AS b(photo_id)
WHERE t.photo_id = b.photo_id AND t.kind = 'person'
"""
_INSERT_PERSON_TAGS = """
INSERT INTO tags (photo_id, tag, score, model_version, kind)
SELECT f.photo_id, pe.name,
       max(CASE WHEN f.assigned_by = 'user' THEN 1.0 ELSE COALESCE(f.person_score, 0.5) END),
       p.model_version, 'person'
FROM faces f
JOIN people pe ON pe.person_id = f.person_id
JOIN photos p ON p.photo_id = f.photo_id
WHERE f.photo_id = ANY(%s::text[]) AND pe.name IS NOT NULL AND p.model_version IS NOT NULL
GROUP BY f.photo_id, pe.name, p.model_version
ON CONFLICT (photo_id, model_version, tag) DO NOTHING
"""


# A segment's person tags, rebuilt from its faces as a photo's are: a named person's name,
# scored by their best face, over the frames their face tracks were seen in.
_DELETE_SEGMENT_PERSON_TAGS = """
DELETE FROM video_segment_tags t USING unnest(%s::text[], %s::int[]) AS b(video_id, segment)
WHERE t.video_id = b.video_id AND t.segment = b.segment AND t.kind = 'person'
"""
_INSERT_SEGMENT_PERSON_TAGS = """
INSERT INTO video_segment_tags (video_id, segment, tag, score, frames, model_version, kind)
SELECT f.video_id, f.segment, pe.name,
       max(CASE WHEN f.assigned_by = 'user' THEN 1.0 ELSE COALESCE(f.person_score, 0.5) END),
       sum(COALESCE(f.frames, 1)), s.model_version, 'person'
FROM unnest(%s::text[], %s::int[]) AS b(video_id, segment)
JOIN faces f ON f.video_id = b.video_id AND f.segment = b.segment
JOIN people pe ON pe.person_id = f.person_id
JOIN video_segments s ON s.video_id = f.video_id AND s.segment = f.segment
WHERE pe.name IS NOT NULL AND s.model_version IS NOT NULL
GROUP BY f.video_id, f.segment, pe.name, s.model_version
ON CONFLICT (video_id, segment, tag) DO NOTHING
"""

# One face per face track of a segment (the video writer, after the segment's row): a
# replayed segment finds its tracks again, and a person's decision on a face is kept, as
# UPSERT_FACE does for photos. Nothing is stored for a segment that is not registered.
_DELETE_STALE_SEGMENT_FACES = """
DELETE FROM faces WHERE video_id = %s AND segment = %s AND NOT (track = ANY(%s::int[]))
"""
_UPSERT_SEGMENT_FACE = f"""
INSERT INTO faces AS f (video_id, segment, track, at_secs, frames, x, y, w, h, score, quality,
                        embedding, model_version, person_id, assigned_by, person_score)
SELECT v.video_id, v.segment, v.track, v.at_secs, v.frames, v.x, v.y, v.w, v.h, v.score,
       v.quality, v.embedding, v.model_version,
       COALESCE(pe.merged_into, pe.person_id),
       CASE WHEN pe.person_id IS NOT NULL THEN 'match' END,
       CASE WHEN pe.person_id IS NOT NULL THEN v.person_score END
FROM (SELECT %s::text AS video_id, %s::int AS segment, %s::int AS track, %s::real AS at_secs,
             %s::int AS frames, %s::int AS x, %s::int AS y, %s::int AS w, %s::int AS h,
             %s::real AS score, %s::real AS quality, %s::real[] AS embedding,
             %s::text AS model_version, %s::bigint AS person_id, %s::real AS person_score) v
JOIN video_segments s ON s.video_id = v.video_id AND s.segment = v.segment
LEFT JOIN people pe ON pe.person_id = v.person_id
ON CONFLICT (video_id, segment, track) DO UPDATE SET
    at_secs = EXCLUDED.at_secs,
    frames = EXCLUDED.frames,
    x = EXCLUDED.x, y = EXCLUDED.y, w = EXCLUDED.w, h = EXCLUDED.h,
{_KEEP_DECISIONS}"""

Segment = tuple[str, int]  # (video_id, segment)


@dataclass(frozen=True)
class TrackFace:
    """A segment's face track as the video writer stores it (pipeline.video_contract's
    SegmentFace, flattened to plain values)."""

    track: int
    at_secs: float
    frames: int
    face: FaceFound


def _finite(values: Any) -> list[float] | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float32).ravel()
    if arr.size == 0 or not np.isfinite(arr).all():
        return None
    return [float(v) for v in arr]


def store_segment_faces(
    conn: psycopg.Connection[Any], video_id: str, segment: int, faces: Sequence[TrackFace]
) -> int:
    """Replace a segment's faces (one per face track with a descriptor) and rebuild its
    person tags; returns the faces stored. Call inside the writer's transaction."""
    rows = []
    for t in faces:
        x, y, w, h = (int(v) for v in t.face.box)
        emb = _finite(t.face.embedding)
        if w <= 0 or h <= 0 or emb is None:
            continue
        f = t.face
        rows.append(
            (
                video_id,
                int(segment),
                int(t.track),
                float(t.at_secs),
                int(t.frames),
                x,
                y,
                w,
                h,
                float(f.score),
                None if f.quality is None else float(f.quality),
                emb,
                f.model_version,
                f.person_id,
                None if f.person_score is None else float(f.person_score),
            )
        )
    conn.execute(_DELETE_STALE_SEGMENT_FACES, (video_id, int(segment), [r[2] for r in rows]))
    stored = 0
    with conn.cursor() as cur:
        for row in rows:
            stored += cur.execute(_UPSERT_SEGMENT_FACE, row).rowcount
    refresh_segment_person_tags(conn, [(video_id, int(segment))])
    return stored


def refresh_segment_person_tags(conn: psycopg.Connection[Any], segments: Sequence[Segment]) -> None:
    if not segments:
        return
    keys = ([v for v, _ in segments], [int(n) for _, n in segments])
    conn.execute(_DELETE_SEGMENT_PERSON_TAGS, keys)
    conn.execute(_INSERT_SEGMENT_PERSON_TAGS, keys)


def face_rows(photo_id: str, faces: Sequence[FaceFound], embedding: Any) -> list[tuple[Any, ...]]:
    """UPSERT_FACE parameter rows for one photo's faces; ``embedding(values)`` makes the
    binary descriptor parameter (None for a face without one)."""
    rows = []
    for f in faces:
        x, y, w, h = (int(v) for v in f.box)
        if w <= 0 or h <= 0:
            continue
        rows.append(
            (
                photo_id,
                x,
                y,
                w,
                h,
                float(f.score),
                None if f.quality is None else float(f.quality),
                None if f.embedding is None else embedding(f.embedding),
                f.model_version,
                f.person_id,
                f.person_score,
            )
        )
    return rows


def refresh_statements(photo_ids: Sequence[str]) -> list[tuple[str, tuple[Any, ...]]]:
    """(statement, parameters) that rebuild the person tags of these photos."""
    ids = list(photo_ids)
    return [(_DELETE_PERSON_TAGS, (ids,)), (_INSERT_PERSON_TAGS, (ids,))]


def refresh_person_tags(
    conn: psycopg.Connection[Any], photo_ids: Sequence[str | None], segments: Sequence[Segment] = ()
) -> None:
    """Rebuild the person tags of these photos and video segments."""
    for query, params in refresh_statements([p for p in photo_ids if p is not None]):
        conn.execute(query, params)
    refresh_segment_person_tags(conn, segments)


def _bump(conn: psycopg.Connection[Any]) -> None:
    conn.execute("UPDATE people_version SET version = version + 1")


# -- the bolts' references --------------------------------------------------------------------


def _matrix(rows: Sequence[Any]) -> np.ndarray:
    """Descriptors as (n, d) float32; (0, 128) for none (numpy cannot reshape 0 rows to -1)."""
    if not rows:
        return np.zeros((0, DESCRIPTOR_DIM), np.float32)
    return np.array(rows, dtype=np.float32).reshape(len(rows), -1)


def version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT version FROM people_version").fetchone()
    return int(row[0]) if row else 0


@dataclass
class References:
    """The known people's reference descriptors: ``owners[i]`` is whose ``embeddings[i]``."""

    version: int
    owners: np.ndarray  # int64 (n,)
    embeddings: np.ndarray  # float32 (n, 128)
    names: dict[int, str | None]


def references(
    conn: psycopg.Connection[Any], per_person: int = REFERENCES_PER_PERSON
) -> References:
    """Every current person's reference descriptors (their faces' descriptors, at most
    ``per_person`` each: named by a person first, then the sharpest)."""
    with conn.transaction():
        v = version(conn)
        rows = conn.execute(
            """
            SELECT person_id, embedding FROM (
                SELECT f.person_id, f.embedding, row_number() OVER (
                    PARTITION BY f.person_id
                    ORDER BY (f.assigned_by = 'user') DESC, f.quality DESC NULLS LAST, f.face_id
                ) AS n
                FROM faces f JOIN people pe ON pe.person_id = f.person_id
                WHERE f.embedding IS NOT NULL AND pe.merged_into IS NULL
            ) r WHERE n <= %s
            ORDER BY person_id
            """,
            (per_person,),
        ).fetchall()
        names = dict(
            conn.execute("SELECT person_id, name FROM people WHERE merged_into IS NULL").fetchall()
        )
    owners = np.array([r[0] for r in rows], dtype=np.int64)
    emb = _matrix([r[1] for r in rows])
    return References(v, owners, emb, names)


# -- people, as the commands see them --------------------------------------------------------


def list_people(conn: psycopg.Connection[Any], *, named_only: bool = False) -> list[dict[str, Any]]:
    """Every current person: id, name, faces, photos, video segments, a sample face (their
    best, from a photo when they have one: a crop is cut from a photo's blob)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """
            SELECT pe.person_id, pe.name, pe.created_at,
                   count(f.face_id) AS faces, count(DISTINCT f.photo_id) AS photos,
                   count(DISTINCT f.video_id || ':' || f.segment) AS video_segments,
                   (array_agg(f.face_id ORDER BY f.photo_id IS NULL, (f.assigned_by = 'user') DESC,
                              f.quality DESC NULLS LAST, f.face_id))[1] AS sample_face
            FROM people pe LEFT JOIN faces f ON f.person_id = pe.person_id
            WHERE pe.merged_into IS NULL AND (NOT %s OR pe.name IS NOT NULL)
            GROUP BY pe.person_id
            ORDER BY pe.name IS NULL, count(f.face_id) DESC, pe.person_id
            """,
            (named_only,),
        ).fetchall()
    return [_person_json(r) for r in rows]


def _person_json(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "person_id": int(r["person_id"]),
        "name": r["name"],
        "faces": int(r["faces"]),
        "photos": int(r["photos"]),
        "video_segments": int(r["video_segments"]),
        "sample_face": r["sample_face"],
        "created_at": r["created_at"].isoformat() if r["created_at"] else None,
    }


def _face_json(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "face_id": int(r["face_id"]),
        "photo_id": r["photo_id"],
        "person_id": r["person_id"],
        "person": r["name"],
        "box": [int(r["x"]), int(r["y"]), int(r["w"]), int(r["h"])],
        "score": round(float(r["score"]), 4),
        "quality": None if r["quality"] is None else round(float(r["quality"]), 4),
        "assigned_by": r["assigned_by"],
        "recognisable": bool(r["recognisable"]),
        # a video's face: the segment and the time in the video it was seen at (else None)
        "video_id": r["video_id"],
        "segment": r["segment"],
        "at_secs": None if r["at_secs"] is None else round(float(r["at_secs"]), 3),
    }


_FACE_COLUMNS = """
    f.face_id, f.photo_id, f.person_id, pe.name, f.x, f.y, f.w, f.h, f.score, f.quality,
    f.assigned_by, f.embedding IS NOT NULL AS recognisable, f.video_id, f.segment, f.at_secs
    FROM faces f LEFT JOIN people pe ON pe.person_id = f.person_id
"""


def person(conn: psycopg.Connection[Any], person_id: int) -> dict[str, Any] | None:
    """One person (a merged id answers for whom it was merged into) with their faces, photos
    and video segments."""
    pid = resolve(conn, person_id)
    if pid is None:
        return None
    found = [p for p in list_people(conn) if p["person_id"] == pid]
    if not found:
        return None
    out = found[0]
    with conn.cursor(row_factory=dict_row) as cur:
        faces = cur.execute(
            f"SELECT {_FACE_COLUMNS} WHERE f.person_id = %s "
            "ORDER BY f.photo_id, f.video_id, f.segment, f.face_id",
            (pid,),
        ).fetchall()
    out["face_list"] = [_face_json(r) for r in faces]
    out["photo_ids"] = sorted({r["photo_id"] for r in faces if r["photo_id"] is not None})
    out["segments"] = [
        {"video_id": v, "segment": n}
        for v, n in sorted({(r["video_id"], r["segment"]) for r in faces if r["video_id"]})
    ]
    return out


def photo_faces(conn: psycopg.Connection[Any], photo_id: str) -> list[dict[str, Any]]:
    """A photo's faces, biggest first: ``{face_id, person_id, person, box, score, ...}``."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_FACE_COLUMNS} WHERE f.photo_id = %s ORDER BY f.w * f.h DESC, f.face_id",
            (photo_id,),
        ).fetchall()
    return [_face_json(r) for r in rows]


def person_boxes(conn: psycopg.Connection[Any], photo_id: str) -> list[dict[str, Any]] | None:
    """The person detector's boxes of a photo (migration 0013), best first:
    ``[{box: [x, y, w, h], score}]``; None when no person detector looked at it."""
    row = conn.execute(
        "SELECT person_boxes FROM photos WHERE photo_id = %s", (photo_id,)
    ).fetchone()
    if row is None or row[0] is None:
        return None
    try:
        raw = json.loads(row[0])
    except ValueError:
        return None
    return [
        {"box": [int(v) for v in b[:4]], "score": float(b[4])}
        for b in raw
        if isinstance(b, list) and len(b) == 5
    ]


def face(conn: psycopg.Connection[Any], face_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT {_FACE_COLUMNS} WHERE f.face_id = %s", (face_id,)).fetchone()
    return None if row is None else _face_json(row)


def video_face_frame(conn: psycopg.Connection[Any], face_id: int) -> tuple[str, int] | None:
    """A video face's (segment blob id, frame index in that blob), where its picture is cut
    from when shown (no frame is kept): an upload's segments share one blob, numbered from the
    video's start; a camera's segments are blobs of their own, from the segment's start."""
    row = conn.execute(
        """
        SELECT s.blob_id, v.fps, v.kind, s.start_secs, f.at_secs
        FROM faces f
        JOIN video_segments s ON s.video_id = f.video_id AND s.segment = f.segment
        JOIN videos v ON v.video_id = f.video_id
        WHERE f.face_id = %s
        """,
        (face_id,),
    ).fetchone()
    if row is None or not row[1] or row[4] is None:
        return None
    blob_id, fps, kind, start, at = row
    offset = float(start) if kind == "camera" else 0.0
    return str(blob_id), max(0, round((float(at) - offset) * float(fps)))


def resolve(conn: psycopg.Connection[Any], person_id: int) -> int | None:
    """The current person for an id (following merges), or None if there is none."""
    seen = set()
    pid: int | None = int(person_id)
    while pid is not None and pid not in seen:
        seen.add(pid)
        row = conn.execute("SELECT merged_into FROM people WHERE person_id = %s", (pid,)).fetchone()
        if row is None:
            return None
        if row[0] is None:
            return pid
        pid = int(row[0])
    return None


@dataclass
class _Items:
    """The photos and video segments some faces are in: whose person tags to rebuild."""

    photos: list[str]
    segments: list[Segment]

    def __add__(self, other: _Items) -> _Items:
        return _Items(
            sorted({*self.photos, *other.photos}), sorted({*self.segments, *other.segments})
        )

    def refresh(self, conn: psycopg.Connection[Any]) -> None:
        refresh_person_tags(conn, self.photos, self.segments)


def _items(rows: Sequence[Any]) -> _Items:
    return _Items(
        sorted({r[0] for r in rows if r[0] is not None}),
        sorted({(r[1], int(r[2])) for r in rows if r[1] is not None}),
    )


def _items_of(conn: psycopg.Connection[Any], person_ids: Sequence[int]) -> _Items:
    rows = conn.execute(
        "SELECT DISTINCT photo_id, video_id, segment FROM faces "
        "WHERE person_id = ANY(%s::bigint[])",
        (list(person_ids),),
    ).fetchall()
    return _items(rows)


def _items_of_faces(conn: psycopg.Connection[Any], face_ids: Sequence[int]) -> _Items:
    rows = conn.execute(
        "SELECT DISTINCT photo_id, video_id, segment FROM faces WHERE face_id = ANY(%s::bigint[])",
        (list(face_ids),),
    ).fetchall()
    return _items(rows)


def clean_name(raw: str) -> str:
    name = " ".join(str(raw).replace("\x00", "").split())
    if not name:
        raise ValueError("a name cannot be empty")
    if len(name) > 200:
        raise ValueError("a name is at most 200 characters")
    return name


def name_person(conn: psycopg.Connection[Any], person_id: int, name: str) -> int | None:
    """Name (or rename) a person; their photos' person tags follow at once. Returns the
    person's current id, None if there is no such person."""
    name = clean_name(name)
    with conn.transaction():
        pid = resolve(conn, person_id)
        if pid is None:
            return None
        conn.execute("UPDATE people SET name = %s WHERE person_id = %s", (name, pid))
        _items_of(conn, [pid]).refresh(conn)
        _bump(conn)
    return pid


def name_face(conn: psycopg.Connection[Any], face_id: int, name: str) -> dict[str, Any] | None:
    """Name the person this face belongs to: the face's person when it has one, else the
    current person already called ``name`` (the face joins them), else a new person started
    from the face. The face is then the user's decision. None if there is no such face."""
    name = clean_name(name)
    with conn.transaction():
        row = conn.execute(
            "SELECT person_id FROM faces WHERE face_id = %s FOR UPDATE", (face_id,)
        ).fetchone()
        if row is None:
            return None
        pid = row[0]
        created = False
        if pid is None:
            same = conn.execute(
                "SELECT person_id FROM people WHERE merged_into IS NULL AND name = %s "
                "ORDER BY person_id LIMIT 1",
                (name,),
            ).fetchone()
            if same is not None:
                pid = int(same[0])
            else:
                row = conn.execute(
                    "INSERT INTO people (name) VALUES (%s) RETURNING person_id", (name,)
                ).fetchone()
                assert row is not None  # INSERT ... RETURNING returns the row
                pid = int(row[0])
                created = True
        conn.execute("UPDATE people SET name = %s WHERE person_id = %s", (name, pid))
        conn.execute(
            "UPDATE faces SET person_id = %s, assigned_by = 'user', person_score = 1.0, "
            "not_people = array_remove(not_people, %s), forgotten = false WHERE face_id = %s",
            (pid, pid, face_id),
        )
        (_items_of_faces(conn, [face_id]) + _items_of(conn, [pid])).refresh(conn)
        _bump(conn)
    return {"person_id": pid, "name": name, "face_id": face_id, "created": created}


def merge(conn: psycopg.Connection[Any], person_id: int, other_id: int) -> int | None:
    """Merge ``other_id`` into ``person_id``: its faces move over, its id redirects; the
    kept person keeps their name (or takes the other's when they had none)."""
    with conn.transaction():
        keep, gone = resolve(conn, person_id), resolve(conn, other_id)
        if keep is None or gone is None:
            return None
        if keep == gone:
            return keep
        items = _items_of(conn, [keep, gone])
        conn.execute(
            "UPDATE people SET name = COALESCE(name, (SELECT name FROM people WHERE "
            "person_id = %s)) WHERE person_id = %s",
            (gone, keep),
        )
        conn.execute("UPDATE people SET merged_into = %s WHERE person_id = %s", (keep, gone))
        conn.execute("UPDATE people SET merged_into = %s WHERE merged_into = %s", (keep, gone))
        conn.execute("UPDATE faces SET person_id = %s WHERE person_id = %s", (keep, gone))
        items.refresh(conn)
        _bump(conn)
    return keep


def remove_face(conn: psycopg.Connection[Any], face_id: int) -> dict[str, Any] | None:
    """This face is not its person: unassigned, and never given to them again."""
    with conn.transaction():
        row = conn.execute(
            "SELECT person_id FROM faces WHERE face_id = %s FOR UPDATE", (face_id,)
        ).fetchone()
        if row is None:
            return None
        pid = row[0]
        if pid is not None:
            conn.execute(
                "UPDATE faces SET not_people = array_append(not_people, person_id), "
                "person_id = NULL, assigned_by = NULL, person_score = NULL WHERE face_id = %s",
                (face_id,),
            )
            _items_of_faces(conn, [face_id]).refresh(conn)
            _bump(conn)
    return {"face_id": face_id, "removed_from": pid}


def forget(conn: psycopg.Connection[Any], person_id: int) -> dict[str, Any] | None:
    """Forget a person: their name, their person tags and their faces' descriptors go (the
    boxes stay, unassigned and never described again); ids merged into them go too."""
    with conn.transaction():
        pid = resolve(conn, person_id)
        if pid is None:
            return None
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT person_id FROM people WHERE person_id = %s OR merged_into = %s",
                (pid, pid),
            ).fetchall()
        ]
        items = _items_of(conn, ids)
        n = conn.execute(
            "UPDATE faces SET embedding = NULL, forgotten = true, person_id = NULL, "
            "assigned_by = NULL, person_score = NULL WHERE person_id = ANY(%s::bigint[])",
            (ids,),
        ).rowcount
        conn.execute(
            "UPDATE faces SET not_people = array_remove(not_people, p) "
            "FROM unnest(%s::bigint[]) AS p WHERE p = ANY(not_people)",
            (ids,),
        )
        conn.execute("DELETE FROM people WHERE person_id = ANY(%s::bigint[])", (ids,))
        items.refresh(conn)
        _bump(conn)
    return {
        "person_id": pid,
        "faces_forgotten": n,
        "photos": len(items.photos),
        "video_segments": len(items.segments),
    }


def embeddings_of(conn: psycopg.Connection[Any], person_id: int) -> np.ndarray:
    """A person's face descriptors (n, 128)."""
    rows = conn.execute(
        "SELECT embedding FROM faces WHERE person_id = %s AND embedding IS NOT NULL",
        (person_id,),
    ).fetchall()
    return _matrix([r[0] for r in rows])


# -- clustering -------------------------------------------------------------------------------

# pg_try_advisory_lock key of a clustering run (``cluster_lock``): "autotag people" in ASCII.
CLUSTER_LOCK_KEY = 0x6175_746F_7065_6F70


@contextlib.contextmanager
def cluster_lock(conn: psycopg.Connection[Any]) -> Iterator[bool]:
    """One clustering at a time across processes: yields whether this session holds the
    lock (a session-level advisory lock, released on exit or when the connection ends)."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (CLUSTER_LOCK_KEY,)).fetchone()
    got = bool(row and row[0])
    if not conn.autocommit:
        conn.commit()
    try:
        yield got
    finally:
        if got and not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s)", (CLUSTER_LOCK_KEY,))
            if not conn.autocommit:
                conn.commit()


def unassigned(conn: psycopg.Connection[Any], limit: int = 200_000) -> tuple[list[int], np.ndarray]:
    """(face ids, descriptors) of the faces nobody is assigned to yet."""
    rows = conn.execute(
        "SELECT face_id, embedding FROM faces WHERE person_id IS NULL AND embedding IS NOT NULL "
        "AND NOT forgotten ORDER BY face_id LIMIT %s",
        (limit,),
    ).fetchall()
    ids = [int(r[0]) for r in rows]
    return ids, _matrix([r[1] for r in rows])


def assign(
    conn: psycopg.Connection[Any],
    to_known: Sequence[tuple[int, int, float]],
    new_groups: Sequence[Sequence[int]],
    how: str = "cluster",
) -> dict[str, int]:
    """Store a clustering: ``to_known`` (face, person, score) joins known people;
    each of ``new_groups`` (face ids) becomes a new unnamed person. Faces assigned meanwhile
    (or refused for that person) are left alone."""
    with conn.transaction():
        joined = 0
        for face_id, pid, score in to_known:
            joined += conn.execute(
                "UPDATE faces SET person_id = %s, assigned_by = %s, person_score = %s "
                "WHERE face_id = %s AND person_id IS NULL AND NOT forgotten "
                "AND NOT (%s = ANY(not_people))",
                (pid, how, score, face_id, pid),
            ).rowcount
        created = 0
        for group in new_groups:
            row = conn.execute("INSERT INTO people DEFAULT VALUES RETURNING person_id").fetchone()
            assert row is not None
            n = conn.execute(
                "UPDATE faces SET person_id = %s, assigned_by = 'cluster', person_score = 0.75 "
                "WHERE face_id = ANY(%s::bigint[]) AND person_id IS NULL",
                (row[0], list(group)),
            ).rowcount
            if n:
                created += 1
            else:
                conn.execute("DELETE FROM people WHERE person_id = %s", (row[0],))
        if joined:
            _items_of_faces(conn, [f for f, _, _ in to_known]).refresh(conn)
        _bump(conn)
    return {"joined_known": joined, "new_people": created}
