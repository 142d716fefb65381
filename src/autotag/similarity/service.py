"""``SimilarityService``: a VectorIndex kept in step with Postgres, answering queries with tags.

One service serves one feature set of ``photo_vectors``. ``load()`` fills the index from
Postgres (or from a copy saved under ``<run_dir>/index/`` plus the rows changed since);
``refresh()`` applies only rows whose ``seq`` moved. Queries return photos with their
current tags. Vectors are read through a binary cursor that turns ``real[]`` straight into
float32 arrays, since a full load reads every vector of the table.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from autotag.checksums import file_sha256
from autotag.config import ServiceSettings
from autotag.errors import AutotagError, ModelError
from autotag.similarity.index import MODES, VectorIndex, as_matrix
from autotag.storage import database, deletion, lookups, vectors
from autotag.vision.features import feature_set_spec

log = logging.getLogger(__name__)


def resolve_feature_set(name: str) -> tuple[str, int | None]:
    """('cnn@<version>', dim) for a bare name, as the bolt writes photo_vectors.feature_set.

    Vectors of different feature-set versions are not comparable, so a bare name means the
    version this code extracts; an explicit ``name@version`` is used as given.
    """
    base, _, version = name.partition("@")
    try:
        spec = feature_set_spec(base)
    except ModelError:  # not one of ours (e.g. a test's own set): used as given
        return name, None
    current = str(spec["version"])
    dim = int(spec["dim"])
    if not version:
        return f"{base}@{current}", dim
    return name, dim if version == current else None


_T = TypeVar("_T")


def _locked(fn: Callable[..., _T]) -> Callable[..., _T]:
    """Run a SimilarityService method under the service's lock."""

    @functools.wraps(fn)
    def wrapper(self: SimilarityService, *args: Any, **kwargs: Any) -> _T:
        with self.lock:
            return fn(self, *args, **kwargs)

    return wrapper


