"""Reading tags back: search by tag, one photo's details, statistics, failures.

A photo's current tags are those whose ``model_version`` equals the photo's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

STATUSES = ("queued", "tagged", "failed")
# Word split shared by the tags_words_idx index and search(); must match it exactly.
_WORDS_SQL = "array_remove(regexp_split_to_array(lower({}), '[^[:alnum:]]+'), '')"


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
    tags: list[tuple[str, float]] = field(default_factory=list)  # concepts first
    kinds: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # tag -> (kind, via)
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
