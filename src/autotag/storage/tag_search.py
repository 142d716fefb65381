"""Tag search, the one query: typed words (or whole tags) in, one page of photos out.

``autotag search``, the HTTP API (``/search``, ``/tags/<words>``) and the web page's search
box all call ``search``, so the same words find the same photos in the same order everywhere.

A search is a list of terms (``autotag.storage.terms``), all required; a term names one or
more tags, each with how it was reached (exact, plural, synonym, word). A photo matches a
term when one of those tags is a current tag scoring at least ``min_score`` that nobody
removed, or a tag a person added (a positive label, score 1.0). Photos rank by their worst
match, then by their weakest term's score (best first), or newest first.

The SQL is chosen by what the indexes can do: a page of 48 should cost a walk that stops
after the page where an order allows one, and index entries rather than table rows where it
does not:

- best first, one term: walk each of its tags' ``(lower(tag), score)`` index entries best
  first, stop after the page, keep each photo's best match (one tag: no dedup at all);
- newest first with many matches (more than DENSE_TAG): walk photos newest first and probe
  each term's tags for the photo by its primary key; stop after the page;
- several terms best first, or few matches newest first: each term's rows from the covering
  ``(lower(tag), photo_id) INCLUDE (model_version, score, tag)`` index alone (index-only
  scans), joined on (photo, model version) with the photo's current one, then a top-N sort;
- the total: the same join stopped at COUNT_CAP + 1 rows ("1,000+").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import psycopg

from autotag.storage.terms import MATCHES, Term, parse_query, with_word_matches

# score: best first; newest: uploaded last first; taken: taken last first (no date: last).
ORDERS = ("score", "newest", "taken")
# Totals are counted up to this many; past it the page says "1,000+".
COUNT_CAP = 1_000
# A tag on more photos than this is searched newest-first by walking photos newest-first
# (matches are dense); a rarer one by sorting its matches (they are few).
DENSE_TAG = 500

# The date-taken range (``TagQuery.taken_from`` / ``taken_to``, on the wall-clock date the
# photo was taken): with neither given both tests are constant-true and the plan drops them.
WHEN = (
    "(%(from)s::timestamp IS NULL OR p.taken_local >= %(from)s::timestamp)"
    " AND (%(to)s::timestamp IS NULL OR p.taken_local < %(to)s::timestamp)"
)

# -- one term, one tag ------------------------------------------------------------------------
# Current tags scoring at least min whose photo has no label for the tag, plus the photos
# people labeled with it (score 1.0). The labeled photos are read once (an InitPlan array),
# which keeps the scan a plain filter: best-first then walks the (lower(tag), score) index in
# order and stops after the page.
_MODEL_MATCH = """
    FROM tags t JOIN photos p ON p.photo_id = t.photo_id AND p.model_version = t.model_version
    WHERE lower(t.tag) = %(tag)s AND t.score >= %(min)s AND {WHEN}
      AND NOT t.photo_id = ANY(ARRAY(SELECT l.photo_id FROM labels l
                                     WHERE lower(l.tag) = %(tag)s))
""".replace("{WHEN}", WHEN)
_LABEL_MATCH = """
    FROM labels l JOIN photos p ON p.photo_id = l.photo_id
    WHERE l.positive AND lower(l.tag) = %(tag)s AND {WHEN}