class SimilarityService:
    """A VectorIndex kept in step with Postgres ``photo_vectors`` for one feature set.

    Restart-safe: ``load()`` rebuilds from Postgres (or reads ``<run_dir>/index/<set>-<mode>``
    saved by ``save()`` and applies the rows changed since); ``refresh()`` applies rows whose
    ``seq`` is newer than what was seen, plus a look-back window so rows from transactions
    that committed out of ``seq`` order are not missed.
    """

    def __init__(
        self,
        services: ServiceSettings,
        mode: str,
        feature_set: str,
        *,
        persist: bool = False,
        lookback: int = 1000,
        **index_params: Any,
    ) -> None:
        if mode not in MODES:
            raise AutotagError(f"unknown similarity mode {mode!r}; choose {', '.join(MODES)}")
        self.services = services
        self.mode = mode
        self.feature_set, self._dim = resolve_feature_set(feature_set)
        self.persist = persist
        self.lookback = lookback
        self.index_params = index_params
        self.index: VectorIndex | None = None
        self.high_seq = 0  # largest seq applied
        self._seq_of: dict[str, int] = {}  # seq applied per photo, to skip look-back repeats
        self._conn: Any = None
        self.loaded_from = "nothing"
        # One connection and one index: serialise callers (HTTP threads share a service).
        self.lock = threading.RLock()

    # -- plumbing ------------------------------------------------------------------------
    @property
    def conn(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = database.connect(self.services)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> SimilarityService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def index_dir(self) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.feature_set)
        return self.services.run_dir / "index" / f"{safe}-{self.mode}"

    def __len__(self) -> int:
        return 0 if self.index is None else len(self.index)

    # -- sync ----------------------------------------------------------------------------
    def _apply(self, rows: Iterable[tuple[str, int, Any]], batch: int = 4096) -> int:
        """Add/update rows in batches; returns how many vectors went into the index."""
        applied = 0
        pending: list[tuple[str, int, np.ndarray]] = []

        def flush() -> None:
            nonlocal applied
            if not pending:
                return
            if self.index is None:
                self.index = VectorIndex(len(pending[0][2]), self.mode, **self.index_params)
            good = [(pid, vec) for pid, _, vec in pending if len(vec) == self.index.dim]
            if len(good) != len(pending):
                log.warning(
                    "similarity: skipped %d %r vectors whose dimension is not %d",
                    len(pending) - len(good),
                    self.feature_set,
                    self.index.dim,
                )
            if good:
                self.index.add([pid for pid, _ in good], np.stack([vec for _, vec in good]))
            for pid, seq, _ in pending:  # skipped rows too, so they are not fetched again
                self._seq_of[pid] = seq
                self.high_seq = max(self.high_seq, seq)
            applied += len(good)
            pending.clear()

        for pid, seq, vec in rows:
            if vec is None or seq is None:
                continue
            pending.append((pid, int(seq), vec))
            if len(pending) >= batch:
                flush()
        flush()
        return applied

    def _stream(self, photo_ids: Sequence[str] | None = None) -> Iterator[tuple[str, int, Any]]:
        """Rows (photo_id, seq, feature) of this feature set (of these photos), in seq order."""
        return vectors.stream_vectors(self.conn, self.feature_set, photo_ids)

    @_locked
    def load(self) -> SimilarityService:
        """(Re)build the index: from the saved copy plus newer rows, else all of Postgres."""
        self.index, self._seq_of, self.high_seq = None, {}, 0
        if self.persist and (self.index_dir / "meta.json").is_file():
            try:
                self._load_saved()
                changed = self._reconcile_deletions() + self.refresh()
                self.loaded_from = str(self.index_dir)
                if changed > max(10_000, len(self) // 10):
                    self._save_quietly()  # keep the next start's catch-up short
                return self
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                log.warning(
                    "similarity: saved index %s unusable (%s); rebuilding", self.index_dir, exc
                )
                self.index, self._seq_of, self.high_seq = None, {}, 0
        self._apply(self._stream())
        if self.index is None:
            self.index = VectorIndex(self._expected_dim(), self.mode, **self.index_params)
        self.loaded_from = "postgres"
        if self.persist:
            self._save_quietly()
        return self

    def _save_quietly(self) -> None:
        """Persisting is an optimisation: a failure (disk full, a racing writer) only warns."""
        try:
            self.save()
        except OSError as exc:
            log.warning("similarity: could not save index to %s: %s", self.index_dir, exc)

    def _identity(self) -> str:
        """Which cluster, database and table the rows come from: a saved index is only
        valid against the very same table (a re-created one restarts seq from 1)."""
        return vectors.table_identity(self.conn)

    def _load_saved(self) -> None:
        index, extra = VectorIndex.load(self.index_dir)
        if extra.get("feature_set") != self.feature_set:
            raise ValueError("saved for another feature set")
        if extra.get("identity") != self._identity():
            raise ValueError("saved from another database or photo_vectors table")
        if int(extra.get("high_seq", 0)) > vectors.max_seq(self.conn):
            raise ValueError("photo_vectors.seq went backwards")
        seq_ids = (self.index_dir / "seq-ids.txt").read_text()
        seqs = np.load(self.index_dir / "seqs.npy").tolist()
        names = seq_ids.split("\n") if seq_ids else []
        if len(names) != len(seqs):
            raise ValueError("seq table is damaged")
        self.index = index
        self._seq_of = dict(zip(names, seqs, strict=True))
        self.high_seq = int(extra.get("high_seq", 0))

    def _expected_dim(self) -> int:
        """Dimension for an empty index: the feature set's registered size (cnn: 1,280)."""
        return self._dim or 1280

    @_locked
    def refresh(self) -> int:
        """Apply rows changed since the last load/refresh; returns how many were applied."""
        if self.index is None:
            self.load()
            return len(self)
        low = max(0, self.high_seq - self.lookback)
        changed = [
            pid
            for pid, seq in vectors.seqs_since(self.conn, self.feature_set, low)
            if seq > self._seq_of.get(pid, -1)
        ]
        if not changed:
            return 0
        applied = 0
        for start in range(0, len(changed), 5000):
            chunk = changed[start : start + 5000]
            applied += self._apply(self._stream(chunk))
        return applied

    def _reconcile_deletions(self) -> int:
        """Drop photos whose vector rows were deleted while the saved index sat on disk."""
        assert self.index is not None
        present = vectors.photo_ids(self.conn, self.feature_set)
        gone = [pid for pid in self.index.ids if pid not in present]
        for pid in gone:
            self._seq_of.pop(pid, None)
        return self.index.remove(gone)

    @_locked
    def save(self) -> Path:
        """Persist the index and the seq it reflects under <run_dir>/index/."""
        assert self.index is not None
        self.index_dir.parent.mkdir(parents=True, exist_ok=True)
        ids = list(self._seq_of)
        seqs = io.BytesIO()
        np.save(seqs, np.array([self._seq_of[i] for i in ids], dtype=np.int64))
        extra = {
            "high_seq": self.high_seq,
            "feature_set": self.feature_set,
            "identity": self._identity(),
        }
        files = {"seq-ids.txt": "\n".join(ids).encode(), "seqs.npy": seqs.getvalue()}
        self.index.save(self.index_dir, extra=extra, files=files)
        return self.index_dir

    # -- lookups -------------------------------------------------------------------------
    @_locked
    def vector_of(self, photo_id: str) -> np.ndarray | None:
        """A photo's stored float32 vector for this feature set, read from Postgres."""
        return vectors.get_vector(self.conn, photo_id, self.feature_set)

    @_locked
    def resolve_photo_id(self, prefix: str) -> str:
        """Full photo id from an id or a unique prefix (>= 6 hex chars) of one with a vector."""
        found = vectors.photo_ids_like(self.conn, self.feature_set, prefix, exact=True)
        if not found and len(prefix) >= 6:
            found = vectors.photo_ids_like(self.conn, self.feature_set, prefix)
            if len(found) > 1:
                raise AutotagError(f"photo id prefix {prefix!r} is ambiguous")
        if found:
            return found[0]
        raise AutotagError(
            f"photo {prefix} has no {self.feature_set!r} vector (unknown, or not tagged yet)"
        )

    @_locked
    def current_tags(self, photo_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Each photo's current tags (model_version = photos.model_version), best first."""
        return lookups.current_tags(self.conn, photo_ids)

    def _with_tag(self, photo_ids: Sequence[str], tag: str) -> set[str]:
        return lookups.photos_with_tag(self.conn, photo_ids, tag)

    @_locked
    def similar(
        self,
        vector: Any,
        top: int = 10,
        min_score: float | None = None,
        tag: str | None = None,
        exclude: Iterable[str] = (),
    ) -> list[dict[str, Any]]:
        """Nearest photos to a vector as [{photo_id, score, tags}], best first."""
        if self.index is None:
            self.load()
        assert self.index is not None
        skip = set(exclude)
        q = as_matrix(vector, self.index.dim)[0]
        if top <= 0:
            return []
        k = top + len(skip)
        while True:
            if min_score is not None and tag is not None:
                raw = self.index.range_search_rows(q, min_score)[0]
            else:
                raw = self.index.search_rows(q, k, min_score)[0]
            hits = [(pid, s) for pid, s in raw if pid not in skip]
            gone = set(pid for pid, _ in hits) - deletion.live_ids(self.conn, [p for p, _ in hits])
            if gone:  # deleted (trash or for good) since the index took them in
                for pid in gone:
                    self._seq_of.pop(pid, None)
                self.index.remove(sorted(gone))
                hits = [(pid, s) for pid, s in hits if pid not in gone]
            if tag is not None and hits:
                allowed = self._with_tag([pid for pid, _ in hits], tag)
                hits = [(pid, s) for pid, s in hits if pid in allowed]
            exhausted = (
                len(raw) < k or k >= len(self.index) or (min_score is not None and tag is not None)
            )
            if len(hits) >= top or exhausted:
                break
            k = min(len(self.index), k * 4)
        hits = hits[:top]
        tags = self.current_tags([pid for pid, _ in hits])
        return [{"photo_id": pid, "score": round(s, 6), "tags": tags[pid]} for pid, s in hits]

    @_locked
    def similar_to_photo(
        self, photo_id: str, top: int = 10, min_score: float | None = None, tag: str | None = None
    ) -> list[dict[str, Any]]:
        """Photos most similar to a stored photo (itself excluded), with their current tags."""
        pid = self.resolve_photo_id(photo_id)
        vec = self.vector_of(pid)
        assert vec is not None
        return self.similar(vec, top, min_score, tag, exclude=(pid,))

    def similar_to_file(
        self,
        path: str | Path,
        featurize: Callable[[Path], np.ndarray],
        top: int = 10,
        min_score: float | None = None,
        tag: str | None = None,
    ) -> list[dict[str, Any]]:
        """Photos similar to an image file. A file already in the system uses its stored
        vector; any other goes through ``featurize``, the caller's model (so this layer never
        loads one), run outside the service's lock."""
        path = Path(path)
        vector = self.vector_of(file_sha256(path))
        if vector is None:
            vector = featurize(path)
        return self.similar(vector, top, min_score, tag)
