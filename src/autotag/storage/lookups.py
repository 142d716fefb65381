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


# -- what the web page asks ------------------------------------------------------------------

SEARCH_ORDERS = ("score", "newest")
# Totals are counted up to this many; past it the page says "1,000+".
COUNT_CAP = 1_000
# A tag on more photos than this is searched newest-first by walking photos newest-first
# (matches are dense); a rarer one by sorting its matches (they are few).
DENSE_TAG = 500

# One tag (the common case): current tags scoring at least min whose photo has no label for
# the tag, plus the photos people labeled with it (score 1.0). The labeled photos are read
# once (an InitPlan array), which keeps the scan a plain filter: best-first then walks the
# (lower(tag), score) index in order and stops after the page.
_MODEL_MATCH = """
    FROM tags t JOIN photos p ON p.photo_id = t.photo_id AND p.model_version = t.model_version
    WHERE lower(t.tag) = %(tag)s AND t.score >= %(min)s
      AND NOT t.photo_id = ANY(ARRAY(SELECT l.photo_id FROM labels l
                                     WHERE lower(l.tag) = %(tag)s))
"""
_LABEL_MATCH = """
    FROM labels l JOIN photos p ON p.photo_id = l.photo_id
    WHERE l.positive AND lower(l.tag) = %(tag)s
"""
_ONE_TAG_BEST = f"""
SELECT * FROM (
    (SELECT t.photo_id, t.score, p.source, p.uploaded_at {_MODEL_MATCH}
     ORDER BY t.score DESC, t.photo_id LIMIT %(lim)s + %(off)s)
    UNION ALL
    (SELECT l.photo_id, 1.0, p.source, p.uploaded_at {_LABEL_MATCH})
) h
ORDER BY h.score DESC, h.photo_id
LIMIT %(lim)s OFFSET %(off)s
"""
# Newest first for a tag on few photos: all its matches, sorted.
_ONE_TAG_SPARSE_NEWEST = f"""
SELECT * FROM (
    SELECT t.photo_id, t.score, p.source, p.uploaded_at {_MODEL_MATCH}
    UNION ALL
    SELECT l.photo_id, 1.0, p.source, p.uploaded_at {_LABEL_MATCH}
) h
ORDER BY h.uploaded_at DESC, h.photo_id
LIMIT %(lim)s OFFSET %(off)s
"""
_ONE_TAG_COUNT = f"""
SELECT (SELECT count(*) FROM (SELECT 1 {_MODEL_MATCH} LIMIT {{cap}}) m)
     + (SELECT count(*) {_LABEL_MATCH})
"""

# Newest first for a tag on many photos: walk photos newest-first, keep those that match.
_ONE_TAG_DENSE_NEWEST = """
SELECT p.photo_id,
       CASE WHEN lab.positive THEN 1.0 ELSE t.score END AS score, p.source, p.uploaded_at
FROM photos p
LEFT JOIN LATERAL (
    SELECT max(t.score) AS score FROM tags t
    WHERE t.photo_id = p.photo_id AND t.model_version = p.model_version
      AND lower(t.tag) = %(tag)s AND t.score >= %(min)s
) t ON true
LEFT JOIN LATERAL (
    SELECT bool_or(l.positive) AS positive FROM labels l
    WHERE l.photo_id = p.photo_id AND lower(l.tag) = %(tag)s
) lab ON true
WHERE CASE WHEN lab.positive IS NULL THEN t.score IS NOT NULL ELSE lab.positive END
ORDER BY p.uploaded_at DESC, p.photo_id
LIMIT %(lim)s OFFSET %(off)s
"""