""".replace("{WHEN}", WHEN)
_ONE_TAG_BEST = f"""
SELECT * FROM (
    (SELECT t.photo_id, t.score, p.source, p.uploaded_at, p.model_version {_MODEL_MATCH}
     ORDER BY t.score DESC, t.photo_id LIMIT %(lim)s + %(off)s)
    UNION ALL
    (SELECT l.photo_id, 1.0, p.source, p.uploaded_at, p.model_version {_LABEL_MATCH})
) h
ORDER BY h.score DESC, h.photo_id
LIMIT %(lim)s OFFSET %(off)s
"""
# Newest first for a tag on few photos: all its matches, sorted.
_ONE_TAG_SPARSE_NEWEST = f"""
SELECT * FROM (
    SELECT t.photo_id, t.score, p.source, p.uploaded_at, p.model_version {_MODEL_MATCH}
    UNION ALL
    SELECT l.photo_id, 1.0, p.source, p.uploaded_at, p.model_version {_LABEL_MATCH}
) h
ORDER BY h.uploaded_at DESC, h.photo_id
LIMIT %(lim)s OFFSET %(off)s
"""
_ONE_TAG_TAKEN = f"""
SELECT photo_id, score, source, uploaded_at, model_version FROM (
    SELECT t.photo_id, t.score, p.source, p.uploaded_at, p.model_version, p.taken_local
    {_MODEL_MATCH}
    UNION ALL
    SELECT l.photo_id, 1.0, p.source, p.uploaded_at, p.model_version, p.taken_local
    {_LABEL_MATCH}
) h
ORDER BY h.taken_local DESC NULLS LAST, h.uploaded_at DESC, h.photo_id
LIMIT %(lim)s OFFSET %(off)s
"""
ONE_TAG_COUNT = f"""
SELECT (SELECT count(*) FROM (SELECT 1 {_MODEL_MATCH} LIMIT {COUNT_CAP + 1}) m)
     + (SELECT count(*) {_LABEL_MATCH})
"""
# Newest first for a tag on many photos: walk photos newest-first, keep those that match.
_ONE_TAG_DENSE_NEWEST = """
SELECT p.photo_id,
       CASE WHEN lab.positive THEN 1.0 ELSE t.score END AS score, p.source, p.uploaded_at,
       p.model_version
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
  AND {WHEN}
