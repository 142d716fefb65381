"""Learned tags in Postgres: the labels the learner reads, what it made of each tag
(``learned_tags``), and the learned tags it writes on stored photos (``tags`` rows of kind
``learned``).

A learned tag re-scored from a stored vector is written under the photo's current
``model_version`` (so every lookup and search sees it at once, with no re-tagging) and with
``via`` = the bundle that learned it; the same tag given by the topology to a new upload
carries the bundle's id as its model_version, like every tag.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import psycopg

from autotag.storage.vectors import vector_cursor

# pg_try_advisory_lock key: one learner at a time across processes and hosts.
_LOCK_KEY = 0x6C6561726E  # "learn"


@dataclass(frozen=True)
class LabelStats:
    tag: str
    n_pos: int
    n_neg: int
    signature: str  # changes whenever the tag's labels change


@dataclass(frozen=True)
class LearnedState:
    tag: str
    status: str  # learned | not-yet | refused | asking
    message: str
    bundle_id: str | None
    n_pos: int
    n_neg: int
    precision: float | None
    recall: float | None
    threshold: float | None
    labels_seen: str
    learned_at: datetime
    phase: str | None = None  # asking: 'near' | 'spot'
    questions: tuple[str, ...] = ()  # asking: the photos asked in this phase

    def as_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "status": self.status,
            "message": self.message,
            "bundle_id": self.bundle_id,
            "examples": {"positive": self.n_pos, "negative": self.n_neg},
            "precision": self.precision,
            "recall": self.recall,
            "threshold": self.threshold,
            "learned_at": self.learned_at.isoformat(),
            "phase": self.phase,
            "questions": list(self.questions),
        }


def try_lock(conn: psycopg.Connection[Any]) -> bool:
    """Take the learner's session lock; False if another learner holds it."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()
    return bool(row and row[0])


