"""Postgres: schema migrations, the DB writer's batched writes, and the lookups.

Connections are autocommit; every write that must be atomic runs in an explicit
transaction. ``write_results`` sends a whole batch in one pipelined round trip and is
idempotent, because Storm replays a batch whose ack was lost.
"""

from __future__ import annotations

import base64
import logging
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from autotag.config import Settings
from autotag.errors import ServiceError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_RE = re.compile(r"(\d{4})_[A-Za-z0-9_]+\.sql")
# Advisory lock keys (arbitrary constants, namespaced by being unusual).
_MIGRATE_LOCK = 0x617574_6D6967  # "autmig"
_VECTOR_SEQ_LOCK = 0x617574_766563  # "autvec"
STATUSES = ("queued", "tagged", "failed")
# Word split shared by the tags_words_idx index and search(); must match it exactly.
_WORDS_SQL = "array_remove(regexp_split_to_array(lower({}), '[^[:alnum:]]+'), '')"


def _settings(settings: Settings | None) -> Settings:
    if settings is not None:
        return settings
    from autotag.config import settings as current

    return current()


# -- connections ---------------------------------------------------------------------------


def service_error(settings: Settings, exc: BaseException) -> ServiceError:
    """A one-line ServiceError for a Postgres connection/operational failure."""
    first = _first_line(exc)
    if "failed: " in first:  # psycopg repeats the address: keep just the cause
        first = first.rsplit("failed: ", 1)[1]
    where = f"{settings.host}:{settings.port(settings.postgres_port)}"
    return ServiceError(f"Postgres at {where} is not answering: {first} (run `autotag cluster up`)")


@contextmanager
def pg_errors(settings: Settings | None = None) -> Iterator[None]:
    """Turn psycopg's connection/operational errors into a one-line ServiceError."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise service_error(_settings(settings), exc) from exc


def connect(
    settings: Settings | None = None,
    *,
    migrate_schema: bool = True,
    connect_timeout: int = 5,
) -> psycopg.Connection[Any]:
    """An autocommit connection to autotag's database, schema migrated unless told not to."""
    s = _settings(settings)
    try:
        conn = psycopg.connect(
            host=s.host,
            port=s.port(s.postgres_port),
            dbname=s.postgres_db,
            user=s.postgres_user,
            autocommit=True,
            connect_timeout=connect_timeout,
            application_name="autotag",
        )
    except psycopg.OperationalError as exc:
        raise service_error(s, exc) from exc
    if migrate_schema:
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
    return conn


# -- migrations ----------------------------------------------------------------------------


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[str, Path]]:
    """(version, path) of every NNNN_name.sql, in order."""
    out = []
    for p in sorted(directory.glob("*.sql")):
        m = _MIGRATION_RE.fullmatch(p.name)
        if m:
            out.append((m.group(1), p))
    return out


def _applied(conn: psycopg.Connection[Any]) -> set[str]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return set()
    return {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}


