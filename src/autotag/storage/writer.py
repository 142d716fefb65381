"""The DB writer's batched, idempotent writes of tagging results.

``write_results`` sends a whole batch in one pipelined round trip inside one transaction,
and is idempotent, because Storm replays a batch whose ack was lost. What it stores for a
photo is described by ``StorableResult``; the tuple contract that carries it between bolts
lives in ``autotag.pipeline.contract``.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format, TransactionStatus

from autotag.config import Settings
from autotag.storage.database import connect, first_line

log = logging.getLogger(__name__)

# Vector writes take this transaction-scoped advisory lock just before commit.
_VECTOR_SEQ_LOCK = 0x617574_766563  # "autvec"
# Each committed batch is announced on this channel (the web page's live feed LISTENs):
# the payload is the batch's photo ids, comma-separated, at most this many per notification
# (a NOTIFY payload must stay under 8,000 bytes).
NOTIFY_CHANNEL = "autotag_results"
NOTIFY_IDS_PER_MESSAGE = 100


class StorableResult(Protocol):
    """What the writer reads of one photo's result (``pipeline.contract.PhotoResult``)."""

    photo_id: str
    status: str  # 'tagged' | 'failed'
    model_version: str | None
    feature_set: str | None
    tags: Sequence[tuple[Any, ...]]  # (tag, score) or (tag, score, kind, via)
    vector: np.ndarray | None
    width: int | None
    height: int | None
    reason: str | None
    attempts: int


@dataclass(frozen=True)
class _FailedRow:
    """A result the database refused, stored instead as a failed photo with the reason."""

    photo_id: str
    reason: str
    status: str = "failed"
    model_version: str | None = None
    feature_set: str | None = None
    tags: Sequence[tuple[Any, ...]] = field(default_factory=tuple)
    vector: np.ndarray | None = None
    width: int | None = None
    height: int | None = None
    attempts: int = 0


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


_UPSERT_PHOTOS = """
INSERT INTO photos AS p
    (photo_id, status, model_version, width, height, reason, attempts, tagged_at)
SELECT r.photo_id, r.status, r.model_version, r.width, r.height, r.reason, r.attempts,
       CASE WHEN r.status = 'tagged' THEN now() END
FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::int[], %s::text[], %s::int[])
     AS r(photo_id, status, model_version, width, height, reason, attempts)
ORDER BY r.photo_id
ON CONFLICT (photo_id) DO UPDATE SET
    status = CASE WHEN p.status = 'tagged' AND EXCLUDED.status = 'failed'
                  THEN 'tagged' ELSE EXCLUDED.status END,
    model_version = COALESCE(EXCLUDED.model_version, p.model_version),
    width = COALESCE(EXCLUDED.width, p.width),
    height = COALESCE(EXCLUDED.height, p.height),
    reason = EXCLUDED.reason,
    attempts = GREATEST(p.attempts, EXCLUDED.attempts),
    tagged_at = COALESCE(EXCLUDED.tagged_at, p.tagged_at)
"""

_DELETE_TAGS = """
DELETE FROM tags t
USING unnest(%s::text[], %s::text[]) AS b(photo_id, model_version)
WHERE t.photo_id = b.photo_id AND t.model_version = b.model_version
"""

_INSERT_TAGS = """
INSERT INTO tags (photo_id, tag, score, model_version, kind, via)
SELECT r.photo_id, r.tag, r.score, r.model_version, r.kind, r.via
FROM unnest(%s::text[], %s::text[], %s::real[], %s::text[], %s::text[], %s::text[])
     AS r(photo_id, tag, score, model_version, kind, via)
ORDER BY r.photo_id, r.tag
ON CONFLICT (photo_id, model_version, tag) DO UPDATE SET
    score = EXCLUDED.score, kind = EXCLUDED.kind, via = EXCLUDED.via
"""

# One row per photo (executemany in the batch's pipeline): each vector travels in binary.
_UPSERT_VECTOR = """
INSERT INTO photo_vectors AS v (photo_id, feature_set, model_version, feature)
VALUES (%s, %s, %s, %b)
ON CONFLICT (photo_id, feature_set) DO UPDATE SET
    model_version = EXCLUDED.model_version, feature = EXCLUDED.feature
WHERE v.feature IS DISTINCT FROM EXCLUDED.feature
   OR v.model_version IS DISTINCT FROM EXCLUDED.model_version
"""


# One statement per batch, delivered by Postgres only if the transaction commits.
_NOTIFY = "SELECT pg_notify(%s, m) FROM unnest(%s::text[]) AS m"


def _notify_payloads(photo_ids: Sequence[str]) -> list[str]:
    n = NOTIFY_IDS_PER_MESSAGE
    return [",".join(photo_ids[i : i + n]) for i in range(0, len(photo_ids), n)]


def _dedupe(results: Iterable[StorableResult]) -> list[StorableResult]:
    """Last result per photo wins (a replay can put the same photo twice in one batch)."""
    by_id: dict[str, StorableResult] = {}
    for r in results:
        by_id[r.photo_id] = r
    return [by_id[k] for k in sorted(by_id)]


def _clean(text: str | None) -> str | None:
    """Postgres text cannot hold NUL; one stray byte must not poison a whole batch."""
    return None if text is None else str(text).replace("\x00", "")


