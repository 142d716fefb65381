"""One page of a search for the web page and the HTTP API: terms in, photos out, paged.

A search is a list of terms (``autotag.storage.terms``), all required; a term names one or
more tags, each with how it was reached (exact, plural, synonym, word). A photo matches a
term when one of those tags is a current tag scoring at least ``min_score`` that nobody
removed, or a tag a person added (a positive label, score 1.0). Photos rank by their worst
match, then by their weakest term's score (best first), or newest first.

Two shapes of SQL, chosen by what the index can do:

- one term naming one tag (the common search): walk the ``(lower(tag), score)`` index best
  first and stop after the page; newest first walks photos newest-first when the tag is on
  many photos, or sorts its few matches;
- anything else: each term's rows from the covering ``(lower(tag), photo_id, model_version)
  INCLUDE (score)`` index (an index-only scan, no heap visits), hash-joined on the photo,
  checked against the photo's current model version, one row per photo, then ordered; the
  total is counted in the same pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from autotag.storage.terms import MATCHES, Term

ORDERS = ("score", "newest")
# Totals are counted up to this many; past it the page says "1,000+".
COUNT_CAP = 1_000
# A tag on more photos than this is searched newest-first by walking photos newest-first
# (matches are dense); a rarer one by sorting its matches (they are few).
DENSE_TAG = 500

# -- one term, one tag ------------------------------------------------------------------------
# Current tags scoring at least min whose photo has no label for the tag, plus the photos
# people labeled with it (score 1.0). The labeled photos are read once (an InitPlan array),
# which keeps the scan a plain filter: best-first then walks the (lower(tag), score) index in
# order and stops after the page.
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
ORDER BY p.uploaded_at DESC, p.photo_id
LIMIT %(lim)s OFFSET %(off)s
"""

# -- several terms, or a term naming several tags ----------------------------------------------
# A term's rows: its tags under any model version (checked against the photo's below) that
# nobody labeled, and its positive labels (no model version: they always count).
_TERM_ROWS = """(
    SELECT t.photo_id, t.model_version AS mv, t.score, lower(t.tag) AS tag FROM tags t
    WHERE lower(t.tag) = ANY(%(a{i})s::text[]) AND t.score >= %(min)s
      AND NOT (t.photo_id || ':' || lower(t.tag)) = ANY(ARRAY(
          SELECT l.photo_id || ':' || lower(l.tag) FROM labels l
          WHERE lower(l.tag) = ANY(%(a{i})s::text[])))
    UNION ALL
    SELECT l.photo_id, NULL, 1.0::real, lower(l.tag) FROM labels l
    WHERE l.positive AND lower(l.tag) = ANY(%(a{i})s::text[])
) m{i}"""
_RANK = "(%(r{i})s::int[])[array_position(%(a{i})s::text[], m{i}.tag)]"
_TERMS = """
SELECT h.*, count(*) OVER () AS total FROM (
    SELECT DISTINCT ON (p.photo_id) p.photo_id, p.source, p.uploaded_at, p.model_version,
           {cols}, GREATEST({ranks}) AS worst, LEAST({scores}) AS weakest
    FROM {rows}
    JOIN photos p ON p.photo_id = m0.photo_id
    WHERE {current}
    ORDER BY p.photo_id, worst, weakest DESC
) h
ORDER BY {order}
LIMIT %(lim)s OFFSET %(off)s
"""
_TERMS_ORDERS = {
    "score": "h.worst, h.weakest DESC, h.photo_id",
    "newest": "h.uploaded_at DESC, h.photo_id",
}


def _terms_sql(n_terms: int, order: str) -> str:
    each = range(n_terms)
    rows = _TERM_ROWS.replace("{i}", "0") + "".join(
        f"\n    JOIN {_TERM_ROWS.replace('{i}', str(i))} ON m{i}.photo_id = m0.photo_id"
        for i in each
        if i
    )
    return _TERMS.format(
        cols=", ".join(f"m{i}.tag AS tag{i}, m{i}.score AS score{i}" for i in each)
        + ", "
        + ", ".join(f"{_RANK.replace('{i}', str(i))} AS rank{i}" for i in each),
        ranks=", ".join(_RANK.replace("{i}", str(i)) for i in each),
        scores=", ".join(f"m{i}.score" for i in each),
        rows=rows,
        current=" AND ".join(f"(m{i}.mv IS NULL OR m{i}.mv = p.model_version)" for i in each),
        order=_TERMS_ORDERS[order],
    )


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
    """The page query for these terms (bench/web_search.py prints its plan)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}")
    if len(terms) == 1 and len(names(terms[0])) == 1:
        if order == "score":
            return _ONE_TAG_BEST
        return _ONE_TAG_DENSE_NEWEST if total > DENSE_TAG else _ONE_TAG_SPARSE_NEWEST
    return _terms_sql(len(terms), order)


def params_for(terms: Sequence[Term], min_score: float) -> dict[str, Any]:
    params: dict[str, Any] = {"min": float(min_score)}
    for i, term in enumerate(terms):
        named = names(term)
        params[f"a{i}"] = list(named)
        params[f"r{i}"] = [MATCHES.index(how) for how in named.values()]
    if terms:
        params["tag"] = terms[0].text
    return params


def search_page(
    conn: psycopg.Connection[Any],
    terms: Sequence[Term],
    min_score: float = 0.0,
    *,
    order: str = "score",
    limit: int = 48,
    offset: int = 0,
) -> SearchPage:
    """Photos matching every term, one page (see the module docstring)."""
    terms = list(terms)
    if not terms:
        return SearchPage([], [], 0, offset)
    params = {**params_for(terms, min_score), "lim": int(limit), "off": int(offset)}
    single = len(terms) == 1 and len(names(terms[0])) == 1
    if single:
        row = conn.execute(ONE_TAG_COUNT, params).fetchone()
        total = int(row[0]) if row else 0
        rows = conn.execute(sql_for(terms, order, total), params).fetchall()
        matched = [
            (pid, src, at, mv, [(terms[0].text, score, 0)]) for pid, score, src, at, mv in rows
        ]
    else:
        rows = conn.execute(sql_for(terms, order), params).fetchall()
        n = len(terms)
        total = int(rows[0][-1]) if rows else 0
        if not rows and offset:
            row = conn.execute(
                f"SELECT count(*) FROM ({sql_for(terms, order).rsplit('ORDER BY', 1)[0]}) c",
                {**params, "lim": None, "off": 0},
            ).fetchone()
            total = int(row[0]) if row else 0
        matched = [
            (
                r[0],
                r[1],
                r[2],
                r[3],
                [(r[4 + 2 * i], r[5 + 2 * i], r[4 + 2 * n + i]) for i in range(n)],
            )
            for r in rows
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
    per_term: list[tuple[str, float, int]],
    kinds: dict[tuple[str, str], tuple],
) -> dict[str, Any]:
    """One result: the photo, its weakest term's score, and why it matched each term."""
    matches = []
    for term, (tag, score, _rank) in zip(terms, per_term, strict=True):
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
