"""Reading photos back: one photo's details, statistics, failures, tag counts.

A photo's current tags are those whose ``model_version`` equals the photo's. Searching by
tag is ``autotag.storage.tag_search`` (one query for the CLI, the API and the web page).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

STATUSES = ("queued", "tagged", "failed")


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
    tags: list[tuple[str, float]] = field(default_factory=list)  # concepts first
    kinds: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # tag -> (kind, via)
    vectors: dict[str, int] = field(default_factory=dict)  # feature_set -> dimension
    other_model_versions: dict[str, int] = field(default_factory=dict)  # version -> tag rows
    # What the file says (issue 26): date taken and its source, position, place, camera...
    metadata: dict[str, Any] = field(default_factory=dict)

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
            "tags": [
                {
                    "tag": t,
                    "score": round(float(s), 6),
                    "kind": self.kinds.get(t, ("leaf", None))[0],
                    "via": self.kinds.get(t, ("leaf", None))[1],
                }
                for t, s in self.tags
            ],
            "has_vector": self.has_vector,
            "vectors": dict(self.vectors),
            "other_model_versions": dict(self.other_model_versions),
            "metadata": dict(self.metadata),
        }


_METADATA_COLUMNS = (
    "taken_local", "taken_at", "taken_source", "latitude", "longitude", "altitude", "place",
    "camera", "lens", "keywords", "title", "description",
)  # fmt: skip


def photo_metadata(conn: psycopg.Connection[Any], photo_id: str) -> dict[str, Any]:
    """What the photo's own file said (migration 0008): the non-empty columns, times as ISO
    text."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT taken_local, taken_at, taken_source, latitude, longitude, altitude, place,"
            " camera, lens, keywords, title, description FROM photos WHERE photo_id = %s",
            (photo_id,),
        ).fetchone()
    out: dict[str, Any] = {}
    for name in _METADATA_COLUMNS:
        value = (row or {}).get(name)
        if value is not None:
            out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


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
    info.metadata = photo_metadata(conn, photo_id)
    rows = conn.execute(
        "SELECT tag, score, kind, via FROM tags WHERE photo_id = %s AND model_version = %s"
        " ORDER BY kind <> 'concept', score DESC, tag",
        (photo_id, info.model_version),
    ).fetchall()
    info.tags = [(t, float(s)) for t, s, _, _ in rows]
    info.kinds = {t: (k, v) for t, _, k, v in rows}
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