def unlock(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def label_stats(conn: psycopg.Connection[Any]) -> dict[str, LabelStats]:
    """Every labelled tag: positives, negatives and a signature of its labels."""
    rows = conn.execute(
        """
        SELECT tag, count(*) FILTER (WHERE positive), count(*) FILTER (WHERE NOT positive),
               md5(string_agg(photo_id || ':' || positive::text, ',' ORDER BY photo_id))
        FROM labels GROUP BY tag
        """
    ).fetchall()
    return {t: LabelStats(t, int(p), int(n), str(sig)) for t, p, n, sig in rows}


def all_labels(conn: psycopg.Connection[Any]) -> list[tuple[str, str, bool]]:
    """(photo_id, tag, positive) of every label."""
    rows = conn.execute("SELECT photo_id, tag, positive FROM labels").fetchall()
    return [(pid, tag, bool(pos)) for pid, tag, pos in rows]


def list_labels(
    conn: psycopg.Connection[Any], tag: str | None = None, limit: int = 10_000
) -> list[tuple[str, str, bool, datetime]]:
    """(photo_id, tag, positive, labeled_at), newest first; of one tag or all."""
    rows = conn.execute(
        "SELECT photo_id, tag, positive, labeled_at FROM labels"
        " WHERE (%s::text IS NULL OR tag = %s::text)"
        " ORDER BY labeled_at DESC, tag, photo_id LIMIT %s",
        (tag, tag, limit),
    ).fetchall()
    return [(pid, t, bool(pos), at) for pid, t, pos, at in rows]


def vectors_of(
    conn: psycopg.Connection[Any], feature_set: str, photo_ids: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """The stored vectors of these photos (those that have one), as (ids, (n, d) float32)."""
    ids: list[str] = []
    rows: list[np.ndarray] = []
    if photo_ids:
        with vector_cursor(conn) as cur:
            cur.execute(
                "SELECT photo_id, feature FROM photo_vectors"
                " WHERE feature_set = %s AND photo_id = ANY(%s::text[])",
                (feature_set, list(photo_ids)),
            )
            for pid, feature in cur:
                ids.append(pid)
                rows.append(feature)
    return ids, _stack(rows)


def sample_vectors(
    conn: psycopg.Connection[Any], feature_set: str, n: int
) -> tuple[list[str], np.ndarray]:
    """Up to n stored vectors of the library drawn at random (the learner's background)."""
    rows = conn.execute(
        "SELECT photo_id FROM photo_vectors WHERE feature_set = %s ORDER BY random() LIMIT %s",
        (feature_set, n),
    ).fetchall()
    return vectors_of(conn, feature_set, [r[0] for r in rows])


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    if not rows:
        return np.zeros((0, 0), np.float32)
    return np.stack(rows).astype(np.float32, copy=False)


def vector_chunks(
    conn: psycopg.Connection[Any], feature_set: str, chunk: int = 8192
) -> Iterator[tuple[list[str], np.ndarray]]:
    """Every stored vector of a feature set, in chunks of (ids, (n, d) float32), read through
    a server-side binary cursor (the re-scoring pass)."""
    name = f"autotag_learned_{id(conn)}"
    with conn.transaction():
        with vector_cursor(conn, name) as cur:
            cur.itersize = chunk
            cur.execute(
                "SELECT photo_id, feature FROM photo_vectors WHERE feature_set = %s",
                (feature_set,),
            )
            while True:
                got = cur.fetchmany(chunk)
                if not got:
                    break
                yield [r[0] for r in got], _stack([r[1] for r in got])


def photos_with_tag(conn: psycopg.Connection[Any], tag: str, photo_ids: Sequence[str]) -> set[str]:
    """Which of these photos carry ``tag`` among their current tags."""
    rows = conn.execute(
        "SELECT t.photo_id FROM tags t JOIN photos p"
        " ON p.photo_id = t.photo_id AND p.model_version = t.model_version"
        " WHERE t.tag = %s AND t.photo_id = ANY(%s::text[])",
        (tag, list(photo_ids)),
    ).fetchall()
    return {r[0] for r in rows}


def model_tag_scores(
    conn: psycopg.Connection[Any], tag: str, photo_ids: Sequence[str]
) -> dict[str, float]:
    """The model's stored score of ``tag`` (a leaf or concept tag) on these photos, where
    their current tags have it."""
    rows = conn.execute(
        "SELECT t.photo_id, t.score FROM tags t JOIN photos p"
        " ON p.photo_id = t.photo_id AND p.model_version = t.model_version"
        " WHERE t.tag = %s AND t.kind IN ('leaf', 'concept') AND t.photo_id = ANY(%s::text[])",
        (tag, list(photo_ids)),
    ).fetchall()
    return {r[0]: float(r[1]) for r in rows}


def drop_model_tags_below(conn: psycopg.Connection[Any], tag: str, threshold: float) -> int:
    """Remove the model's ``tag`` (leaf or concept) from every stored photo scoring below
    ``threshold``: a recalibrated class applied to the backlog."""
    cur = conn.execute(
        "DELETE FROM tags WHERE tag = %s AND kind IN ('leaf', 'concept') AND score < %s",
        (tag, float(threshold)),
    )
    return cur.rowcount


def clear_learned_tags(conn: psycopg.Connection[Any], tags: Sequence[str]) -> int:
    """Delete every stored learned tag of these names (all photos, all model versions)."""
    cur = conn.execute(
        "DELETE FROM tags WHERE kind = 'learned' AND tag = ANY(%s::text[])", (list(tags),)
    )
    return cur.rowcount


def write_learned_tags(
    conn: psycopg.Connection[Any],
    photo_ids: Sequence[str],
    tags: Sequence[str],
    scores: Sequence[float],
    bundle_id: str,
) -> int:
    """Learned tags on stored photos, under each photo's current model_version, via the
    bundle that learned them (replacing a same-named tag there)."""
    if not photo_ids:
        return 0
    cur = conn.execute(
        """
        INSERT INTO tags (photo_id, tag, score, model_version, kind, via)
        SELECT r.photo_id, r.tag, r.score, p.model_version, 'learned', %s
        FROM unnest(%s::text[], %s::text[], %s::real[]) AS r(photo_id, tag, score)
        JOIN photos p ON p.photo_id = r.photo_id AND p.model_version IS NOT NULL
        ON CONFLICT (photo_id, model_version, tag) DO UPDATE
            SET score = EXCLUDED.score, kind = 'learned', via = EXCLUDED.via
        """,
        (bundle_id, list(photo_ids), list(tags), [float(s) for s in scores]),
    )
    return cur.rowcount


def learned_tag_count(conn: psycopg.Connection[Any], tag: str) -> int:
    """Current learned tags of this name on stored photos."""
    row = conn.execute(
        "SELECT count(*) FROM tags t JOIN photos p"
        " ON p.photo_id = t.photo_id AND p.model_version = t.model_version"
        " WHERE t.kind = 'learned' AND t.tag = %s",
        (tag,),
    ).fetchone()
    return int(row[0]) if row else 0


_STATE_COLS = (
    "tag, status, message, bundle_id, n_pos, n_neg, precision, recall, threshold,"
    " labels_seen, learned_at, phase, questions"
)


def states(conn: psycopg.Connection[Any]) -> dict[str, LearnedState]:
    rows = conn.execute(f"SELECT {_STATE_COLS} FROM learned_tags ORDER BY tag").fetchall()
    return {r[0]: _state(r) for r in rows}


def _state(r: Sequence[Any]) -> LearnedState:
    """A ``learned_tags`` row (``_STATE_COLS``, questions last) as a LearnedState."""
    return replace(LearnedState(*r[:-1]), questions=tuple(r[-1] or ()))


def save_state(
    conn: psycopg.Connection[Any],
    tag: str,
    status: str,
    message: str,
    *,
    bundle_id: str | None,
    n_pos: int,
    n_neg: int,
    precision: float | None,
    recall: float | None,
    threshold: float | None,
    labels_seen: str,
    phase: str | None = None,
    questions: Sequence[str] = (),
) -> None:
    conn.execute(
        f"""
        INSERT INTO learned_tags ({_STATE_COLS})
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now(), %s, %s::text[])
        ON CONFLICT (tag) DO UPDATE SET status = EXCLUDED.status, message = EXCLUDED.message,
            bundle_id = EXCLUDED.bundle_id, n_pos = EXCLUDED.n_pos, n_neg = EXCLUDED.n_neg,
            precision = EXCLUDED.precision, recall = EXCLUDED.recall,
            threshold = EXCLUDED.threshold, labels_seen = EXCLUDED.labels_seen,
            learned_at = now(), phase = EXCLUDED.phase, questions = EXCLUDED.questions,
            candidate_w = NULL, candidate_b = NULL, candidate_calib_a = NULL,
            candidate_calib_c = NULL
        """,
        (
            tag,
            status,
            message,
            bundle_id,
            n_pos,
            n_neg,
            precision,
            recall,
            threshold,
            labels_seen,
            phase,
            list(questions),
        ),
    )


def mark_seen(
    conn: psycopg.Connection[Any], tag: str, status: str, message: str, seen: str
) -> None:
    """Record that a tag's labels were looked at (without changing what was learned or the
    questions asked)."""
    conn.execute(
        "UPDATE learned_tags SET status = %s, message = %s, labels_seen = %s WHERE tag = %s",
        (status, message, seen, tag),
    )


def answers(conn: psycopg.Connection[Any], tag: str, photo_ids: Sequence[str]) -> dict[str, bool]:
    """The user's labels of ``tag`` on these photos (True: yes, False: no); unanswered ones
    are missing."""
    rows = conn.execute(
        "SELECT photo_id, positive FROM labels WHERE tag = %s AND photo_id = ANY(%s::text[])",
        (tag, list(photo_ids)),
    ).fetchall()
    return {pid: bool(pos) for pid, pos in rows}


def unanswered(conn: psycopg.Connection[Any], tag: str, photo_ids: Sequence[str]) -> list[str]:
    """The photos asked about ``tag`` that are still stored and have no label for it yet (a
    photo deleted since it was asked about is not waited for), in the order asked."""
    rows = conn.execute(
        """
        SELECT q.photo_id FROM unnest(%s::text[]) WITH ORDINALITY AS q(photo_id, n)
        JOIN photos p ON p.photo_id = q.photo_id
        WHERE NOT EXISTS (SELECT 1 FROM labels l WHERE l.tag = %s AND l.photo_id = q.photo_id)
        ORDER BY q.n
        """,
        (list(photo_ids), tag),
    ).fetchall()
    return [r[0] for r in rows]


def save_candidate(
    conn: psycopg.Connection[Any], tag: str, w: np.ndarray, b: float, calib_a: float, calib_c: float
) -> None:
    """Keep the head a spot check is asked about (the tag's state row must exist)."""
    conn.execute(
        "UPDATE learned_tags SET candidate_w = %s::real[], candidate_b = %s,"
        " candidate_calib_a = %s, candidate_calib_c = %s WHERE tag = %s",
        (np.asarray(w, np.float32).tolist(), float(b), float(calib_a), float(calib_c), tag),
    )


def candidate(
    conn: psycopg.Connection[Any], tag: str
) -> tuple[np.ndarray, float, float, float, float] | None:
    """The kept head of a tag asking a spot check: (w float32, b, calib_a, calib_c,
    threshold), or None."""
    row = conn.execute(
        "SELECT candidate_w, candidate_b, candidate_calib_a, candidate_calib_c, threshold"
        " FROM learned_tags WHERE tag = %s AND candidate_w IS NOT NULL",
        (tag,),
    ).fetchone()
    if row is None or None in row:
        return None
    w, b, a, c, thr = row
    return np.asarray(w, np.float32), float(b), float(a), float(c), float(thr)


def forget(
    conn: psycopg.Connection[Any], tag: str, learned_versions: Sequence[str] = ()
) -> tuple[int, int]:
    """Delete a tag's learner state, its labels and its stored learned tags, on photos and
    on video segments tagged by a bundle that had it as a learned tag (``learned_versions``:
    a segment's tags carry no kind): (labels deleted, tags deleted)."""
    conn.execute("DELETE FROM learned_tags WHERE tag = %s", (tag,))
    labels = conn.execute("DELETE FROM labels WHERE tag = %s", (tag,)).rowcount
    tags = clear_learned_tags(conn, [tag])
    tags += conn.execute(
        "DELETE FROM video_segment_tags WHERE tag = %s AND model_version = ANY(%s::text[])",
        (tag, list(learned_versions)),
    ).rowcount
    return labels, tags
