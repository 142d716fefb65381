"""The DB writer's batched, idempotent writes of tagging results.

``write_results`` sends a whole batch in one pipelined round trip inside one transaction,
and is idempotent, because Storm replays a batch whose ack was lost. What it stores for a
photo is ``autotag.contract.PhotoResult``: the ``photos`` columns and how each merges with
the stored row come from the contract's fields, so a field added there is stored here
without an edit (its column comes from a migration).
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format, TransactionStatus

from autotag.config import ServiceSettings
from autotag.contract import STATUSES, TAGGED, Column, PhotoResult, decode_tag
from autotag.storage import people
from autotag.storage.database import connect, first_line

log = logging.getLogger(__name__)

# Vector writes take this transaction-scoped advisory lock just before commit.
_VECTOR_SEQ_LOCK = 0x617574_766563  # "autvec"
# Deletes (storage.deletion) take this lock exclusively, each batch takes it shared first:
# a batch commits wholly before a delete or starts after it, when it sees the trash row or
# tombstone and drops the deleted photo's result.
DELETE_LOCK = 0x617574_64656C  # "autdel"
# A result's photo is stored unless it is in the trash or deleted for good (a tombstone).
_NOT_DELETED = "NOT EXISTS (SELECT 1 FROM trash d WHERE d.item_id = {id})"
# Each committed batch is announced on this channel (the web page's live feed LISTENs):
# the payload is the batch's photo ids, comma-separated, at most this many per notification
# (a NOTIFY payload must stay under 8,000 bytes).
NOTIFY_CHANNEL = "autotag_results"
NOTIFY_IDS_PER_MESSAGE = 100


class Float4Vector:
    """A feature vector sent to Postgres as a binary ``real[]``: no text to format in
    Python or to parse in Postgres (1,280 floats per photo)."""

    __slots__ = ("values",)

    def __init__(self, values: np.ndarray) -> None:
        self.values = values


class _Float4VectorDumper(Dumper):
    format = Format.BINARY
    oid = 1021  # real[]

    def dump(self, obj: Float4Vector) -> bytes:
        # Postgres' binary array: ndim, has-nulls, element type (float4 = 700), length,
        # lower bound; then each element as (byte length, big-endian value).
        elems = np.empty(obj.values.size, dtype=[("len", ">i4"), ("val", ">f4")])
        elems["len"] = 4
        elems["val"] = obj.values
        return struct.pack("!iiIii", 1, 0, 700, obj.values.size, 1) + elems.tobytes()


def _storable_vector(v: np.ndarray) -> Float4Vector | None:
    """None for a vector we refuse to store (empty or non-finite)."""
    arr = np.asarray(v, dtype=np.float32).ravel()
    if arr.size == 0 or not np.isfinite(arr).all():
        return None
    return Float4Vector(arr)


# How a stored field's new value meets the stored one (``Column.merge``).
_MERGES = {
    "keep": "{c} = COALESCE(EXCLUDED.{c}, p.{c})",
    "replace": "{c} = EXCLUDED.{c}",
    "greatest": "{c} = GREATEST(p.{c}, EXCLUDED.{c})",
    # A failed result never downgrades a photo that is already tagged.
    "status": "{c} = CASE WHEN p.{c} = 'tagged' AND EXCLUDED.{c} = 'failed' "
    "THEN 'tagged' ELSE EXCLUDED.{c} END",
}
_SQL_TYPES = {
    "text",
    "int",
    "bigint",
    "real",
    "double precision",
    "boolean",
    "timestamptz",
    "timestamp",
}


@lru_cache(maxsize=16)
def _upsert_photos(columns: tuple[Column, ...]) -> sql.Composed:
    """The ``photos`` upsert for these contract columns (photo_id first): one unnest() array
    per column, ``tagged_at`` set when a result is tagged."""
    for c in columns:
        if c.sql_type not in _SQL_TYPES or c.merge not in _MERGES:
            raise ValueError(f"contract column {c.name}: {c.sql_type!r} / {c.merge!r}")
    names = [sql.Identifier(c.name) for c in columns]
    arrays = sql.SQL(", ").join(sql.SQL("%s::" + c.sql_type + "[]") for c in columns)
    sets: list[sql.Composable] = [
        sql.SQL(_MERGES[c.merge]).format(c=sql.Identifier(c.name))
        for c in columns
        if c.name != "photo_id"
    ]
    sets.append(sql.SQL("tagged_at = COALESCE(EXCLUDED.tagged_at, p.tagged_at)"))
    return sql.SQL(
        "INSERT INTO photos AS p ({cols}, tagged_at)\n"
        "SELECT {r_cols}, CASE WHEN r.status = 'tagged' THEN now() END\n"
        "FROM unnest({arrays}) AS r({cols})\n"
        "WHERE " + _NOT_DELETED.format(id="r.photo_id") + "\n"
        "ORDER BY r.photo_id\n"
        "ON CONFLICT (photo_id) DO UPDATE SET {sets}\n"
        "RETURNING p.photo_id"
    ).format(
        cols=sql.SQL(", ").join(names),
        r_cols=sql.SQL(", ").join(sql.SQL("r.") + n for n in names),
        arrays=arrays,
        sets=sql.SQL(", ").join(sets),
    )


def _photo_columns(batch: Sequence[PhotoResult]) -> list[tuple[str, Column]]:
    """The stored fields of every result class in the batch (a subclass adds its own)."""
    seen: dict[str, tuple[str, Column]] = {}
    for cls in dict.fromkeys(type(r) for r in batch):
        for name, col in cls.columns():
            seen.setdefault(col.name, (name, col))
    return list(seen.values())


_DELETE_TAGS = """
DELETE FROM tags t
USING unnest(%s::text[], %s::text[]) AS b(photo_id, model_version)
WHERE t.photo_id = b.photo_id AND t.model_version = b.model_version
"""

_INSERT_TAGS = (
    """
