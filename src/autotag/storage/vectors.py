"""Reading stored feature vectors: one photo's, and everything changed since a sequence number
(the similarity index syncs incrementally on ``photo_vectors.seq``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg


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