# Several tags (AND): a photo matches when each wanted tag is a current tag scoring at least
# min, or a positive label (1.0), and no wanted tag carries a negative label; its score is
# its weakest wanted tag's.
_ALL_TAGS = """
WITH per_tag AS (
    SELECT m.photo_id, m.tag, max(m.score) AS score FROM (
        SELECT t.photo_id, lower(t.tag) AS tag, t.score
        FROM tags t JOIN photos p
          ON p.photo_id = t.photo_id AND p.model_version = t.model_version
        WHERE lower(t.tag) = ANY(%(tags)s::text[]) AND t.score >= %(min)s
        UNION ALL
        SELECT l.photo_id, lower(l.tag), 1.0 FROM labels l
        WHERE l.positive AND lower(l.tag) = ANY(%(tags)s::text[])
    ) m
    WHERE NOT EXISTS (
        SELECT 1 FROM labels n
        WHERE n.photo_id = m.photo_id AND lower(n.tag) = m.tag AND NOT n.positive
    )
    GROUP BY m.photo_id, m.tag
), hits AS (
    SELECT photo_id, min(score) AS score FROM per_tag
    GROUP BY photo_id HAVING count(*) = %(n)s
)
SELECT h.photo_id, h.score, p.source, p.uploaded_at
FROM hits h JOIN photos p USING (photo_id)
ORDER BY {order}
LIMIT %(lim)s OFFSET %(off)s
"""
_ALL_ORDERS = {"score": "h.score DESC, h.photo_id", "newest": "p.uploaded_at DESC, h.photo_id"}


@dataclass(frozen=True)
class SearchPage:
    """One page of a search: hits (photo_id, score, source, uploaded_at) and the total,
    counted up to COUNT_CAP (``capped`` when there are more)."""

    tags: list[str]
    hits: list[dict[str, Any]]
    total: int
    offset: int
    capped: bool = False

    @property
    def more(self) -> bool:
        return self.capped or self.offset + len(self.hits) < self.total

    def as_dict(self) -> dict[str, Any]:
        return {
            "tags": self.tags,
            "total": self.total,
            "total_capped": self.capped,
            "offset": self.offset,
            "more": self.more,
            "results": self.hits,
        }


def search_sql(order: str, n_tags: int, total: int = 0) -> str:
    """The search's SQL for an order, a number of tags and the (capped) match count
    (bench/web_search.py prints its plan)."""
    if order not in SEARCH_ORDERS:
        raise ValueError(f"order must be one of {', '.join(SEARCH_ORDERS)}")
    if n_tags > 1:
        return _ALL_TAGS.format(order=_ALL_ORDERS[order])
    if order == "score":
        return _ONE_TAG_BEST
    return _ONE_TAG_DENSE_NEWEST if total > DENSE_TAG else _ONE_TAG_SPARSE_NEWEST


def count_sql(n_tags: int) -> str:
    """Matches, counted up to COUNT_CAP + 1 (one tag) or all of them (several)."""
    if n_tags == 1:
        return _ONE_TAG_COUNT.format(cap=COUNT_CAP + 1)
    inner = _ALL_TAGS.rsplit("ORDER BY", 1)[0]
    return f"SELECT count(*) FROM ({inner} LIMIT {COUNT_CAP + 1}) c"


def search_params(tags: list[str], min_score: float) -> dict[str, Any]:
    wanted = sorted({t.strip().lower() for t in tags if t.strip()})
    return {"tags": wanted, "tag": wanted[0] if wanted else "", "n": len(wanted), "min": min_score}


def search_all(
    conn: psycopg.Connection[Any],
    tags: list[str],
    min_score: float = 0.0,
    *,
    order: str = "score",
    limit: int = 48,
    offset: int = 0,
) -> SearchPage:
    """Photos carrying every one of ``tags`` (case-insensitive, whole tags), one page.

    People's labels count: a tag removed from a photo no longer finds it, a tag added does.
    """
    params = search_params(tags, float(min_score))
    if not params["tags"]:
        return SearchPage([], [], 0, offset)
    n = params["n"]
    row = conn.execute(count_sql(n), params).fetchone()
    total = int(row[0]) if row else 0
    capped = total > COUNT_CAP
    sql = search_sql(order, n, total)
    rows = conn.execute(sql, {**params, "lim": int(limit), "off": int(offset)}).fetchall()
    hits = [
        {
            "photo_id": pid,
            "score": round(float(score), 6),
            "source": source,
            "uploaded_at": uploaded.isoformat() if uploaded else None,
        }
        for pid, score, source, uploaded in rows
    ]
    return SearchPage(params["tags"], hits, min(total, COUNT_CAP), offset, capped)


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