INSERT INTO tags (photo_id, tag, score, model_version, kind, via)
SELECT r.photo_id, r.tag, r.score, r.model_version, r.kind, r.via
FROM unnest(%s::text[], %s::text[], %s::real[], %s::text[], %s::text[], %s::text[])
     AS r(photo_id, tag, score, model_version, kind, via)
WHERE """
    + _NOT_DELETED.format(id="r.photo_id")
    + """
  -- a learned tag only while it is learned: a bolt still on the bundle a `learned forget`
  -- replaced (it switches within seconds) does not bring the tag back
  AND (r.kind <> 'learned' OR EXISTS (
        SELECT 1 FROM learned_tags l WHERE l.tag = r.tag AND l.status = 'learned'))
ORDER BY r.photo_id, r.tag
ON CONFLICT (photo_id, model_version, tag) DO UPDATE SET
    score = EXCLUDED.score, kind = EXCLUDED.kind, via = EXCLUDED.via
"""
)

# One row per photo (executemany in the batch's pipeline): each vector travels in binary.
_UPSERT_VECTOR = (
    """
INSERT INTO photo_vectors AS v (photo_id, feature_set, model_version, feature)
SELECT %(id)s, %(fs)s, %(mv)s, %(vec)b
WHERE """
    + _NOT_DELETED.format(id="%(id)s")
    + """
ON CONFLICT (photo_id, feature_set) DO UPDATE SET
    model_version = EXCLUDED.model_version, feature = EXCLUDED.feature
WHERE v.feature IS DISTINCT FROM EXCLUDED.feature
   OR v.model_version IS DISTINCT FROM EXCLUDED.model_version
"""
)


# One statement per batch, delivered by Postgres only if the transaction commits.
# Photos deleted meanwhile are left out (the upsert did not write them).
_NOTIFY = (
    """
SELECT pg_notify(%s, string_agg(photo_id, ',' ORDER BY photo_id))
FROM (SELECT photo_id, (row_number() OVER (ORDER BY photo_id) - 1) / %s AS part
      FROM unnest(%s::text[]) AS u(photo_id)
      WHERE """
    + _NOT_DELETED.format(id="u.photo_id")
    + """) AS s
GROUP BY part
"""
)

# Results are dropped for photos deleted while queued or in flight (``storage.deletion``).
_LOCK_SHARED = "SELECT pg_advisory_xact_lock_shared(%s)"


def listen_for_results(conn: psycopg.Connection[Any]) -> None:
    """Subscribe this (autocommit) connection to the committed batches' notifications."""
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))


def _dedupe(results: Iterable[PhotoResult]) -> list[PhotoResult]:
    """Last result per photo wins (a replay can put the same photo twice in one batch)."""
    by_id: dict[str, PhotoResult] = {}
    for r in results:
        by_id[r.photo_id] = r
    return [by_id[k] for k in sorted(by_id)]


def _clean(text: str | None) -> str | None:
    """Postgres text cannot hold NUL; one stray byte must not poison a whole batch."""
    return None if text is None else str(text).replace("\x00", "")


@dataclass
class _Batch:
    """Column arrays for the unnest() statements of one write_results call."""

    upsert: sql.Composed
    photos: tuple[list[Any], ...]
    tag_keys: tuple[list[Any], ...]
    tags: tuple[list[Any], ...]
    vectors: list[tuple[str, str | None, str | None, Float4Vector]]  # sorted by photo id
    # Faces (storage.people): the tagged photos, their face keys and UPSERT_FACE rows.
    face_photos: list[str] = field(default_factory=list)
    faces: list[tuple[Any, ...]] = field(default_factory=list)