def migrate(conn: psycopg.Connection[Any], directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations in order, once each; returns the versions applied now.

    An advisory lock serialises concurrent callers (several bolts starting at once); the
    common case, nothing to do, costs one query and takes no lock.
    """
    files = migration_files(directory)
    if {v for v, _ in files} <= _applied(conn):
        return []
    done: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = _applied(conn)
        for version, path in files:
            if version in applied:
                continue
            # No parameters: psycopg sends the file as one simple query (many statements).
            conn.execute(path.read_text().encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (version, path.name),
            )
            done.append(version)
    if done:
        log.info("applied migrations %s", ", ".join(done))
    return done


# -- results (the DB writer) -----------------------------------------------------------------


def encode_vector(vector: np.ndarray) -> str:
    """base64 of little-endian float32: the tuple form of a feature vector."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str | None) -> np.ndarray | None:
    if not text:
        return None
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


@dataclass
class Result:
    """What the autotag bolt decided about one photo; the DB writer stores a batch of them."""

    photo_id: str
    status: str  # 'tagged' | 'failed'
    model_version: str | None = None
    feature_set: str | None = None
    tags: list[tuple[str, float]] = field(default_factory=list)
    vector: np.ndarray | None = None
    width: int | None = None
    height: int | None = None
    reason: str | None = None

    @classmethod
    def from_tuple(cls, values: Sequence[Any]) -> Result:
        """From the bolt tuple (photo_id, status, model_version, feature_set, tags, vector,
        width, height, reason), where vector is base64 float32 or None."""
        pid, status, mv, fs, tags, vec, w, h, reason = values
        return cls(
            photo_id=pid,
            status=status,
            model_version=mv,
            feature_set=fs,
            tags=[(str(t), float(s)) for t, s in (tags or [])],
            vector=decode_vector(vec),
            width=None if w is None else int(w),
            height=None if h is None else int(h),
            reason=reason,
        )

    def to_tuple(self) -> list[Any]:
        """The JSON-safe tuple form (see ARCHITECTURE.md)."""
        return [
            self.photo_id,
            self.status,
            self.model_version,
            self.feature_set,
            [[t, float(s)] for t, s in self.tags],
            None if self.vector is None else encode_vector(self.vector),
            self.width,
            self.height,
            self.reason,
        ]


def _vector_literal(v: np.ndarray) -> str | None:
    """A Postgres array literal; None for a vector we refuse to store (non-finite)."""
    arr = np.asarray(v, dtype=np.float32).ravel()
    if arr.size == 0 or not np.isfinite(arr).all():
        return None
    # repr of the float64 of a float32 round-trips to the same float32 in a real[].
    return "{" + ",".join(map(repr, arr.tolist())) + "}"


_UPSERT_PHOTOS = """
INSERT INTO photos AS p (photo_id, status, model_version, width, height, reason, tagged_at)
SELECT r.photo_id, r.status, r.model_version, r.width, r.height, r.reason,
       CASE WHEN r.status = 'tagged' THEN now() END
FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::int[], %s::text[])
     AS r(photo_id, status, model_version, width, height, reason)
ORDER BY r.photo_id
ON CONFLICT (photo_id) DO UPDATE SET
    status = CASE WHEN p.status = 'tagged' AND EXCLUDED.status = 'failed'
                  THEN 'tagged' ELSE EXCLUDED.status END,
    model_version = COALESCE(EXCLUDED.model_version, p.model_version),
    width = COALESCE(EXCLUDED.width, p.width),
    height = COALESCE(EXCLUDED.height, p.height),
    reason = EXCLUDED.reason,
    tagged_at = COALESCE(EXCLUDED.tagged_at, p.tagged_at)
"""

_DELETE_TAGS = """
DELETE FROM tags t
USING unnest(%s::text[], %s::text[]) AS b(photo_id, model_version)
WHERE t.photo_id = b.photo_id AND t.model_version = b.model_version
"""

_INSERT_TAGS = """
INSERT INTO tags (photo_id, tag, score, model_version)
SELECT r.photo_id, r.tag, r.score, r.model_version
FROM unnest(%s::text[], %s::text[], %s::real[], %s::text[])
     AS r(photo_id, tag, score, model_version)
ORDER BY r.photo_id, r.tag
ON CONFLICT (photo_id, model_version, tag) DO UPDATE SET score = EXCLUDED.score
"""

_UPSERT_VECTORS = """
INSERT INTO photo_vectors AS v (photo_id, feature_set, model_version, feature)
SELECT r.photo_id, r.feature_set, r.model_version, r.feature::real[]
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])
     AS r(photo_id, feature_set, model_version, feature)
ORDER BY r.photo_id
ON CONFLICT (photo_id, feature_set) DO UPDATE SET
    model_version = EXCLUDED.model_version, feature = EXCLUDED.feature
WHERE v.feature IS DISTINCT FROM EXCLUDED.feature
   OR v.model_version IS DISTINCT FROM EXCLUDED.model_version
"""


def _dedupe(results: Iterable[Result]) -> list[Result]:
    """Last result per photo wins (a replay can put the same photo twice in one batch)."""
    by_id: dict[str, Result] = {}
    for r in results:
        if r.status not in ("tagged", "failed"):
            raise ValueError(f"result status must be 'tagged' or 'failed', not {r.status!r}")
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
    vectors: tuple[list[Any], ...]


def _columns(batch: Sequence[Result]) -> _Batch:
    p_ids, p_status, p_mv, p_w, p_h, p_reason = [], [], [], [], [], []
    d_ids, d_mv = [], []
    t_ids, t_tags, t_scores, t_mv = [], [], [], []
    v_ids, v_fs, v_mv, v_feat = [], [], [], []
    for r in batch:
        tagged = r.status == "tagged"
        p_ids.append(r.photo_id)
        p_status.append(r.status)
        p_mv.append(_clean(r.model_version) if tagged else None)
        p_w.append(None if r.width is None else int(r.width))
        p_h.append(None if r.height is None else int(r.height))
        p_reason.append(_clean(r.reason))
        if not tagged:
            continue
        if not r.model_version:
            raise ValueError(f"tagged result for {r.photo_id} has no model_version")
        mv = _clean(r.model_version)
        d_ids.append(r.photo_id)
        d_mv.append(mv)
        best: dict[str, float] = {}
        for tag, score in r.tags:
            name, value = _clean(tag) or "", float(score)
            if name and math.isfinite(value) and (name not in best or value > best[name]):
                best[name] = value
        for name, value in best.items():
            t_ids.append(r.photo_id)
            t_tags.append(name)
            t_scores.append(value)
            t_mv.append(mv)
        if r.vector is not None:
            lit = _vector_literal(r.vector)
            if lit is None:
                log.warning("not storing an empty or non-finite vector for %s", r.photo_id)
            elif not r.feature_set:
                log.warning("not storing a vector without feature_set for %s", r.photo_id)
            else:
                v_ids.append(r.photo_id)
                v_fs.append(_clean(r.feature_set))
                v_mv.append(mv)
                v_feat.append(lit)
    return _Batch(
        (p_ids, p_status, p_mv, p_w, p_h, p_reason),
        (d_ids, d_mv),
        (t_ids, t_tags, t_scores, t_mv),
        (v_ids, v_fs, v_mv, v_feat),
    )


def _send(conn: psycopg.Connection[Any], b: _Batch) -> None:
    """All statements of a batch in one pipeline: BEGIN ... COMMIT, a single sync."""
    statements: list[tuple[str, Any]] = [(_UPSERT_PHOTOS, b.photos)]
    if b.tag_keys[0]:
        statements.append((_DELETE_TAGS, b.tag_keys))
    if b.tags[0]:
        statements.append((_INSERT_TAGS, b.tags))
    if b.vectors[0]:
        statements.append(("SELECT pg_advisory_xact_lock(%s)", (_VECTOR_SEQ_LOCK,)))
        statements.append((_UPSERT_VECTORS, b.vectors))
    if not conn.autocommit:
        # A caller-managed connection: psycopg's own transaction (a few more round trips).
        with conn.pipeline(), conn.transaction():
            for query, params in statements:
                conn.execute(query, params)
        return
    try:
        with conn.pipeline():
            conn.execute("BEGIN")
            for query, params in statements:
                conn.execute(query, params)
            conn.execute("COMMIT")
    except BaseException:
        # An error skips the rest of the pipeline (COMMIT included): undo what ran.
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                pass
        raise


def write_results(conn: psycopg.Connection[Any], results: Sequence[Result]) -> int:
    """Store a batch of results in one transaction and one round trip; returns photos written.

    Idempotent: replaying a batch leaves the same rows (tags of a (photo, model_version)
    are replaced, vectors upserted without bumping seq when unchanged). A 'failed' result
    never downgrades a photo that is already 'tagged' (its reason is still recorded).
    Vector writes take a transaction-scoped advisory lock just before commit, so vector
    ``seq`` values become visible in increasing order and ``seq > last_seen`` never skips.

    A batch the database refuses as data (say a score out of real's range) is retried one
    result at a time; a result that still fails is stored as a 'failed' photo with the
    reason (or, if even that is refused, e.g. a malformed photo id, logged and dropped), so
    one bad result cannot make Storm replay a batch forever. Returns the results stored.
    Connection errors (psycopg.OperationalError) propagate: fail the tuples, Storm replays.
    """
    batch = _dedupe(results)
    if not batch:
        return 0
    try:
        _send(conn, _columns(batch))
        return len(batch)
    except _DATA_ERRORS as exc:
        log.warning("batch of %d refused (%s); storing one by one", len(batch), _first_line(exc))
    stored = 0
    for r in batch:
        try:
            _send(conn, _columns([r]))
            stored += 1
            continue
        except _DATA_ERRORS as exc:
            error: BaseException = exc
        if r.status == "tagged":
            reason = f"could not store result: {_first_line(error)}"
            try:
                _send(conn, _columns([Result(r.photo_id, "failed", reason=reason)]))
                log.error("photo %s: %s", r.photo_id, reason)
                stored += 1
                continue
            except _DATA_ERRORS as exc:
                error = exc
        log.error("dropping the result for %r: %s", r.photo_id, _first_line(error))
    return stored


_DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- intake-side writes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """Outcome of registering an upload: was the row new, and its status before and after."""

    new: bool
    previous_status: str | None
    status: str


def register(
    conn: psycopg.Connection[Any],
    photo_id: str,
    source: str | None,
    nbytes: int | None,
    *,
    force: bool = False,
) -> Registration:
    """Insert the photo as 'queued'; an existing photo becomes 'queued' again unless it is
    'tagged' (kept, unless force). The first source name is kept."""
    row = conn.execute(
        """
        WITH old AS (SELECT status FROM photos WHERE photo_id = %(id)s)
        INSERT INTO photos AS p (photo_id, status, source, bytes)
        VALUES (%(id)s, 'queued', %(source)s, %(bytes)s)
        ON CONFLICT (photo_id) DO UPDATE SET
            status = CASE WHEN p.status = 'tagged' AND NOT %(force)s THEN 'tagged'
                          ELSE 'queued' END,
            reason = CASE WHEN p.status = 'tagged' AND NOT %(force)s THEN p.reason END,
            attempts = CASE WHEN p.status = 'failed' THEN 0 ELSE p.attempts END,
            source = COALESCE(p.source, EXCLUDED.source),
            bytes = COALESCE(p.bytes, EXCLUDED.bytes)
        RETURNING (SELECT status FROM old), p.status
        """,
        {"id": photo_id, "source": source, "bytes": nbytes, "force": force},
    ).fetchone()
    assert row is not None
    previous, status = row
    return Registration(new=previous is None, previous_status=previous, status=status)


def register_photo(
    conn: psycopg.Connection[Any], photo_id: str, source: str | None, nbytes: int | None
) -> bool:
    """Register an upload as queued (a tagged photo keeps its status); True if new."""
    return register(conn, photo_id, source, nbytes).new


def mark_failed(conn: psycopg.Connection[Any], photo_id: str, reason: str, attempts: int) -> None:
    """Record a photo that exhausted its attempts (dead-lettered). Tagged photos stay tagged."""
    conn.execute(
        """
        INSERT INTO photos AS p (photo_id, status, reason, attempts)
        VALUES (%s, 'failed', %s, %s)
        ON CONFLICT (photo_id) DO UPDATE SET
            status = CASE WHEN p.status = 'tagged' THEN 'tagged' ELSE 'failed' END,
            reason = EXCLUDED.reason,
            attempts = EXCLUDED.attempts
        """,
        (photo_id, reason, attempts),
    )


def set_attempts(conn: psycopg.Connection[Any], photo_id: str, attempts: int) -> None:
    """Record how many times a photo has been tried (the spout's retry count)."""
    conn.execute("UPDATE photos SET attempts = %s WHERE photo_id = %s", (attempts, photo_id))


@dataclass(frozen=True)
class RequeueItem:
    """What a retry needs to put a photo back on the stream (the blob path is blobs.path_for)."""

    photo_id: str
    source: str | None
    status: str
    attempts: int
    reason: str | None
    uploaded_at: datetime


def requeue_info(
    conn: psycopg.Connection[Any],
    photo_ids: Sequence[str] | None = None,
    *,
    statuses: Sequence[str] = ("queued", "failed"),
    older_than_secs: float = 0.0,
    limit: int | None = None,
) -> list[RequeueItem]:
    """Photos a retry could re-enqueue: by id, or by status and age (stuck 'queued' rows)."""
    rows = conn.execute(
        """
        SELECT photo_id, source, status, attempts, reason, uploaded_at FROM photos
        WHERE (%(ids)s::text[] IS NULL OR photo_id = ANY(%(ids)s::text[]))
          AND status = ANY(%(st)s::text[])
          AND uploaded_at <= now() - make_interval(secs => %(age)s)
        ORDER BY uploaded_at, photo_id
        LIMIT %(lim)s
        """,
        {
            "ids": None if photo_ids is None else list(photo_ids),
            "st": list(statuses),
            "age": float(older_than_secs),
            "lim": limit,
        },
    ).fetchall()
    return [RequeueItem(*r) for r in rows]


def mark_queued(
    conn: psycopg.Connection[Any], photo_ids: Sequence[str], *, include_tagged: bool = False
) -> int:
    """Set photos back to 'queued' (before re-enqueueing them); returns rows changed."""
    cur = conn.execute(
        """
        UPDATE photos SET status = 'queued', reason = NULL, attempts = 0
        WHERE photo_id = ANY(%s::text[]) AND (status <> 'tagged' OR %s)
        """,
        (list(photo_ids), include_tagged),
    )
    return cur.rowcount


def queued_ids(
    conn: psycopg.Connection[Any], older_than_secs: float = 0.0, limit: int | None = None
) -> list[str]:
    """Ids of photos still 'queued' (optionally only those uploaded longer ago than given)."""
    rows = conn.execute(
        """
        SELECT photo_id FROM photos
        WHERE status = 'queued' AND uploaded_at <= now() - make_interval(secs => %s)
        ORDER BY uploaded_at, photo_id LIMIT %s
        """,
        (float(older_than_secs), limit),
    ).fetchall()
    return [r[0] for r in rows]


# -- lookups ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchHit:
    photo_id: str
    tag: str
    score: float
    match: str  # 'exact' (case-insensitive) | 'word' (a word of a multi-word tag)
    source: str | None
    model_version: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "photo_id": self.photo_id,
            "tag": self.tag,
            "score": round(float(self.score), 6),
            "match": self.match,
            "source": self.source,
            "model_version": self.model_version,
        }


