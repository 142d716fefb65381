"""Reading stored feature vectors: one photo's, and everything changed since a sequence number
(the similarity index syncs incrementally on ``photo_vectors.seq``).

Vectors are read through a binary cursor that turns ``real[]`` straight into float32 arrays,
since a full load reads every vector of the table.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Iterator, Sequence
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


def _float4_array_loader() -> type:
    """psycopg binary loader: real[] -> float32 numpy array, without a Python float per element."""
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    class Float4ArrayLoader(Loader):
        format = Format.BINARY

        def load(self, data: Any) -> np.ndarray:
            ndim, has_null, _oid = struct.unpack_from("!iiI", data, 0)
            if ndim == 0:
                return np.zeros(0, dtype=np.float32)
            dims = struct.unpack_from("!" + "ii" * ndim, data, 12)
            n = int(np.prod(dims[0::2]))
            body = np.frombuffer(data, dtype=">i4", offset=12 + 8 * ndim)
            if has_null and (body.reshape(-1)[0::2] < 0).any():
                raise ValueError("vector contains NULL elements")
            return body.reshape(n, 2)[:, 1].view(">f4").astype(np.float32)

    return Float4ArrayLoader


def _vector_cursor(conn: Any, name: str | None = None) -> Any:
    """A binary cursor that returns real[] columns as float32 arrays (server-side if named)."""
    cur = conn.cursor(name=name, binary=True) if name else conn.cursor(binary=True)
    from psycopg import postgres

    cur.adapters.register_loader(postgres.types["float4"].array_oid, _float4_array_loader())
    return cur


def vector_cursor(conn: Any, name: str | None = None) -> Any:
    """A binary cursor that returns real[] columns as float32 arrays (server-side if named)."""
    cur = conn.cursor(name=name, binary=True) if name else conn.cursor(binary=True)
    from psycopg import postgres

    cur.adapters.register_loader(postgres.types["float4"].array_oid, _float4_array_loader())
    return cur


def stream_vectors(
    conn: psycopg.Connection[Any], feature_set: str, photo_ids: Sequence[str] | None = None
) -> Iterator[tuple[str, int, Any]]:
    """Rows (photo_id, seq, feature) of one feature set (of these photos, or all), in seq
    order, through a server-side cursor."""
    name = f"autotag_vec_{os.getpid()}_{threading.get_ident()}_{time.monotonic_ns()}"
    ids = None if photo_ids is None else list(photo_ids)
    with conn.transaction():
        with vector_cursor(conn, name) as cur:
            cur.itersize = 2000
            cur.execute(
                "SELECT photo_id, seq, feature FROM photo_vectors "
                "WHERE feature_set = %s AND (%s::text[] IS NULL OR photo_id = ANY(%s::text[])) "
                "ORDER BY seq",
                (feature_set, ids, ids),
            )
            yield from cur


def table_identity(conn: psycopg.Connection[Any]) -> str:
    """Which cluster, database and table the vectors come from: a saved index is only valid
    against the very same table (a re-created one restarts seq from 1)."""
    row = conn.execute(
        "SELECT d.oid, to_regclass('photo_vectors')::oid FROM pg_database d "
        "WHERE d.datname = current_database()"
    ).fetchone()
    try:
        found = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
        sysid = found[0] if found else "?"
    except psycopg.Error:  # not allowed for this role: oids alone still catch most cases
        sysid = "?"
    assert row is not None
    return f"{sysid}:{row[0]}:{row[1]}"


def max_seq(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(max(seq), 0) FROM photo_vectors").fetchone()
    return int(row[0]) if row else 0


def seqs_since(
    conn: psycopg.Connection[Any], feature_set: str, after: int
) -> list[tuple[str, int]]:
    """(photo_id, seq) of one feature set's rows with seq above ``after``."""
    rows = conn.execute(
        "SELECT photo_id, seq FROM photo_vectors WHERE feature_set = %s AND seq > %s",
        (feature_set, after),
    ).fetchall()
    return [(pid, int(seq)) for pid, seq in rows]


def photo_ids(conn: psycopg.Connection[Any], feature_set: str) -> set[str]:
    """Every photo with a vector of this feature set."""
    rows = conn.execute(
        "SELECT photo_id FROM photo_vectors WHERE feature_set = %s", (feature_set,)
    ).fetchall()
    return {r[0] for r in rows}


def photo_ids_like(
    conn: psycopg.Connection[Any], feature_set: str, prefix: str, *, exact: bool = False
) -> list[str]:
    """Photos with a vector of this feature set whose id is ``prefix`` (``exact``) or starts
    with it (at most two: enough to tell a unique prefix from an ambiguous one)."""
    if exact:
        rows = conn.execute(
            "SELECT photo_id FROM photo_vectors WHERE feature_set = %s AND photo_id = %s",
            (feature_set, prefix),
        ).fetchall()
    else:
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = conn.execute(
            "SELECT photo_id FROM photo_vectors WHERE feature_set = %s "
            "AND photo_id LIKE %s LIMIT 2",
            (feature_set, pattern),
        ).fetchall()
    return [r[0] for r in rows]