@dataclass
class _Batch:
    """Column arrays for the unnest() statements of one write_results call."""

    photos: tuple[list[Any], ...]
    tag_keys: tuple[list[Any], ...]
    tags: tuple[list[Any], ...]
    vectors: list[tuple[str, str | None, str, Float4Vector]]  # sorted by photo id


def _columns(batch: Sequence[StorableResult]) -> _Batch:
    p_ids, p_status, p_mv, p_w, p_h, p_reason, p_att = [], [], [], [], [], [], []
    d_ids, d_mv = [], []
    t_ids, t_tags, t_scores, t_mv, t_kinds, t_via = [], [], [], [], [], []
    vectors: list[tuple[str, str | None, str, Float4Vector]] = []
    for r in batch:
        if r.status not in ("tagged", "failed"):
            raise ValueError(f"result status must be 'tagged' or 'failed', not {r.status!r}")
        tagged = r.status == "tagged"
        p_ids.append(r.photo_id)
        p_status.append(r.status)
        p_mv.append(_clean(r.model_version) if tagged else None)
        p_w.append(None if r.width is None else int(r.width))
        p_h.append(None if r.height is None else int(r.height))
        p_reason.append(_clean(r.reason))
        p_att.append(int(r.attempts or 0))
        if not tagged:
            continue
        if not r.model_version:
            raise ValueError(f"tagged result for {r.photo_id} has no model_version")
        mv = _clean(r.model_version)
        d_ids.append(r.photo_id)
        d_mv.append(mv)
        best: dict[str, tuple[float, str, str | None]] = {}
        for tag, score, *more in r.tags:
            name, value = _clean(tag) or "", float(score)
            kind = str(more[0]) if more else "leaf"  # the tags table checks it
            via = _clean(more[1]) if len(more) > 1 else None
            if name and math.isfinite(value) and (name not in best or value > best[name][0]):
                best[name] = (value, kind, via)
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
    return _Batch(
        (p_ids, p_status, p_mv, p_w, p_h, p_reason, p_att),
        (d_ids, d_mv),
        (t_ids, t_tags, t_scores, t_mv, t_kinds, t_via),
        vectors,
    )


def _send(conn: psycopg.Connection[Any], b: _Batch) -> None:
    """All statements of a batch in one pipeline: BEGIN ... COMMIT, a single sync."""
    statements: list[tuple[str, Any]] = [(_UPSERT_PHOTOS, b.photos)]
    if b.tag_keys[0]:
        statements.append((_DELETE_TAGS, b.tag_keys))
    if b.tags[0]:
        statements.append((_INSERT_TAGS, b.tags))
    if b.vectors:
        statements.append(("SELECT pg_advisory_xact_lock(%s)", (_VECTOR_SEQ_LOCK,)))
    notify = (_NOTIFY, (NOTIFY_CHANNEL, _notify_payloads(b.photos[0])))

    def send_all(cur: psycopg.Cursor[Any]) -> None:
        for query, params in statements:
            cur.execute(query, params)
        if b.vectors:
            cur.executemany(_UPSERT_VECTOR, b.vectors)
        cur.execute(*notify)

    cur = conn.cursor()
    cur.adapters.register_dumper(Float4Vector, _Float4VectorDumper)
    if not conn.autocommit:
        # A caller-managed connection: psycopg's own transaction (a few more round trips).
        with conn.pipeline(), conn.transaction():
            send_all(cur)
        return
    try:
        with conn.pipeline():
            cur.execute("BEGIN")
            send_all(cur)
            cur.execute("COMMIT")
    except BaseException:
        # An error skips the rest of the pipeline (COMMIT included): undo what ran.
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                pass
        raise


def write_results(conn: psycopg.Connection[Any], results: Sequence[StorableResult]) -> int:
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
    `autotag retry --stuck` re-queues), so one bad result cannot stall the writer. Returns
    the results stored.
    """
    batch = _dedupe(results)
    if not batch:
        return 0
    try:
        _send(conn, _columns(batch))
        return len(batch)
    except Exception as exc:
        if is_transient(exc):
            raise
        log.warning("batch of %d refused (%s); storing one by one", len(batch), first_line(exc))
    stored = 0
    for r in batch:
        try:
            _send(conn, _columns([r]))
            stored += 1
            continue
        except Exception as exc:
            if is_transient(exc):
                raise
            error: BaseException = exc
        reason = f"could not store result: {first_line(error)}"
        try:
            _send(conn, _columns([_FailedRow(r.photo_id, reason, attempts=int(r.attempts or 0))]))
            log.error("photo %s: %s", r.photo_id, reason)
            stored += 1
            continue
        except Exception as exc:
            if is_transient(exc):
                raise
            error = exc
        log.error("dropping the result for %r: %s", r.photo_id, first_line(error))
    return stored


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

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conn: psycopg.Connection[Any] | None = None

    def write(self, results: Sequence[StorableResult]) -> int:
        if self.conn is None or self.conn.closed:
            self.conn = connect(self.settings, migrate_schema=False)
        return write_results(self.conn, results)

    def reset(self) -> None:
        """Drop the connection (after an error); the next write reconnects."""
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001, S110 - already broken
                pass
        self.conn = None