_SEARCH = f"""
WITH exact AS (
    SELECT t.photo_id, t.tag, t.score, 0 AS rank
    FROM tags t JOIN photos p
      ON p.photo_id = t.photo_id AND p.model_version = t.model_version
    WHERE lower(t.tag) = lower(%(tag)s) AND t.score >= %(min)s
    ORDER BY t.score DESC, t.photo_id
    LIMIT %(lim)s
), word AS (
    SELECT * FROM (
        SELECT DISTINCT ON (t.photo_id) t.photo_id, t.tag, t.score, 1 AS rank
        FROM tags t JOIN photos p
          ON p.photo_id = t.photo_id AND p.model_version = t.model_version
        WHERE %(words)s
          AND cardinality({_WORDS_SQL.format("%(tag)s::text")}) > 0
          AND {_WORDS_SQL.format("t.tag")} @> {_WORDS_SQL.format("%(tag)s::text")}
          AND lower(t.tag) <> lower(%(tag)s)
          AND t.score >= %(min)s
        ORDER BY t.photo_id, t.score DESC
    ) w
    ORDER BY w.score DESC, w.photo_id
    LIMIT %(lim)s
), best AS (
    SELECT DISTINCT ON (photo_id) * FROM (SELECT * FROM exact UNION ALL SELECT * FROM word) h
    ORDER BY photo_id, rank, score DESC
)
SELECT b.photo_id, b.tag, b.score, b.rank, p.source, p.model_version
FROM best b JOIN photos p USING (photo_id)
ORDER BY b.rank, b.score DESC, b.photo_id
LIMIT %(lim)s
"""


