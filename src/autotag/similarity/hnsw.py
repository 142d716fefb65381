"""Graph store (faiss IndexHNSWFlat): a query walks a neighbour graph instead of scanning.

Graphs cannot delete, so a removed or updated vector becomes a tombstone, skipped during
the walk by an ``IDSelectorBitmap``, and the graph is rebuilt from the live vectors once
more than ``rebuild_fraction`` of its nodes are dead.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import faiss
import numpy as np


class HNSWStore:
    """IndexHNSWFlat with tombstones. Label == node number; a rebuild renumbers the nodes."""

    def __init__(
        self, dim: int, m: int, ef_construction: int, ef_search: int, rebuild_fraction: float
    ) -> None:
        self.dim = dim
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.rebuild_fraction = rebuild_fraction
        self.index = self._new()
        self.live = np.zeros(0, dtype=bool)
        self.dead = 0

    def _new(self) -> faiss.IndexHNSWFlat:
        index = faiss.IndexHNSWFlat(self.dim, self.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    def __len__(self) -> int:
        return int(self.index.ntotal) - self.dead

    @property
    def next_label(self) -> int:
        """Labels are node numbers, restored with the graph on load: nothing to record."""
        return 0

    @property
    def is_trained(self) -> bool:
        """A graph needs no training."""
        return True

    def train(self, sample: np.ndarray) -> None:
        """Nothing to learn: a graph is built as vectors arrive."""

    def set_ef_search(self, ef_search: int) -> None:
        """Candidates kept during a walk: higher is slower and finds more true neighbours."""
        self.ef_search = ef_search
        self.index.hnsw.efSearch = ef_search

    def add(self, x: np.ndarray) -> np.ndarray:
        start = int(self.index.ntotal)
        self.index.add(x)
        self.live = np.concatenate([self.live, np.ones(len(x), dtype=bool)])
        return np.arange(start, start + len(x), dtype=np.int64)

    def remove(self, labels: np.ndarray) -> dict[int, int]:
        labels = np.asarray(labels, dtype=np.int64)
        self.dead += int(self.live[labels].sum())
        self.live[labels] = False
        total = int(self.index.ntotal)
        if self.dead > max(64, self.rebuild_fraction * total):
            return self._rebuild()
        return {}

    def replace(self, labels: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
        """Tombstone the old nodes and add new ones (a rebuild may relabel everything)."""
        new = self.add(x)  # first, so a rebuild triggered by the removal keeps them
        moved = self.remove(labels)
        if moved:
            new = np.array([moved.get(int(i), int(i)) for i in new], dtype=np.int64)
        return new, moved

    def _rebuild(self) -> dict[int, int]:
        """Compact live vectors into a fresh graph: {old label: new label}."""
        keep = np.flatnonzero(self.live)
        vectors = self.reconstruct(keep)
        self.index = self._new()
        if len(vectors):
            self.index.add(vectors)
        self.live = np.ones(len(keep), dtype=bool)
        self.dead = 0
        return {int(old): new for new, old in enumerate(keep.tolist()) if old != new}

    def reconstruct(self, labels: np.ndarray) -> np.ndarray:
        if not len(labels):
            return np.zeros((0, self.dim), np.float32)
        storage = cast(faiss.IndexFlat, faiss.downcast_index(self.index.storage))
        xb = faiss.rev_swig_ptr(storage.get_xb(), int(storage.ntotal) * self.dim)
        return xb.reshape(-1, self.dim)[np.asarray(labels, dtype=np.int64)].copy()

    def _params(self, k: int) -> faiss.SearchParameters:
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # faiss' stub lacks it
        params.efSearch = max(self.ef_search, k)
        if self.dead:
            self._bitmap = np.packbits(self.live, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(len(self.live), faiss.swig_ptr(self._bitmap))
        return params

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = max(1, min(k, len(self)))
        return self.index.search(q, k, params=self._params(k))

    def range_search(self, q: np.ndarray, min_score: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Graph walks are top-k; widen k until the k-th score falls to the threshold."""
        out = []
        for row in q:
            k = 64
            while True:
                D, lab = self.search(row[None, :], k)
                D, lab = D[0], lab[0]
                ok = lab >= 0
                D, lab = D[ok], lab[ok]
                if len(D) == 0 or D[-1] <= min_score or k >= len(self):
                    break
                k *= 4
            keep = D > min_score
            out.append((D[keep], lab[keep]))
        return out

    def memory_bytes(self) -> int:
        hnsw = self.index.hnsw
        # faiss' stub of HNSW lacks the graph's arrays (neighbors, offsets).
        links = int(hnsw.neighbors.size()) * 4 + int(hnsw.offsets.size()) * 8  # type: ignore[attr-defined]
        return int(self.index.ntotal) * self.dim * 4 + links + int(hnsw.levels.size()) * 4

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path / "hnsw.faiss"))
        np.save(path / "hnsw-live.npy", self.live)

    def load(self, path: Path, next_label: int) -> None:
        self.index = cast(faiss.IndexHNSWFlat, faiss.read_index(str(path / "hnsw.faiss")))
        self.index.hnsw.efSearch = self.ef_search
        self.live = np.load(path / "hnsw-live.npy")
        self.dead = int((~self.live).sum())