ORDER BY p.uploaded_at DESC, p.photo_id
LIMIT %(lim)s OFFSET %(off)s
""".replace("{WHEN}", WHEN)

# -- one term naming several tags, best first ------------------------------------------------
# Each tag's best (lim + off) rows walked from the (lower(tag), score) index as above, plus the
# term's positive labels; one row per photo (its best match). A photo in the page's top rows
# is among its own tag's top rows, so the walk loses none.
_NAME_BEST = """
    (SELECT t.photo_id, p.source, p.uploaded_at, p.model_version, lower(t.tag) AS tag,
            t.score, %(k0_{j})s AS rank
     FROM tags t JOIN photos p ON p.photo_id = t.photo_id AND p.model_version = t.model_version
     WHERE lower(t.tag) = %(n0_{j})s AND t.score >= %(min)s AND {WHEN}
       AND NOT t.photo_id = ANY(ARRAY(SELECT l.photo_id FROM labels l
                                      WHERE lower(l.tag) = %(n0_{j})s))
     ORDER BY t.score DESC, t.photo_id LIMIT %(lim)s + %(off)s)""".replace("{WHEN}", WHEN)
_RANK = "(%(r{i})s::int[])[array_position(%(a{i})s::text[], {tag})]"
_ONE_TERM_BEST = """
SELECT h.photo_id, h.source, h.uploaded_at, h.model_version, h.tag, h.score, h.rank FROM (
    SELECT DISTINCT ON (u.photo_id) u.* FROM ({walks}
        UNION ALL
        (SELECT l.photo_id, p.source, p.uploaded_at, p.model_version, lower(l.tag),
                1.0::real, {label_rank}
         FROM labels l JOIN photos p ON p.photo_id = l.photo_id
         WHERE l.positive AND lower(l.tag) = ANY(%(a0)s::text[]) AND {WHEN})
    ) u
    ORDER BY u.photo_id, u.rank, u.score DESC
) h
ORDER BY h.rank, h.score DESC, h.photo_id
LIMIT %(lim)s OFFSET %(off)s
""".replace("{WHEN}", WHEN)

# -- several terms (AND) ------------------------------------------------------------------------
# A term's rows: for each of its tags, the rows scoring at least min that nobody labeled, read
# in photo order from the covering (lower(tag), photo_id) INCLUDE (model_version, score, tag)
# index alone; and its positive labels (under the photo's current model version). One row per
# photo and model version when the term names several tags. The terms are joined on the photo
# (in photo order: a merge join, which the count stops early) and checked against the photo's
# current model version.
_NAME_ROWS = """
    SELECT t.photo_id, t.model_version AS mv, t.score, lower(t.tag) AS tag, %(k{i}_{j})s AS rank
    FROM tags t
    WHERE lower(t.tag) = %(n{i}_{j})s AND t.score >= %(min)s
      AND NOT t.photo_id = ANY(ARRAY(SELECT l.photo_id FROM labels l
                                     WHERE lower(l.tag) = %(n{i}_{j})s))"""
_LABEL_ROWS = """
    SELECT l.photo_id, lp.model_version, 1.0::real, lower(l.tag), {label_rank}
    FROM labels l JOIN photos lp ON lp.photo_id = l.photo_id
    WHERE l.positive AND lower(l.tag) = ANY(%(a{i})s::text[])"""
_JOIN = """
    FROM {rows}
    JOIN photos p ON p.photo_id = m0.photo_id
    WHERE {current} AND {WHEN}""".replace("{WHEN}", WHEN)
_SELECT = "SELECT p.photo_id, p.source, p.uploaded_at, p.model_version, {cols}"
_JOIN_ORDERS = {
    "score": "GREATEST({ranks}), LEAST({scores}) DESC, p.photo_id",
    "newest": "p.uploaded_at DESC, p.photo_id",
    "taken": "p.taken_local DESC NULLS LAST, p.uploaded_at DESC, p.photo_id",
}
# Newest first when matches are many: walk photos newest-first, each term's best match by
# the photo's own rows (primary-key probes), and stop after the page.
_TERM_PROBE = """
CROSS JOIN LATERAL (
    SELECT x.tag, x.score, x.rank FROM (
        SELECT lower(t.tag) AS tag, t.score, {rank} AS rank FROM tags t
        WHERE t.photo_id = p.photo_id AND t.model_version = p.model_version
          AND lower(t.tag) = ANY(%(a{i})s::text[]) AND t.score >= %(min)s
          AND NOT EXISTS (SELECT 1 FROM labels l
                          WHERE l.photo_id = t.photo_id AND lower(l.tag) = lower(t.tag))
        UNION ALL
        SELECT lower(l.tag), 1.0::real, {label_rank} FROM labels l
        WHERE l.photo_id = p.photo_id AND l.positive AND lower(l.tag) = ANY(%(a{i})s::text[])
    ) x
    ORDER BY x.rank, x.score DESC LIMIT 1
) m{i}"""


def _rank(i: int, tag: str) -> str:
    return _RANK.replace("{i}", str(i)).replace("{tag}", tag)


def _cols(n_terms: int) -> str:
    return ", ".join(f"m{i}.tag, m{i}.score, m{i}.rank" for i in range(n_terms))


def _term_rows(i: int, term: Term) -> str:
    branches = [
        _NAME_ROWS.replace("{i}", str(i)).replace("{j}", str(j)) for j in range(len(names(term)))
    ]
    branches.append(_LABEL_ROWS.replace("{label_rank}", _rank(i, "lower(l.tag)")))
    rows = "\n    UNION ALL".join(branches).replace("{i}", str(i))
    if len(branches) > 2:  # several tags: one row per photo and model version, its best
        rows = (
            f"SELECT DISTINCT ON (x.photo_id, x.mv) x.* FROM ({rows}\n    ) x"
            "\n    ORDER BY x.photo_id, x.mv, x.rank, x.score DESC"
        )
    return f"({rows}\n) m{i}"


def _join(terms: Sequence[Term]) -> str:
    rows = _term_rows(0, terms[0])
    for i, term in enumerate(terms[1:], 1):
        rows += f"\n    JOIN {_term_rows(i, term)} ON m{i}.photo_id = m0.photo_id"
    current = " AND ".join(f"m{i}.mv = p.model_version" for i in range(len(terms)))
    return _JOIN.format(rows=rows, current=current)


def _join_sql(terms: Sequence[Term], order: str) -> str:
    each = range(len(terms))
    by = _JOIN_ORDERS[order].format(
        ranks=", ".join(f"m{i}.rank" for i in each),
        scores=", ".join(f"m{i}.score" for i in each),
    )
    return (
        _SELECT.format(cols=_cols(len(terms)))
        + _join(terms)
        + f"\nORDER BY {by}\nLIMIT %(lim)s OFFSET %(off)s\n"
    )


def _walk_newest_sql(terms: Sequence[Term]) -> str:
    probes = "".join(
        _TERM_PROBE.replace("{rank}", _rank(i, "lower(t.tag)"))
        .replace("{label_rank}", _rank(i, "lower(l.tag)"))
        .replace("{i}", str(i))
        for i in range(len(terms))
    )
    return (
        _SELECT.format(cols=_cols(len(terms)))
        + f"\nFROM photos p{probes}\nWHERE {WHEN}\n"
        + "ORDER BY p.uploaded_at DESC, p.photo_id\nLIMIT %(lim)s OFFSET %(off)s\n"
    )


def _one_term_best_sql(term: Term) -> str:
    walks = "\n        UNION ALL".join(
        _NAME_BEST.replace("{j}", str(j)) for j in range(len(names(term)))
    )
    return _ONE_TERM_BEST.format(walks=walks, label_rank=_rank(0, "lower(l.tag)"))


def count_sql(terms: Sequence[Term]) -> str:
    """Matches, counted up to COUNT_CAP + 1 (bench/web_search.py prints its plan)."""
    if _single(terms):
        return ONE_TAG_COUNT
    return f"SELECT count(*) FROM (SELECT 1{_join(terms)}\n    LIMIT {COUNT_CAP + 1}) c"


def _single(terms: Sequence[Term]) -> bool:
    return len(terms) == 1 and len(names(terms[0])) == 1


@dataclass(frozen=True)
class SearchPage:
    """One page of a search: hits and the total, counted up to COUNT_CAP (``capped`` when
    there are more)."""

    terms: list[Term]
    hits: list[dict[str, Any]]
    total: int
    offset: int
    capped: bool = False

    @property
    def tags(self) -> list[str]:
        """The terms as typed."""
        return [t.text for t in self.terms]

    @property
    def named(self) -> list[tuple[str, dict[str, str]]]:
        """Each term as typed, with the tags it names and how."""
        return [(t.text, names(t)) for t in self.terms]

    @property
    def more(self) -> bool:
        return self.capped or self.offset + len(self.hits) < self.total

    def as_dict(self) -> dict[str, Any]:
        return {
            "tags": self.tags,
            "terms": [{"text": text, "tags": named} for text, named in self.named],
            "total": self.total,
            "total_capped": self.capped,
            "offset": self.offset,
            "more": self.more,
            "results": self.hits,
        }


def names(term: Term) -> dict[str, str]:
    """The tags a term names, with how: the text itself always (exact), then the rest."""
    return {term.text: "exact", **{k: v for k, v in term.tags.items() if k != term.text}}


def exact_terms(tags: Sequence[str]) -> list[Term]:
    """Whole tags as given (any case), each a term of its own: the API's ``tag=``."""
    wanted = sorted({" ".join(t.lower().split()) for t in tags} - {""})
    return [Term(t, {t: "exact"}) for t in wanted]