def search(
    conn: psycopg.Connection[Any],
    tag: str,
    min_score: float = 0.0,
    limit: int = 50,
    *,
    words: bool = True,
) -> list[SearchHit]:
    """Photos carrying a tag under their current model version, best first.

    Matching is case-insensitive. Exact tag matches come first (by score); then, unless
    ``words=False``, photos whose tag contains every word of the query ("retriever" finds
    "golden retriever", "Golden Retriever" and "retriever, golden"), also by score. Each
    photo appears once, under its best match.
    """
    rows = conn.execute(
        _SEARCH,
        {"tag": tag.strip(), "min": float(min_score), "lim": int(limit), "words": bool(words)},
    ).fetchall()
    return [
        SearchHit(pid, t, float(s), "exact" if rank == 0 else "word", src, mv)
        for pid, t, s, rank, src, mv in rows
    ]


@dataclass
class PhotoInfo:
    """A photo row with its current tags and which feature vectors exist for it."""

    photo_id: str
    status: str
    source: str | None
    bytes: int | None
    width: int | None
    height: int | None
    attempts: int
    reason: str | None
    model_version: str | None
    uploaded_at: datetime | None
    tagged_at: datetime | None
    tags: list[tuple[str, float]] = field(default_factory=list)
    vectors: dict[str, int] = field(default_factory=dict)  # feature_set -> dimension
    other_model_versions: dict[str, int] = field(default_factory=dict)  # version -> tag rows

    @property
    def has_vector(self) -> bool:
        return bool(self.vectors)

    def as_dict(self) -> dict[str, Any]:
        return {
            "photo_id": self.photo_id,
            "status": self.status,
            "source": self.source,
            "bytes": self.bytes,
            "width": self.width,
            "height": self.height,
            "attempts": self.attempts,
            "reason": self.reason,
            "model_version": self.model_version,
            "uploaded_at": self.uploaded_at.isoformat() if self.uploaded_at else None,
            "tagged_at": self.tagged_at.isoformat() if self.tagged_at else None,
            "tags": [{"tag": t, "score": round(float(s), 6)} for t, s in self.tags],
            "has_vector": self.has_vector,
            "vectors": dict(self.vectors),
            "other_model_versions": dict(self.other_model_versions),
        }


