"""Inverted-file store: vectors bucketed by nearest centroid, a query scans only a few buckets.

IVF-Flat keeps float32 rows, IVF-SQ8 one byte per dimension. Centroids are learnt from the
first vectors (``train``); ``nprobe`` trades recall for speed. A hash-table direct map makes
removal O(1) per vector, so an update is a removal plus an add under a fresh label.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import cast

import faiss
import numpy as np

from autotag.similarity.threads import search_threads


class IVFStore:
    """IVF-Flat / IVF-SQ8 with a hash-table direct map, so removal is O(1) per vector."""

    def __init__(self, dim: int, nlist: int | None, nprobe: int | None, storage: str) -> None:
        self.dim = dim
        self.nlist_wanted = nlist
        self.nprobe_wanted = nprobe
        self.storage = storage
        self.index: faiss.IndexIVF | None = None
        # Labels are ids inside faiss, never reused; saved with the index (see load).
        self.next_label = 0

    @property
    def is_trained(self) -> bool:
        return self.index is not None

    def __len__(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    @staticmethod
    def auto_nlist(n: int) -> int:
        """~4 sqrt(n) lists, but at least 39 training points per centroid (faiss's advice)."""
        return int(max(1, min(4 * math.sqrt(n), n // 39, 65536)))

    def train(self, sample: np.ndarray) -> None:
        nlist = self.nlist_wanted or self.auto_nlist(len(sample))
        codec = "SQ8" if self.storage == "sq8" else "Flat"
        # index_factory's result owns the quantizer; keep that object (not a borrowed view).
        # (index_factory returns the concrete class; faiss' stub says Index.)
        index = cast(
            faiss.IndexIVF,
            faiss.index_factory(self.dim, f"IVF{nlist},{codec}", faiss.METRIC_INNER_PRODUCT),
        )
        index.cp.seed = 1234
        index.train(sample)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]  # faiss' stub lacks DirectMap
        self.index = index
        self.set_nprobe(self.nprobe_wanted)

    def set_nprobe(self, nprobe: int | None) -> None:
        self.nprobe_wanted = nprobe
        if self.index is not None:
            nl = self.index.nlist
            self.index.nprobe = int(min(nl, nprobe or max(1, min(nl, max(8, nl // 8)))))

    @property
    def nprobe(self) -> int | None:
        return None if self.index is None else int(self.index.nprobe)

    def add(self, x: np.ndarray) -> np.ndarray:
        assert self.index is not None
        labels = np.arange(self.next_label, self.next_label + len(x), dtype=np.int64)
        self.next_label += len(x)
        self.index.add_with_ids(x, labels)
        return labels

    def remove(self, labels: np.ndarray) -> dict[int, int]:
        assert self.index is not None
        arr = np.ascontiguousarray(labels, dtype=np.int64)
        if len(arr):
            self.index.remove_ids(faiss.IDSelectorArray(len(arr), faiss.swig_ptr(arr)))
        return {}

    def replace(self, labels: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
        self.remove(labels)
        return self.add(x), {}

    def reconstruct(self, labels: np.ndarray) -> np.ndarray:
        assert self.index is not None
        return (
            np.stack([self.index.reconstruct(int(i)) for i in labels])
            if len(labels)
            else (np.zeros((0, self.dim), np.float32))
        )

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        assert self.index is not None
        # One query: spread its probed lists over the cores instead of one core per query.
        self.index.parallel_mode = 1 if len(q) < search_threads() else 0
        return self.index.search(q, max(1, min(k, len(self))))

    def range_search(self, q: np.ndarray, min_score: float) -> list[tuple[np.ndarray, np.ndarray]]:
        assert self.index is not None
        self.index.parallel_mode = 0
        lims, D, lab = self.index.range_search(q, float(min_score))
        out = []
        for i in range(len(q)):
            d, l_ = D[lims[i] : lims[i + 1]], lab[lims[i] : lims[i + 1]]
            keep = d > min_score
            out.append((d[keep], l_[keep]))
        return out

    def memory_bytes(self) -> int:
        if self.index is None:
            return 0
        inv = self.index.invlists
        code = self.index.code_size
        body = 0
        if inv is not None:  # an index always has its lists; faiss' stub says Optional
            body = sum(int(inv.list_size(i)) * (code + 8) for i in range(self.index.nlist))
        return int(body + self.index.nlist * self.dim * 4 + len(self) * 16)  # + hash map entries

    def save(self, path: Path) -> None:
        if self.index is not None:
            faiss.write_index(self.index, str(path / "ivf.faiss"))

    def load(self, path: Path, next_label: int) -> None:
        f = path / "ivf.faiss"
        if f.is_file():
            index = cast(faiss.IndexIVF, faiss.read_index(str(f)))  # the class save() wrote
            index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]  # faiss' stub lacks DirectMap
            self.index = index
            self.set_nprobe(self.nprobe_wanted)
        self.next_label = next_label