def sql_for(terms: Sequence[Term], order: str, total: int = 0) -> str:
    """The page query for these terms, given their (capped) match count
    (bench/web_search.py prints its plan)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}")
    if order == "newest" and total > DENSE_TAG:
        return _ONE_TAG_DENSE_NEWEST if _single(terms) else _walk_newest_sql(terms)
    if _single(terms):
        if order == "taken":
            return _ONE_TAG_TAKEN
        return _ONE_TAG_BEST if order == "score" else _ONE_TAG_SPARSE_NEWEST
    if order == "score" and len(terms) == 1:
        return _one_term_best_sql(terms[0])
    return _join_sql(terms, order)


def params_for(terms: Sequence[Term], min_score: float) -> dict[str, Any]:
    params: dict[str, Any] = {"min": float(min_score)}
    for i, term in enumerate(terms):
        named = names(term)
        params[f"a{i}"] = list(named)
        params[f"r{i}"] = [MATCHES.index(how) for how in named.values()]
        for j, (tag, how) in enumerate(named.items()):
            params[f"n{i}_{j}"], params[f"k{i}_{j}"] = tag, MATCHES.index(how)
    if terms:
        params["tag"] = terms[0].text
    return params


@dataclass(frozen=True)
class TagQuery:
    """What a user asks for: typed words (``text``: plurals, synonyms, concepts, words of
    longer tags, several words = AND) and/or whole tags (``tags``: each required as given),
    a minimum score, an order, and a page. ``words=False``: whole-tag matches only."""

    text: str = ""
    tags: Sequence[str] = field(default_factory=tuple)
    min_score: float = 0.0
    order: str = "score"
    limit: int = 48
    offset: int = 0
    words: bool = True
    # Photos taken on or after ``taken_from`` and on or before ``taken_to`` (whole days, the
    # wall-clock date taken from the file); a photo without a date taken is then left out.
    taken_from: date | None = None
    taken_to: date | None = None

    def terms(
        self, vocabulary: Mapping[str, Sequence[str]] | None, known_tags: Sequence[str]
    ) -> list[Term]:
        """The terms this query requires: whole tags first, then the typed words read
        through the vocabulary and, unless ``words=False``, the known tags' words."""
        terms = exact_terms(self.tags)
        if self.text.strip():
            typed = parse_query(self.text, vocabulary)
            word_of = getattr(vocabulary, "word_of", None)  # vision's SearchVocabulary
            terms += with_word_matches(typed, known_tags, word_of) if self.words else typed
        return terms