def show(conn: psycopg.Connection[Any], photo_id: str) -> PhotoInfo | None:
    """Everything known about one photo, or None if it was never uploaded."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT photo_id, status, source, bytes, width, height, attempts, reason,"
            " model_version, uploaded_at, tagged_at FROM photos WHERE photo_id = %s",
            (photo_id,),
        ).fetchone()
    if row is None:
        return None
    info = PhotoInfo(**row)
    info.tags = [
        (t, float(s))
        for t, s in conn.execute(
            "SELECT tag, score FROM tags WHERE photo_id = %s AND model_version = %s"
            " ORDER BY score DESC, tag",
            (photo_id, info.model_version),
        )
    ]
    info.vectors = {
        fs: int(dim or 0)
        for fs, dim in conn.execute(
            "SELECT feature_set, cardinality(feature) FROM photo_vectors WHERE photo_id = %s"
            " ORDER BY feature_set",
            (photo_id,),
        )
    }
    info.other_model_versions = {
        mv: int(n)
        for mv, n in conn.execute(
            "SELECT model_version, count(*) FROM tags WHERE photo_id = %s"
            " AND model_version IS DISTINCT FROM %s GROUP BY model_version ORDER BY 1",
            (photo_id, info.model_version),
        )
    }
    return info


def stats(conn: psycopg.Connection[Any], top: int = 20) -> dict[str, Any]:
    """Counts by status, current tags per tagged photo, top tags, model versions, vectors."""
    by_status = {s: 0 for s in STATUSES}
    for status, n in conn.execute("SELECT status, count(*) FROM photos GROUP BY status"):
        by_status[status] = int(n)
    row = conn.execute(
        """
        SELECT count(*) FROM tags t JOIN photos p
          ON p.photo_id = t.photo_id AND p.model_version = t.model_version
        """
    ).fetchone()
    current_tags = int(row[0]) if row else 0
    with_versions = conn.execute(
        "SELECT count(*) FROM photos WHERE model_version IS NOT NULL"
    ).fetchone()
    n_versioned = int(with_versions[0]) if with_versions else 0
    top_tags = [
        {"tag": t, "photos": int(n), "avg_score": round(float(a), 4)}
        for t, n, a in conn.execute(
            """
            SELECT t.tag, count(*), avg(t.score) FROM tags t JOIN photos p
              ON p.photo_id = t.photo_id AND p.model_version = t.model_version
            GROUP BY t.tag ORDER BY count(*) DESC, t.tag LIMIT %s
            """,
            (top,),
        )
    ]
    versions = {
        mv: int(n)
        for mv, n in conn.execute(
            "SELECT model_version, count(*) FROM photos WHERE model_version IS NOT NULL"
            " GROUP BY model_version ORDER BY 2 DESC, 1"
        )
    }
    vectors = {
        fs: int(n)
        for fs, n in conn.execute(
            "SELECT feature_set, count(*) FROM photo_vectors GROUP BY feature_set ORDER BY 1"
        )
    }
    return {
        "photos": sum(by_status.values()),
        "by_status": by_status,
        "current_tags": current_tags,
        "tags_per_photo": round(current_tags / n_versioned, 3) if n_versioned else 0.0,
        "top_tags": top_tags,
        "model_versions": versions,
        "vectors": vectors,
    }


def failed(conn: psycopg.Connection[Any], limit: int = 50) -> list[dict[str, Any]]:
    """Failed photos with their reasons, most recently uploaded first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT photo_id, source, reason, attempts, bytes, uploaded_at FROM photos"
            " WHERE status = 'failed' ORDER BY uploaded_at DESC, photo_id LIMIT %s",
            (limit,),
        ).fetchall()
    for r in rows:
        r["uploaded_at"] = r["uploaded_at"].isoformat() if r["uploaded_at"] else None
    return rows


