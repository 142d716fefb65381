"""The ``photos`` rows outside the DB writer: registering uploads, re-queueing, dead letters.

Every upload path (CLI, inbox, HTTP) registers a photo here before it is queued; retries and
re-tagging read and reset rows here. Tagging results are written by ``storage.writer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg


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
    'tagged' (kept, unless force). The first source name is kept.

    The same bytes uploaded after the photo was deleted (in the trash, or for good) are a new
    upload: the trash entry or tombstone goes, and the photo is tagged afresh."""
    row = conn.execute(
        """
        WITH undeleted AS (DELETE FROM trash WHERE item_id = %(id)s),
        old AS (SELECT status FROM photos WHERE photo_id = %(id)s)
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
        SELECT %s, 'failed', %s, %s
        WHERE NOT EXISTS (SELECT 1 FROM trash WHERE item_id = %s)  -- deleted meanwhile
        ON CONFLICT (photo_id) DO UPDATE SET
            status = CASE WHEN p.status = 'tagged' THEN 'tagged' ELSE 'failed' END,
            reason = EXCLUDED.reason,
            attempts = EXCLUDED.attempts
        """,
        (photo_id, reason, attempts, photo_id),
    )


@dataclass(frozen=True)
class RequeueItem:
    """What a retry needs to put a photo back on the stream (the blob is found from the photo id)."""

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


def known_ids(conn: psycopg.Connection[Any], photo_ids: Sequence[str]) -> set[str]:
    """The photo ids among these that have a ``photos`` row, or wait in the trash."""
    rows = conn.execute(
        "SELECT photo_id FROM photos WHERE photo_id = ANY(%(ids)s::text[]) UNION ALL "
        "SELECT item_id FROM trash WHERE NOT purged AND item_id = ANY(%(ids)s::text[])",
        {"ids": list(photo_ids)},
    ).fetchall()
    return {r[0] for r in rows}


def undo_register(conn: psycopg.Connection[Any], photo_id: str, reg: Registration) -> None:
    """Take back a registration whose photo never reached the stream: a new row is deleted,
    an old one gets its previous status back (only while it is still 'queued')."""
    if reg.new:
        conn.execute("DELETE FROM photos WHERE photo_id = %s AND status = 'queued'", (photo_id,))
    elif reg.previous_status and reg.previous_status != "queued":
        conn.execute(
            "UPDATE photos SET status = %s WHERE photo_id = %s AND status = 'queued'",
            (reg.previous_status, photo_id),
        )


def stale_model_ids(
    conn: psycopg.Connection[Any],
    active_version: str,
    limit: int | None = None,
    current: Sequence[str] = (),
) -> list[str]:
    """Tagged photos whose current tags come from another model than the active one or the
    ``current`` ones (the re-tag backlog), oldest upload first."""
    rows = conn.execute(
        "SELECT photo_id FROM photos WHERE status = 'tagged' "
        "AND (model_version IS NULL OR model_version <> ALL(%s)) "
        "ORDER BY uploaded_at LIMIT %s",
        ([active_version, *current], limit),
    ).fetchall()
    return [r[0] for r in rows]


def settled_count(conn: psycopg.Connection[Any], photo_ids: Sequence[str]) -> int:
    """How many of these photos are no longer queued (tagged or failed)."""
    row = conn.execute(
        "SELECT count(*) FROM photos WHERE photo_id = ANY(%s) AND status <> 'queued'",
        (list(photo_ids),),
    ).fetchone()
    return int(row[0]) if row else 0