def known_tags(conn: psycopg.Connection[Any]) -> list[str]:
    """Every current tag (lower-case): what a typed word may be a word of."""
    rows = conn.execute(
        """
        SELECT DISTINCT lower(t.tag) FROM tags t JOIN photos p
          ON p.photo_id = t.photo_id AND p.model_version = t.model_version
        """
    ).fetchall()
    return [r[0] for r in rows]


def search(
    conn: psycopg.Connection[Any],
    query: TagQuery,
    vocabulary: Mapping[str, Sequence[str]] | None = None,
    tags_known: Sequence[str] | None = None,
) -> SearchPage:
    """One page of photos matching ``query``: the CLI, the API and the web page all come
    here. ``tags_known`` (every current tag) may come from a caller's cache; it is read
    from the database otherwise."""
    if tags_known is None and query.words and query.text.strip():
        tags_known = known_tags(conn)
    terms = query.terms(vocabulary, tags_known or ())
    when = when_params(query.taken_from, query.taken_to)
    if not terms and (query.taken_from or query.taken_to):
        return taken_page(conn, when, limit=query.limit, offset=query.offset)
    return search_page(
        conn,
        terms,
        query.min_score,
        order=query.order,
        limit=query.limit,
        offset=query.offset,
        when=when,
    )


def when_params(taken_from: date | None, taken_to: date | None) -> dict[str, Any]:
    """The ``from``/``to`` parameters of WHEN: [from 00:00, the day after ``to`` 00:00)."""
    start = datetime.combine(taken_from, datetime.min.time()) if taken_from else None
    end = datetime.combine(taken_to, datetime.min.time()) + timedelta(days=1) if taken_to else None
    return {"from": start, "to": end}


_TAKEN_PAGE = f"""
SELECT p.photo_id, p.source, p.uploaded_at, p.model_version, p.taken_local FROM photos p
WHERE p.taken_local IS NOT NULL AND p.status = 'tagged' AND {WHEN}
ORDER BY p.taken_local DESC, p.photo_id
LIMIT %(lim)s OFFSET %(off)s
"""
_TAKEN_COUNT = f"""
SELECT count(*) FROM (SELECT 1 FROM photos p
    WHERE p.taken_local IS NOT NULL AND p.status = 'tagged' AND {WHEN} LIMIT {COUNT_CAP + 1}) c
"""