# -- vectors (for the similarity index) --------------------------------------------------------


@dataclass(frozen=True)
class VectorRow:
    seq: int
    photo_id: str
    feature_set: str
    model_version: str | None
    vector: np.ndarray


def vectors_since(
    conn: psycopg.Connection[Any],
    after_seq: int = 0,
    feature_set: str | None = None,
    limit: int = 10_000,
) -> list[VectorRow]:
    """Vectors written or changed after ``after_seq``, in seq order (incremental sync)."""
    rows = conn.execute(
        """
        SELECT seq, photo_id, feature_set, model_version, feature FROM photo_vectors
        WHERE seq > %s AND (%s::text IS NULL OR feature_set = %s::text)
        ORDER BY seq LIMIT %s
        """,
        (after_seq, feature_set, feature_set, limit),
    ).fetchall()
    return [
        VectorRow(int(s), pid, fs, mv, np.asarray(f, dtype=np.float32))
        for s, pid, fs, mv, f in rows
    ]


def get_vector(
    conn: psycopg.Connection[Any], photo_id: str, feature_set: str | None = None
) -> np.ndarray | None:
    """One photo's stored vector (the given feature set, or the most recently written)."""
    row = conn.execute(
        """
        SELECT feature FROM photo_vectors
        WHERE photo_id = %s AND (%s::text IS NULL OR feature_set = %s::text)
        ORDER BY seq DESC LIMIT 1
        """,
        (photo_id, feature_set, feature_set),
    ).fetchone()
    return None if row is None else np.asarray(row[0], dtype=np.float32)
