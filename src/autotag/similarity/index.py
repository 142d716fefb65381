"""``VectorIndex``: photo id -> vector, searched by dot product, over one of five stores.

Modes: ``exact`` (float32), ``fp16`` and ``int8`` (compressed scans) are flat stores
(flat.py); ``ivf`` scans a few buckets (ivf.py); ``hnsw`` walks a graph (hnsw.py). Each store
implements ``VectorStore`` and knows only int64 labels; the index maps them to photo ids,
serialises callers, and saves / loads itself as a directory.

Vectors are L2-normalised, so a dot product is a cosine (MemSQL's DOT_PRODUCT idea). Scores
are raw dot products; threshold semantics follow the seed: a hit has ``score > min``.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from autotag.similarity.flat import FlatStore
from autotag.similarity.hnsw import HNSWStore
from autotag.similarity.ivf import IVFStore

MODES = ("exact", "fp16", "int8", "ivf", "hnsw")
Hit = tuple[str, float]
INDEX_FORMAT = "autotag-vector-index/1"


def as_matrix(x: Any, dim: int | None = None) -> np.ndarray:
    """A C-contiguous float32 (n, d) matrix from a vector or matrix; checks the dimension."""
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2:
        raise ValueError(f"expected a vector or a matrix, got shape {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise ValueError(f"dimension mismatch: vectors have {a.shape[1]} dims, index has {dim}")
    if not np.isfinite(a).all():
        raise ValueError("vectors contain NaN or infinity")
    return a


class VectorStore(Protocol):
    """Where an index keeps its vectors. Rows are addressed by int64 labels the store hands
    out; a store that moves rows (swap-remove, graph rebuild) reports {old label: new label}.
    Queries are (q, d) float32 matrices; search results are (scores, labels) arrays, best
    first, with label -1 for an empty slot."""

    dim: int

    def __len__(self) -> int:
        """Vectors stored (removed ones not counted)."""
        ...

    @property
    def is_trained(self) -> bool:
        """False until ``train`` has learnt what the codec needs (int8 ranges, centroids)."""
        ...

    @property
    def next_label(self) -> int:
        """The label ``add`` hands out next, if it is not a row position (IVF); else 0."""
        ...

    def train(self, sample: np.ndarray) -> None:
        """Learn the codec from sample vectors (a no-op for stores that need nothing)."""
        ...

    def add(self, x: np.ndarray) -> np.ndarray:
        """Store vectors; returns their labels."""
        ...

    def replace(self, labels: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
        """Overwrite rows: (the rows' labels now, other rows moved)."""
        ...

    def remove(self, labels: np.ndarray) -> dict[int, int]:
        """Drop rows; returns the rows that moved."""
        ...

    def reconstruct(self, labels: np.ndarray) -> np.ndarray:
        """Stored vectors as float32 rows (decoded, so rounded for compressed codes)."""
        ...

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top k by dot product per query."""
        ...

    def range_search(self, q: np.ndarray, min_score: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query: (scores, labels) of every row scoring > min_score, unsorted."""
        ...

    def memory_bytes(self) -> int:
        """Bytes of codes, lists or graph."""
        ...

    def save(self, path: Path) -> None:
        """Write the store's files into the directory ``path``."""
        ...

    def load(self, path: Path, next_label: int) -> None:
        """Read what ``save`` wrote; ``next_label`` is the value recorded at save time."""
        ...


class VectorIndex:
    """Photo id -> vector index with top-k and threshold search by dot product.

    ``int8`` and ``ivf`` need training data; until ``train_size`` vectors have arrived they
    are served by an exact float32 store (so a fresh system answers correctly from its
    first photo) and then converted once.
    """

    def __init__(
        self,
        dim: int,
        mode: str = "exact",
        *,
        segment_rows: int = 65536,
        train_size: int | None = None,
        nlist: int | None = None,
        nprobe: int | None = None,
        ivf_storage: str = "flat",
        hnsw_m: int = 32,
        ef_construction: int = 64,
        ef_search: int = 256,
        rebuild_fraction: float = 0.25,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if ivf_storage not in ("flat", "sq8"):
            raise ValueError("ivf_storage must be 'flat' or 'sq8'")
        self.dim = int(dim)
        self.mode = mode
        self.params: dict[str, Any] = {
            "segment_rows": segment_rows,
            "nlist": nlist,
            "nprobe": nprobe,
            "ivf_storage": ivf_storage,
            "hnsw_m": hnsw_m,
            "ef_construction": ef_construction,
            "ef_search": ef_search,
            "rebuild_fraction": rebuild_fraction,
        }
        default_train = {"int8": 1000, "ivf": 20_000}.get(mode, 0)
        self.train_size = default_train if train_size is None else int(train_size)
        self._label_of: dict[str, int] = {}
        self._id_of: dict[int, str] = {}
        self._lock = threading.RLock()
        self._store: VectorStore = self._make_store()
        if not self._store.is_trained:
            self._store = FlatStore(self.dim, "exact", segment_rows)  # bootstrap until trained

    def _make_store(self) -> VectorStore:
        p = self.params
        if self.mode in ("exact", "fp16", "int8"):
            return FlatStore(self.dim, self.mode, p["segment_rows"])
        if self.mode == "ivf":
            return IVFStore(self.dim, p["nlist"], p["nprobe"], p["ivf_storage"])
        return HNSWStore(
            self.dim, p["hnsw_m"], p["ef_construction"], p["ef_search"], p["rebuild_fraction"]
        )

    # -- introspection -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._label_of)

    def __contains__(self, photo_id: object) -> bool:
        return photo_id in self._label_of

    @property
    def active_mode(self) -> str:
        """The mode actually answering: 'exact' while int8/ivf wait for training data."""
        if self.mode in ("int8", "ivf") and isinstance(self._store, FlatStore):
            if self._store.kind == "exact":
                return "exact"
        return self.mode

    @property
    def ids(self) -> list[str]:
        return list(self._label_of)

    @property
    def nprobe(self) -> int | None:
        return self._store.nprobe if isinstance(self._store, IVFStore) else None

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self.params["nprobe"] = value
        if isinstance(self._store, IVFStore):
            self._store.set_nprobe(value)

    @property
    def ef_search(self) -> int:
        return int(self.params["ef_search"])

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self.params["ef_search"] = int(value)
        if isinstance(self._store, HNSWStore):
            self._store.set_ef_search(int(value))

    def memory_bytes(self) -> int:
        """Bytes of index structures (codes, graph, lists) plus ~ the id maps' footprint."""
        per_id = 200  # two dict entries + a 64-char str, measured ~190 B on CPython 3.11
        return int(self._store.memory_bytes()) + per_id * len(self)

    # -- mutation ------------------------------------------------------------------------
    def add(self, ids: Sequence[str], vectors: Any) -> None:
        """Insert or update (re-add) photos; an id seen twice in one call keeps its last row."""
        X = as_matrix(vectors, self.dim)
        ids = [str(i) for i in ids]
        if len(ids) != len(X):
            raise ValueError(f"{len(ids)} ids for {len(X)} vectors")
        last = {pid: i for i, pid in enumerate(ids)}
        if len(last) != len(ids):
            rows = sorted(last.values())
            ids, X = [ids[i] for i in rows], X[rows]
        with self._lock:
            old_rows = [i for i, pid in enumerate(ids) if pid in self._label_of]
            new_rows = [i for i, pid in enumerate(ids) if pid not in self._label_of]
            if old_rows:
                old_labels = np.array([self._label_of[ids[i]] for i in old_rows], dtype=np.int64)
                for label in old_labels.tolist():
                    self._id_of.pop(label, None)
                labels, moved = self._store.replace(old_labels, X[old_rows])
                self._apply_moves(moved)
                for i, label in zip(old_rows, labels.tolist(), strict=True):
                    self._bind(ids[i], label)
            if new_rows:
                labels = self._store.add(X[new_rows])
                for i, label in zip(new_rows, labels, strict=True):
                    self._bind(ids[i], int(label))
            self._maybe_train()

    def _bind(self, photo_id: str, label: int) -> None:
        self._label_of[photo_id] = label
        self._id_of[label] = photo_id

    def _apply_moves(self, moved: dict[int, int]) -> None:
        """Relabel rows a store moved (swap-remove, graph rebuild); a permutation-safe update."""
        pairs = [(self._id_of.get(old), new) for old, new in moved.items()]
        for old in moved:
            self._id_of.pop(old, None)
        for pid, new in pairs:
            if pid is not None:
                self._bind(pid, new)

    def remove(self, ids: Iterable[str]) -> int:
        """Forget photos (unknown ids are ignored); returns how many were removed."""
        with self._lock:
            gone = [str(i) for i in ids if str(i) in self._label_of]
            if not gone:
                return 0
            labels = np.array([self._label_of.pop(pid) for pid in gone], dtype=np.int64)
            for label in labels:
                self._id_of.pop(int(label), None)
            moved = self._store.remove(labels)
            self._apply_moves(moved)
            return len(gone)

    def _maybe_train(self) -> None:
        """int8 / ivf: once enough vectors arrived, train on them and convert the bootstrap."""
        if self.active_mode != "exact" or self.mode not in ("int8", "ivf"):
            return
        if len(self) < max(1, self.train_size):
            return
        self.retrain()

    def retrain(self) -> None:
        """Re-learn int8 ranges / IVF centroids from the current vectors and re-add them all."""
        with self._lock:
            ids = list(self._label_of)
            labels = np.array([self._label_of[i] for i in ids], dtype=np.int64)
            X = self._store.reconstruct(labels) if len(ids) else np.zeros((0, self.dim), np.float32)
            store = self._make_store()
            rng = np.random.default_rng(0)
            sample = X if len(X) <= 200_000 else X[rng.choice(len(X), 200_000, replace=False)]
            if len(sample) == 0:
                return
            store.train(sample)
            self._store = store
            self._label_of.clear()
            self._id_of.clear()
            for start in range(0, len(ids), 65536):
                chunk = ids[start : start + 65536]
                for pid, label in zip(chunk, store.add(X[start : start + 65536]), strict=True):
                    self._bind(pid, int(label))

    # -- queries -------------------------------------------------------------------------
    def _to_hits(self, D: np.ndarray, lab: np.ndarray, min_score: float | None) -> list[Hit]:
        hits = []
        for d, label in zip(D.tolist(), lab.tolist(), strict=True):
            if label < 0 or (min_score is not None and not d > min_score):
                continue
            pid = self._id_of.get(label)
            if pid is not None:
                hits.append((pid, float(d)))
        return hits

    def search(
        self, query: Any, top_k: int = 10, min_score: float | None = None
    ) -> list[Hit] | list[list[Hit]]:
        """Top-k by dot product, best first; with min_score only hits scoring > min_score.

        A (d,) query returns one list of (photo_id, score); a (q, d) batch returns q lists.
        """
        results = self.search_rows(query, top_k, min_score)
        return results[0] if np.ndim(query) == 1 else results

    def search_rows(
        self, query: Any, top_k: int = 10, min_score: float | None = None
    ) -> list[list[Hit]]:
        """``search`` with one list of hits per query row, a (d,) query being one row."""
        Q = as_matrix(query, self.dim)
        with self._lock:
            if len(self) == 0 or top_k <= 0:
                return [[] for _ in range(len(Q))]
            D, lab = self._store.search(Q, int(top_k))
            return [self._to_hits(D[i], lab[i], min_score) for i in range(len(Q))]

    def range_search(self, query: Any, min_score: float) -> list[Hit] | list[list[Hit]]:
        """Every photo scoring > min_score (the seed's ``DOT_PRODUCT(..) > 0.9``), best first.

        A (d,) query returns one list of (photo_id, score); a (q, d) batch returns q lists.
        """
        results = self.range_search_rows(query, min_score)
        return results[0] if np.ndim(query) == 1 else results

    def range_search_rows(self, query: Any, min_score: float) -> list[list[Hit]]:
        """``range_search`` with one list of hits per query row, a (d,) query being one row."""
        Q = as_matrix(query, self.dim)
        with self._lock:
            if len(self) == 0:
                parts: list[tuple[np.ndarray, np.ndarray]] = [
                    (np.zeros(0, np.float32), np.zeros(0, np.int64)) for _ in range(len(Q))
                ]
            else:
                parts = self._store.range_search(Q, float(min_score))
            results = []
            for D, lab in parts:
                order = np.argsort(-D, kind="stable")
                results.append(self._to_hits(D[order], lab[order], min_score))
        return results

    def vector(self, photo_id: str) -> np.ndarray | None:
        """The stored vector (decoded for fp16/int8), or None for an unknown id."""
        with self._lock:
            label = self._label_of.get(photo_id)
            if label is None:
                return None
            return self._store.reconstruct(np.array([label], dtype=np.int64))[0]

    def iter_vectors(self, batch: int = 4096) -> Iterator[tuple[list[str], np.ndarray]]:
        """All (ids, vectors) in batches (a snapshot of the ids at call time)."""
        ids = self.ids
        for start in range(0, len(ids), batch):
            chunk = [i for i in ids[start : start + batch] if i in self._label_of]
            with self._lock:
                labels = np.array([self._label_of[i] for i in chunk], dtype=np.int64)
                X = self._store.reconstruct(labels)
            yield chunk, X

    # -- persistence ---------------------------------------------------------------------
    def save(
        self,
        path: Path,
        extra: dict[str, Any] | None = None,
        files: dict[str, bytes] | None = None,
    ) -> None:
        """Write the index to a directory atomically (written beside it, then renamed);
        ``files`` are the caller's own side files, saved in the same rename."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with self._lock:
            self._store.save(tmp)
            labels = sorted(self._id_of)
            ids = [self._id_of[label] for label in labels]
            if any("\n" in i for i in ids):
                raise ValueError("photo ids must not contain newlines")
            (tmp / "ids.txt").write_text("\n".join(ids))
            np.save(tmp / "labels.npy", np.array(labels, dtype=np.int64))
            meta = {
                "format": INDEX_FORMAT,
                "mode": self.mode,
                "active_mode": self.active_mode,
                "dim": self.dim,
                "count": len(self),
                "train_size": self.train_size,
                "params": self.params,
                "store_rows": len(self._store),
                "next_label": int(self._store.next_label),
                "extra": extra or {},
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        for name, data in (files or {}).items():
            (tmp / name).write_bytes(data)
        old = path.with_name(f".{path.name}.{os.getpid()}.old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, path: Path) -> tuple[VectorIndex, dict[str, Any]]:
        """Read an index written by save(); returns (index, the ``extra`` dict)."""
        path = Path(path)
        meta = json.loads((path / "meta.json").read_text())
        if meta.get("format") != INDEX_FORMAT:
            raise ValueError(f"{path}: not an autotag vector index")
        p = meta["params"]
        index = cls(
            meta["dim"],
            meta["mode"],
            segment_rows=p["segment_rows"],
            train_size=meta["train_size"],
            nlist=p["nlist"],
            nprobe=p["nprobe"],
            ivf_storage=p["ivf_storage"],
            hnsw_m=p["hnsw_m"],
            ef_construction=p["ef_construction"],
            ef_search=p["ef_search"],
            rebuild_fraction=p["rebuild_fraction"],
        )
        if meta["active_mode"] != meta["mode"]:
            store: VectorStore = FlatStore(index.dim, "exact", p["segment_rows"])
        else:
            store = index._make_store()
        store.load(path, meta["next_label"])
        if len(store) != meta["store_rows"]:
            raise ValueError(
                f"saved index has {len(store)} rows, metadata says {meta['store_rows']}"
            )
        index._store = store
        text = (path / "ids.txt").read_text()
        ids = text.split("\n") if text else []
        labels = np.load(path / "labels.npy")
        if len(ids) != len(labels) or len(ids) != meta["count"]:
            raise ValueError(f"{path}: ids and labels disagree")
        for pid, label in zip(ids, labels.tolist(), strict=True):
            index._bind(pid, int(label))
        return index, meta.get("extra", {})