def stats(
    conn: psycopg.Connection[Any],
    top: int = 20,
    active_version: str | None = None,
    current: Sequence[str] = (),
) -> dict[str, Any]:
    """Counts by status, current tags per tagged photo, top tags, model versions, vectors;
    with ``active_version``, also the re-tag backlog: photos whose tags come from another
    model (queued for re-tagging or not yet) than the active one or the ``current`` ones
    (versions whose tags are as good: see ``learned_bundle.current_versions``)."""
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
    backlog = None
    if active_version is not None:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'queued'), count(*) FROM photos"
            " WHERE model_version IS NOT NULL AND model_version <> ALL(%s)",
            ([active_version, *current],),
        ).fetchone()
        backlog = {
            "active": active_version,
            "on_other_versions": int(row[1]) if row else 0,
            "queued_for_retag": int(row[0]) if row else 0,
        }
    return {
        "photos": sum(by_status.values()),
        "by_status": by_status,
        "backlog": backlog,
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


# -- what the web page asks ------------------------------------------------------------------


def tag_counts(conn: psycopg.Connection[Any], top: int | None = None) -> list[dict[str, Any]]:
    """Current tags with their photo counts, most common first (all, or the ``top``)."""
    rows = conn.execute(
        """
        SELECT t.tag, count(*) FROM tags t JOIN photos p
          ON p.photo_id = t.photo_id AND p.model_version = t.model_version
        GROUP BY t.tag ORDER BY count(*) DESC, t.tag LIMIT %s
        """,
        (top,),
    ).fetchall()
    return [{"tag": tag, "photos": int(n)} for tag, n in rows]


def complete(counts: list[dict[str, Any]], prefix: str, limit: int = 10) -> list[dict[str, Any]]:
    """Autocomplete from ``tag_counts``: tags starting with the prefix, or with a word of it
    ("retr" finds "golden retriever"), most photos first."""
    p = prefix.strip().lower()
    if not p:
        return []
    starts = [c for c in counts if c["tag"].lower().startswith(p)]
    words = [
        c
        for c in counts
        if not c["tag"].lower().startswith(p)
        and any(w.startswith(p) for w in c["tag"].lower().replace(",", " ").split())
    ]
    return (starts + words)[:limit]


def tagged_per_minute(conn: psycopg.Connection[Any], minutes: int = 15) -> list[dict[str, Any]]:
    """Photos tagged in each of the last ``minutes`` whole minutes (zeros included), oldest first."""
    rows = conn.execute(
        """
        WITH m AS (
            SELECT generate_series(date_trunc('minute', now()) - make_interval(mins => %(n)s - 1),
                                   date_trunc('minute', now()), interval '1 minute') AS minute
        )
        SELECT m.minute, count(p.photo_id) FROM m LEFT JOIN photos p
          ON p.tagged_at >= m.minute AND p.tagged_at < m.minute + interval '1 minute'
        GROUP BY m.minute ORDER BY m.minute
        """,
        {"n": int(minutes)},
    ).fetchall()
    return [{"minute": minute.isoformat(), "photos": int(n)} for minute, n in rows]


def summaries(conn: psycopg.Connection[Any], photo_ids: list[str], tags: int = 5) -> list[dict]:
    """Status, source, reason and best current tags of some photos (in the order given)."""
    if not photo_ids:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """
            SELECT p.photo_id, p.status, p.source, p.reason, p.model_version,
                   coalesce(array_agg(t.tag ORDER BY t.score DESC, t.tag)
                            FILTER (WHERE t.tag IS NOT NULL), '{}') AS tags,
                   coalesce(array_agg(t.score ORDER BY t.score DESC, t.tag)
                            FILTER (WHERE t.tag IS NOT NULL), '{}') AS scores
            FROM photos p LEFT JOIN tags t
              ON t.photo_id = p.photo_id AND t.model_version = p.model_version
            WHERE p.photo_id = ANY(%s)
            GROUP BY p.photo_id
            """,
            (list(photo_ids),),
        ).fetchall()
    by_id = {}
    for r in rows:
        pairs = list(zip(r.pop("tags"), r.pop("scores"), strict=True))[:tags]
        r["tags"] = [{"tag": t, "score": round(float(s), 6)} for t, s in pairs]
        by_id[r["photo_id"]] = r
    return [by_id[pid] for pid in photo_ids if pid in by_id]


def status_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Photos by status (every status present, zeros included)."""
    counts = {s: 0 for s in STATUSES}
    for status, n in conn.execute("SELECT status, count(*) FROM photos GROUP BY status"):
        counts[status] = int(n)
    return counts


def current_tags(
    conn: psycopg.Connection[Any], photo_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """Each photo's current tags (model_version = photos.model_version), best first."""
    out: dict[str, list[dict[str, Any]]] = {pid: [] for pid in photo_ids}
    if not photo_ids:
        return out
    rows = conn.execute(
        "SELECT t.photo_id, t.tag, t.score FROM tags t "
        "JOIN photos p ON p.photo_id = t.photo_id AND p.model_version = t.model_version "
        "WHERE t.photo_id = ANY(%s) ORDER BY t.photo_id, t.score DESC, t.tag",
        (list(photo_ids),),
    ).fetchall()
    for pid, tag, score in rows:
        out[pid].append({"tag": tag, "score": round(float(score), 6)})
    return out


def photos_with_tag(conn: psycopg.Connection[Any], photo_ids: Sequence[str], tag: str) -> set[str]:
    """Which of these photos carry ``tag`` (as written) under their current model."""
    rows = conn.execute(
        "SELECT t.photo_id FROM tags t JOIN photos p "
        "ON p.photo_id = t.photo_id AND p.model_version = t.model_version "
        "WHERE t.tag = %s AND t.photo_id = ANY(%s)",
        (tag, list(photo_ids)),
    ).fetchall()
    return {r[0] for r in rows}