def _stored_value(value: Any, col: Column, tagged: bool) -> Any:
    if col.tagged_only and not tagged:
        return None
    if value is None:
        return None
    if col.sql_type in ("int", "bigint"):
        return int(value)
    if col.sql_type == "text":
        return _clean(value)
    return value


def _columns(batch: Sequence[PhotoResult]) -> _Batch:
    stored = _photo_columns(batch)
    photos: list[list[Any]] = [[] for _ in stored]
    d_ids, d_mv = [], []
    t_ids, t_tags, t_scores, t_mv, t_kinds, t_via = [], [], [], [], [], []
    vectors: list[tuple[str, str | None, str | None, Float4Vector]] = []
    face_photos: list[str] = []
    faces: list[tuple[Any, ...]] = []
    for r in batch:
        if r.status not in STATUSES:
            raise ValueError(f"result status must be one of {STATUSES}, not {r.status!r}")
        tagged = r.status == TAGGED
        for values, (name, col) in zip(photos, stored, strict=True):
            values.append(_stored_value(getattr(r, name, None), col, tagged))
        if not tagged:
            continue
        if not r.model_version:
            raise ValueError(f"tagged result for {r.photo_id} has no model_version")
        mv = _clean(r.model_version)
        d_ids.append(r.photo_id)
        d_mv.append(mv)
        best: dict[str, tuple[float, str, str | None]] = {}
        for t in map(decode_tag, r.tags):  # a bad kind fails this result, not the batch
            name, value = _clean(t.tag) or "", float(t.score)
            if name and math.isfinite(value) and (name not in best or value > best[name][0]):
                best[name] = (value, t.kind, _clean(t.via))
        for name, (value, kind, via) in best.items():
            t_ids.append(r.photo_id)
            t_tags.append(name)
            t_scores.append(value)
            t_mv.append(mv)
            t_kinds.append(kind)
            t_via.append(via)
        if r.vector is not None:
            vec = _storable_vector(r.vector)
            if vec is None:
                log.warning("not storing an empty or non-finite vector for %s", r.photo_id)
            elif not r.feature_set:
                log.warning("not storing a vector without feature_set for %s", r.photo_id)
            else:
                vectors.append((r.photo_id, _clean(r.feature_set), mv, vec))
        face_photos.append(r.photo_id)
        faces.extend(people.face_rows(r.photo_id, r.faces, _storable_vector))
    return _Batch(
        _upsert_photos(tuple(col for _name, col in stored)),
        tuple(photos),
        (d_ids, d_mv),
        (t_ids, t_tags, t_scores, t_mv, t_kinds, t_via),
        vectors,
        face_photos,
        faces,
    )


def _dropped(b: _Batch, written: psycopg.Cursor[Any]) -> list[str]:
    """The batch's photo ids the upsert did not write: deleted photos."""
    stored = {r[0] for r in written.fetchall()}
    return [pid for pid in b.photos[0] if pid not in stored]


def _send(conn: psycopg.Connection[Any], b: _Batch) -> list[str]:
    """All statements of a batch in one pipeline: BEGIN ... COMMIT, a single sync."""
    statements: list[tuple[Any, Any]] = []
    if b.tag_keys[0]:
        statements.append((_DELETE_TAGS, b.tag_keys))
    if b.tags[0]:
        statements.append((_INSERT_TAGS, b.tags))
    if b.vectors:
        statements.append(("SELECT pg_advisory_xact_lock(%s)", (_VECTOR_SEQ_LOCK,)))
    notify = (_NOTIFY, (NOTIFY_CHANNEL, NOTIFY_IDS_PER_MESSAGE, b.photos[0]))
    vectors = [{"id": i, "fs": fs, "mv": mv, "vec": v} for i, fs, mv, v in b.vectors]
    written = conn.cursor()

    def send_all(cur: psycopg.Cursor[Any]) -> None:
        cur.execute(_LOCK_SHARED, (DELETE_LOCK,))
        written.execute(b.upsert, b.photos)
        for query, params in statements:
            cur.execute(query, params)
        if vectors:
            cur.executemany(_UPSERT_VECTOR, vectors)
        if b.face_photos:
            keys = [[f[i] for f in b.faces] for i in range(5)]
            cur.execute(people.DELETE_STALE_FACES, (b.face_photos, *keys))
            if b.faces:
                cur.executemany(people.UPSERT_FACE, b.faces)
            for query, params in people.refresh_statements(b.face_photos):
                cur.execute(query, params)
        cur.execute(*notify)

    cur = conn.cursor()
    cur.adapters.register_dumper(Float4Vector, _Float4VectorDumper)
    if not conn.autocommit:
        # A caller-managed connection: psycopg's own transaction (a few more round trips).
        with conn.pipeline(), conn.transaction():
            send_all(cur)
        return _dropped(b, written)
    try:
        with conn.pipeline():
            cur.execute("BEGIN")
            send_all(cur)
            cur.execute("COMMIT")
        return _dropped(b, written)
    except BaseException:
        # An error skips the rest of the pipeline (COMMIT included): undo what ran.
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                pass
        raise