def taken_page(
    conn: psycopg.Connection[Any], when: dict[str, Any], *, limit: int = 48, offset: int = 0
) -> SearchPage:
    """Photos taken within a date range, newest taken first (a search with dates only)."""
    params = {**when, "lim": int(limit), "off": int(offset)}
    row = conn.execute(_TAKEN_COUNT, params).fetchone()
    total = int(row[0]) if row else 0
    hits = [
        {
            "photo_id": pid,
            "score": 1.0,
            "tag": None,
            "match": "date",
            "kind": None,
            "via": None,
            "source": source,
            "model_version": mv,
            "uploaded_at": uploaded.isoformat() if uploaded else None,
            "taken_local": taken.isoformat() if taken else None,
            "matches": [],
        }
        for pid, source, uploaded, mv, taken in conn.execute(_TAKEN_PAGE, params).fetchall()
    ]
    return SearchPage([], hits, min(total, COUNT_CAP), offset, total > COUNT_CAP)


def search_page(
    conn: psycopg.Connection[Any],
    terms: Sequence[Term],
    min_score: float = 0.0,
    *,
    order: str = "score",
    limit: int = 48,
    offset: int = 0,
    when: dict[str, Any] | None = None,
) -> SearchPage:
    """Photos matching every term, one page (see the module docstring); ``when``: the
    date-taken range (``when_params``)."""
    terms = list(terms)
    if not terms:
        return SearchPage([], [], 0, offset)
    params = {
        **params_for(terms, min_score),
        **(when or when_params(None, None)),
        "lim": int(limit),
        "off": int(offset),
    }
    row = conn.execute(count_sql(terms), params).fetchone()
    total = int(row[0]) if row else 0
    rows = conn.execute(sql_for(terms, order, total), params).fetchall()
    if _single(terms):
        matched = [(pid, src, at, mv, [(terms[0].text, score)]) for pid, score, src, at, mv in rows]
    else:
        n = len(terms)
        matched = [
            (r[0], r[1], r[2], r[3], [(r[4 + 3 * i], r[5 + 3 * i]) for i in range(n)]) for r in rows
        ]
    kinds = _kinds(conn, [m[0] for m in matched])
    hits = [_hit(terms, pid, src, at, mv, per, kinds) for pid, src, at, mv, per in matched]
    return SearchPage(terms, hits, min(total, COUNT_CAP), offset, total > COUNT_CAP)


def _kinds(conn: psycopg.Connection[Any], ids: list[str]) -> dict[tuple[str, str], tuple]:
    """(photo, tag) -> (kind, via) of the page's photos' current tags."""
    if not ids:
        return {}
    rows = conn.execute(
        """
        SELECT t.photo_id, lower(t.tag), t.kind, t.via FROM tags t JOIN photos p
          ON p.photo_id = t.photo_id AND p.model_version = t.model_version
        WHERE t.photo_id = ANY(%s)
        """,
        (ids,),
    ).fetchall()
    return {(pid, tag): (kind, via) for pid, tag, kind, via in rows}


def _hit(
    terms: Sequence[Term],
    pid: str,
    source: str | None,
    uploaded: Any,
    model_version: str | None,
    per_term: list[tuple[str, float]],
    kinds: dict[tuple[str, str], tuple],
) -> dict[str, Any]:
    """One result: the photo, its weakest term's score, and why it matched each term."""
    matches = []
    for term, (tag, score) in zip(terms, per_term, strict=True):
        kind, via = kinds.get((pid, tag), ("label", None))
        how = names(term).get(tag, "exact")
        matches.append(
            {
                "term": term.text,
                "tag": tag,
                "score": round(float(score), 6),
                "match": how,
                "kind": kind,
                "via": via,
            }
        )
    worst = min(matches, key=lambda m: (-MATCHES.index(m["match"]), m["score"]))
    return {
        "photo_id": pid,
        "score": min(m["score"] for m in matches),  # the weakest term's, as it is ranked
        "tag": worst["tag"],
        "match": worst["match"],
        "kind": worst["kind"],
        "via": worst["via"],
        "source": source,
        "model_version": model_version,
        "uploaded_at": uploaded.isoformat() if uploaded else None,
        "matches": matches,
    }