def write_results(conn: psycopg.Connection[Any], results: Sequence[PhotoResult]) -> int:
    """``store_results``: the number of results stored."""
    return store_results(conn, results)[0]


def store_results(
    conn: psycopg.Connection[Any], results: Sequence[PhotoResult]
) -> tuple[int, list[str]]:
    """Store a batch of results in one transaction and one round trip; returns photos written.

    Idempotent: replaying a batch leaves the same rows (tags of a (photo, model_version)
    are replaced, vectors upserted without bumping seq when unchanged). A 'failed' result
    never downgrades a photo that is already 'tagged' (its reason is still recorded).
    Vector writes take a transaction-scoped advisory lock just before commit, so vector
    ``seq`` values become visible in increasing order and ``seq > last_seen`` never skips.

    Only connection-class errors (``is_transient``) propagate: the caller keeps the batch and
    retries it later. Anything else (a 3 KB tag name past the btree limit, a score out of
    real's range, a bug in a row) makes the batch be stored one result at a time; a result
    that still fails is stored as a 'failed' photo with the reason (or, if even that is
    refused, e.g. a malformed photo id, logged and dropped: the photo stays 'queued', which
    `autotag retry --stuck` re-queues), so one bad result cannot stall the writer.

    A result for a photo that was deleted (in the trash, or a tombstone) while it was queued
    or being tagged is dropped, never stored: returns (results stored, photo ids dropped).
    """
    batch = _dedupe(results)
    if not batch:
        return 0, []
    try:
        dropped = _send(conn, _columns(batch))
        return len(batch) - len(dropped), dropped
    except Exception as exc:
        if is_transient(exc):
            raise
        log.warning("batch of %d refused (%s); storing one by one", len(batch), first_line(exc))
    stored = 0
    dropped = []
    for r in batch:
        try:
            gone = _send(conn, _columns([r]))
            stored += 1 - len(gone)
            dropped += gone
            continue
        except Exception as exc:
            if is_transient(exc):
                raise
            error: BaseException = exc
        reason = f"could not store result: {first_line(error)}"
        try:
            _send(conn, _columns([PhotoResult.failed(r.photo_id, reason, int(r.attempts or 0))]))
            log.error("photo %s: %s", r.photo_id, reason)
            stored += 1
            continue
        except Exception as exc:
            if is_transient(exc):
                raise
            error = exc
        log.error("dropping the result for %r: %s", r.photo_id, first_line(error))
    return stored, dropped


# SQLSTATE classes worth retrying as they are: connection exception, operator intervention
# (shutdown, cancel), transaction rollback (serialization failure, deadlock).
TRANSIENT_SQLSTATE_CLASSES = ("08", "57", "40")


def is_transient(exc: BaseException) -> bool:
    """A failure of the connection, not of the data: the same batch may succeed later."""
    if isinstance(exc, psycopg.Error):
        if exc.sqlstate is None:  # no answer from the server: the connection broke
            return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        return exc.sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES
    return isinstance(exc, ConnectionError)


class ResultWriter:
    """``write_results`` on a connection it holds, reconnecting after an outage."""

    def __init__(self, services: ServiceSettings) -> None:
        self.services = services
        self.conn: psycopg.Connection[Any] | None = None
        self.dropped = 0  # results for photos deleted while queued or in flight

    def write(self, results: Sequence[PhotoResult]) -> int:
        if self.conn is None or self.conn.closed:
            self.conn = connect(self.services, migrate_schema=False)
        stored, dropped = store_results(self.conn, results)
        if dropped:
            self.dropped += len(dropped)
            log.info(
                "dropped %d results of deleted photos (%d in all): %s",
                len(dropped),
                self.dropped,
                ", ".join(dropped[:5]),
            )
        return stored

    def reset(self) -> None:
        """Drop the connection (after an error); the next write reconnects."""
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001, S110 - already broken
                pass
        self.conn = None
