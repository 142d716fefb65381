"""Similar photos by dot product of L2-normalised feature vectors (MemSQL's DOT_PRODUCT idea).

Two layers:

* ``VectorIndex``: an in-memory engine keyed by photo id, in five modes —
  ``exact`` (float32, faiss IndexFlatIP), ``fp16`` (faiss scalar quantizer, half the bytes),
  ``int8`` (our own per-dimension affine int8 codes scanned by faiss's decode-free
  ``QT_8bit_direct_signed`` kernel with the scale folded into the query, a quarter of the
  bytes), ``ivf`` (IVF-Flat or IVF-SQ8, ``nprobe`` tunable) and ``hnsw`` (IndexHNSWFlat).
  The flat modes keep their codes in fixed-size segments so one query is scanned by all
  cores at once (faiss only parallelises over queries) and growth never reallocates gigabytes;
  updates overwrite a row in place, removals move the last row into the hole, so no photo
  ever forces a rebuild.
* ``SimilarityService``: loads one feature set's vectors from Postgres ``photo_vectors``
  (or from a saved index under ``<run_dir>/index/`` plus the rows changed since), then
  ``refresh()`` pulls only rows whose ``seq`` moved, and answers queries with current tags.

Scores are raw dot products; threshold semantics follow the seed: a hit has ``score > min``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import math
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import faiss
import numpy as np

from autotag.config import Settings
from autotag.errors import AutotagError

log = logging.getLogger(__name__)

MODES = ("exact", "fp16", "int8", "ivf", "hnsw")
Hit = tuple[str, float]
INDEX_FORMAT = "autotag-vector-index/1"

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def search_threads() -> int:
    """Cores used for one search (faiss's OpenMP setting, which defaults to all cores)."""
    return max(1, faiss.omp_get_max_threads())


def _thread_pool() -> ThreadPoolExecutor:
    """Shared pool that scans segments concurrently (faiss releases the GIL while it scans)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(search_threads(), thread_name_prefix="autotag-sim")
        return _pool


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


def _merge_topk(
    parts: list[tuple[np.ndarray, np.ndarray]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-segment (D, lab) results into the global top k, best first."""
    if len(parts) == 1:
        D, lab = parts[0]
    else:
        D = np.concatenate([p[0] for p in parts], axis=1)
        lab = np.concatenate([p[1] for p in parts], axis=1)
    if D.shape[1] > 1:
        order = np.argsort(-D, axis=1, kind="stable")[:, :k]
        D = np.take_along_axis(D, order, axis=1)
        lab = np.take_along_axis(lab, order, axis=1)
    return D, lab


# ---------------------------------------------------------------------------------------------
# Stores: where the codes live. Labels are int64; VectorIndex maps them to photo ids.
# ---------------------------------------------------------------------------------------------


class _FlatStore:
    """Brute-force scan over float32 / fp16 / int8 codes, kept in fixed-size faiss segments.

    Label == global row (segment * segment_rows + row). Overwrites are in place; a removal
    moves the last row into the hole, so labels stay dense and no tombstones are scanned.
    """

    def __init__(self, dim: int, kind: str, segment_rows: int = 65536) -> None:
        self.dim = dim
        self.kind = kind
        self.segment_rows = segment_rows
        self.segments: list[faiss.Index] = []
        self.n = 0
        # int8: code = rint((x - lo) / step) - 128, so x ~ lo + (code + 128) * step.
        self.lo: np.ndarray | None = None
        self.step: np.ndarray | None = None

    # -- codec ---------------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        return self.kind != "int8" or self.step is not None

    def train(self, sample: np.ndarray, margin: float = 0.1) -> None:
        """int8 only: per-dimension range from a sample, widened so later photos rarely clip."""
        if self.kind != "int8":
            return
        lo = sample.min(axis=0).astype(np.float64)
        hi = sample.max(axis=0).astype(np.float64)
        pad = np.maximum((hi - lo) * margin, 1e-6)
        lo, hi = lo - pad, hi + pad
        self.lo = lo.astype(np.float32)
        self.step = ((hi - lo) / 255.0).astype(np.float32)

    def _new_segment(self) -> faiss.Index:
        ip = faiss.METRIC_INNER_PRODUCT
        if self.kind == "exact":
            return faiss.IndexFlatIP(self.dim)
        if self.kind == "fp16":
            return faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_fp16, ip)
        return faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_8bit_direct_signed, ip)

    def _db_input(self, x: np.ndarray) -> np.ndarray:
        """What faiss encodes: the vectors, or for int8 the integer levels in [-128, 127]."""
        if self.kind != "int8":
            return x
        assert self.lo is not None and self.step is not None
        levels = np.rint((x - self.lo) / self.step) - 128.0
        return np.clip(levels, -128.0, 127.0).astype(np.float32)

    def _query_input(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query faiss scans with, score offset, score scale) per query.

        int8: x ~ lo + b * step with b the stored byte (b = level + 128), so
        q.x ~ q.lo + 128 * sum(q * step) + sum(q * step * level). faiss's x86 kernel for
        direct int8 codes quantises the query to bytes too (integer dot product), so the
        folded query q * step is itself scaled by alpha to integers in [-127, 127]:
        score ~ raw / alpha + offset. The query's rounding error is bounded and removed by
        re-ranking candidates against the decoded rows (see search / range_search).
        """
        n = len(q)
        if self.kind != "int8":
            return q, np.zeros(n, dtype=np.float64), np.ones(n, dtype=np.float64)
        assert self.lo is not None and self.step is not None
        folded = q.astype(np.float64) * self.step
        amax = np.abs(folded).max(axis=1)
        alpha = np.where(amax > 0, 127.0 / np.where(amax > 0, amax, 1.0), 1.0)
        levels = np.clip(np.rint(folded * alpha[:, None]), -127, 127).astype(np.float32)
        offset = q.astype(np.float64) @ self.lo.astype(np.float64) + 128.0 * folded.sum(axis=1)
        return np.ascontiguousarray(levels), offset, alpha

    def _query_error_bound(self, alpha: np.ndarray) -> np.ndarray:
        """Max |approximate - decoded| score from rounding the int8 query: 0.5/alpha * sum|level|."""
        return 0.5 / alpha * float(128 * self.dim)

    @property
    def code_size(self) -> int:
        return {"exact": 4, "fp16": 2, "int8": 1}[self.kind] * self.dim

    def _codes_view(self, seg: faiss.Index) -> np.ndarray:
        """Writable view of a segment's codes (valid until the segment grows)."""
        cs = self.code_size
        if seg.ntotal == 0:
            return np.zeros((0, cs), dtype=np.uint8)
        return faiss.rev_swig_ptr(seg.codes.data(), seg.ntotal * cs).reshape(seg.ntotal, cs)

    # -- mutation ------------------------------------------------------------------------
    def add(self, x: np.ndarray) -> np.ndarray:
        labels = np.arange(self.n, self.n + len(x), dtype=np.int64)
        data = self._db_input(x)
        pos = 0
        while pos < len(data):
            if not self.segments or self.segments[-1].ntotal >= self.segment_rows:
                self.segments.append(self._new_segment())
            seg = self.segments[-1]
            take = min(self.segment_rows - seg.ntotal, len(data) - pos)
            seg.add(data[pos : pos + take])
            pos += take
        self.n += len(x)
        return labels

    def replace(self, labels: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
        """Overwrite rows in place: labels do not change and nothing else moves."""
        if len(x):
            codes = self.segments[0].sa_encode(self._db_input(x))
            for i, label in enumerate(labels):
                s, r = divmod(int(label), self.segment_rows)
                self._codes_view(self.segments[s])[r] = codes[i]
        return labels, {}

    def remove(self, labels: np.ndarray) -> dict[int, int]:
        """Swap-remove: the last row fills each hole. Returns {original label: new label}
        for the rows that moved (a row can move twice in one call, hence the chain)."""
        origin_at: dict[int, int] = {}  # current position -> label the row had originally
        for label in sorted({int(x) for x in labels}, reverse=True):
            last = self.n - 1
            if label != last:
                ls, lr = divmod(last, self.segment_rows)
                ds, dr = divmod(label, self.segment_rows)
                row = self._codes_view(self.segments[ls])[lr].copy()
                self._codes_view(self.segments[ds])[dr] = row
                origin_at[label] = origin_at.pop(last, last)
            seg = self.segments[-1]
            seg.codes.resize((seg.ntotal - 1) * self.code_size)
            seg.ntotal = seg.ntotal - 1
            if seg.ntotal == 0:
                self.segments.pop()
            self.n -= 1
        return {orig: pos for pos, orig in origin_at.items() if orig != pos}

    # -- reading -------------------------------------------------------------------------
    def _gather(self, labels: np.ndarray) -> np.ndarray:
        """Code rows for labels, read straight from the segments' memory."""
        labels = np.asarray(labels, dtype=np.int64)
        out = np.empty((len(labels), self.code_size), dtype=np.uint8)
        segs, rows = np.divmod(labels, self.segment_rows)
        for si in np.unique(segs).tolist():
            pick = segs == si
            out[pick] = self._codes_view(self.segments[si])[rows[pick]]
        return out

    def reconstruct(self, labels: np.ndarray) -> np.ndarray:
        """Decoded float32 vectors (exact for float32, rounded for fp16 / int8)."""
        codes = self._gather(labels)
        if self.kind == "exact":
            return codes.view(np.float32).copy()
        if self.kind == "fp16":
            return codes.view(np.float16).astype(np.float32)
        assert self.lo is not None and self.step is not None
        return self.lo + codes.astype(np.float32) * self.step

    def _parallel(self, nq: int) -> bool:
        return nq < search_threads() and len(self.segments) > 1

    def _float_view(self, si: int) -> np.ndarray:
        """exact: a segment's rows as a float32 (rows, d) matrix, no copy."""
        return self._codes_view(self.segments[si]).view(np.float32)

    def _scan_blas(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """exact: top k by BLAS (sgemv / sgemm, multi-threaded by OpenBLAS) per segment.

        Measured on this project's 2-vCPU host, one query over 1.5 GB: faiss's IndexFlatIP
        scan reached 2.0-2.8 GB/s, numpy's ``X @ q`` 4.4-7.4 GB/s (BENCHMARKS.md), so the
        float32 mode keeps faiss as its storage and scans the same memory with BLAS.
        """
        parts = []
        for si in range(len(self.segments)):
            S = self._float_view(si) @ q.T  # (rows, nq)
            rows = S.shape[0]
            if k < rows:
                top = np.argpartition(-S, k - 1, axis=0)[:k]
            else:
                top = np.broadcast_to(np.arange(rows)[:, None], S.shape)
            D = np.take_along_axis(S, top, axis=0).T
            parts.append((np.ascontiguousarray(D), top.T + si * self.segment_rows))
        return _merge_topk(parts, k)

    def _scan(self, scan: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss's raw top k over all segments (one query: segments spread over the cores)."""
        if self.kind == "exact":
            return self._scan_blas(scan, k)

        def one(si: int) -> tuple[np.ndarray, np.ndarray]:
            seg = self.segments[si]
            D, lab = seg.search(scan, min(k, seg.ntotal))
            return D, np.where(lab >= 0, lab + si * self.segment_rows, -1)

        idx = range(len(self.segments))
        if self._parallel(len(scan)):
            parts = list(_thread_pool().map(one, idx))
        else:
            parts = [one(i) for i in idx]
        return _merge_topk(parts, k)

    def _rescore(self, q: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Exact dot products of float queries with decoded rows (labels < 0 -> -inf)."""
        safe = np.where(labels >= 0, labels, 0)
        rows = self.reconstruct(safe.reshape(-1)).reshape(*labels.shape, self.dim)
        scores = np.einsum("qkd,qd->qk", rows, q.astype(np.float32))
        return np.where(labels >= 0, scores, -np.inf).astype(np.float32)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = max(1, min(k, self.n))
        scan, offset, alpha = self._query_input(q)
        if self.kind != "int8":
            return self._scan(scan, k)
        # int8: over-fetch by the integer scan, then re-rank on decoded rows.
        wide = min(self.n, max(4 * k, k + 32))
        _, lab = self._scan(scan, wide)
        scores = self._rescore(q, lab)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(lab, order, axis=1)

    def range_search(self, q: np.ndarray, min_score: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query: (scores, labels) with score > min_score, unsorted."""
        if self.kind == "int8":
            return [self._range_int8(row[None, :], min_score) for row in q]
        if self.kind == "exact":
            return self._range_blas(q, min_score)

        def one(si: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            lims, D, lab = self.segments[si].range_search(q, float(min_score))
            return lims, D, lab + si * self.segment_rows

        idx = range(len(self.segments))
        if self._parallel(len(q)):
            parts = list(_thread_pool().map(one, idx))
        else:
            parts = [one(i) for i in idx]
        out = []
        for qi in range(len(q)):
            D = np.concatenate([p[1][p[0][qi] : p[0][qi + 1]] for p in parts])
            lab = np.concatenate([p[2][p[0][qi] : p[0][qi + 1]] for p in parts])
            keep = D > min_score
            out.append((D[keep], lab[keep]))
        return out

    def _range_blas(self, q: np.ndarray, min_score: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """exact: every row scoring > min_score, by BLAS per segment."""
        found: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(len(q))]
        for si in range(len(self.segments)):
            S = self._float_view(si) @ q.T
            rows, cols = np.nonzero(S > min_score)
            for qi in np.unique(cols).tolist():
                pick = rows[cols == qi]
                found[qi].append((S[pick, qi], pick.astype(np.int64) + si * self.segment_rows))
        out = []
        for parts in found:
            if parts:
                out.append(
                    (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
                )
            else:
                out.append((np.zeros(0, np.float32), np.zeros(0, np.int64)))
        return out

    def _range_int8(self, q: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray]:
        """Integer scan with the threshold lowered by the query-rounding bound, then exact."""
        scan, offset, alpha = self._query_input(q)
        slack = self._query_error_bound(alpha)[0]
        radius = float((min_score - slack - offset[0]) * alpha[0])

        def one(si: int) -> np.ndarray:
            _, _, lab = self.segments[si].range_search(scan, radius)
            return lab + si * self.segment_rows

        idx = range(len(self.segments))
        parts = list(_thread_pool().map(one, idx)) if len(self.segments) > 1 else [one(0)]
        lab = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        scores = self._rescore(q, lab[None, :])[0]
        keep = scores > min_score
        return scores[keep], lab[keep]

    def memory_bytes(self) -> int:
        return sum(int(seg.codes.size()) for seg in self.segments)

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: Path) -> None:
        for i, seg in enumerate(self.segments):
            faiss.write_index(seg, str(path / f"segment-{i:05d}.faiss"))
        if self.kind == "int8" and self.step is not None:
            np.save(path / "int8-lo.npy", self.lo)
            np.save(path / "int8-step.npy", self.step)

    def load(self, path: Path, n: int) -> None:
        files = sorted(path.glob("segment-*.faiss"))
        self.segments = [faiss.read_index(str(f)) for f in files]
        self.n = sum(s.ntotal for s in self.segments)
        if self.n != n:
            raise ValueError(f"saved index has {self.n} rows, metadata says {n}")
        if self.kind == "int8" and (path / "int8-step.npy").is_file():
            self.lo = np.load(path / "int8-lo.npy")
            self.step = np.load(path / "int8-step.npy")


class _IVFStore:
    """IVF-Flat / IVF-SQ8 with a hash-table direct map, so removal is O(1) per vector."""

    def __init__(self, dim: int, nlist: int | None, nprobe: int | None, storage: str) -> None:
        self.dim = dim
        self.nlist_wanted = nlist
        self.nprobe_wanted = nprobe
        self.storage = storage
        self.index: faiss.IndexIVF | None = None
        self.next_label = 0

    @property
    def is_trained(self) -> bool:
        return self.index is not None

    @property
    def n(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    @staticmethod
    def auto_nlist(n: int) -> int:
        """~4 sqrt(n) lists, but at least 39 training points per centroid (faiss's advice)."""
        return int(max(1, min(4 * math.sqrt(n), n // 39, 65536)))

    def train(self, sample: np.ndarray) -> None:
        nlist = self.nlist_wanted or self.auto_nlist(len(sample))
        codec = "SQ8" if self.storage == "sq8" else "Flat"
        # index_factory's result owns the quantizer; keep that object (not a borrowed view).
        index = faiss.index_factory(self.dim, f"IVF{nlist},{codec}", faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 1234
        index.train(sample)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
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
        return self.index.search(q, max(1, min(k, self.n)))

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
        body = sum(inv.list_size(i) * (code + 8) for i in range(self.index.nlist))
        return int(body + self.index.nlist * self.dim * 4 + self.n * 16)  # + hash map entries

    def save(self, path: Path) -> None:
        if self.index is not None:
            faiss.write_index(self.index, str(path / "ivf.faiss"))

    def load(self, path: Path, next_label: int) -> None:
        f = path / "ivf.faiss"
        if f.is_file():
            self.index = faiss.read_index(str(f))
            self.index.set_direct_map_type(faiss.DirectMap.Hashtable)
            self.set_nprobe(self.nprobe_wanted)
        self.next_label = next_label


class _HNSWStore:
    """IndexHNSWFlat. Graphs cannot delete, so a removed or updated vector is a tombstone
    (filtered out during the graph walk by an IDSelectorBitmap) and the graph is rebuilt
    once more than ``rebuild_fraction`` of its nodes are dead."""

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
        self.is_trained = True

    def _new(self) -> faiss.IndexHNSWFlat:
        index = faiss.IndexHNSWFlat(self.dim, self.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    @property
    def n(self) -> int:
        return int(self.index.ntotal) - self.dead

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
        storage = faiss.downcast_index(self.index.storage)
        xb = faiss.rev_swig_ptr(storage.get_xb(), int(storage.ntotal) * self.dim)
        return xb.reshape(-1, self.dim)[np.asarray(labels, dtype=np.int64)].copy()

    def _params(self, k: int) -> faiss.SearchParametersHNSW:
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self.ef_search, k)
        if self.dead:
            self._bitmap = np.packbits(self.live, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(len(self.live), faiss.swig_ptr(self._bitmap))
        return params

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = max(1, min(k, self.n))
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
                if len(D) == 0 or D[-1] <= min_score or k >= self.n:
                    break
                k *= 4
            keep = D > min_score
            out.append((D[keep], lab[keep]))
        return out

    def memory_bytes(self) -> int:
        hnsw = self.index.hnsw
        links = int(hnsw.neighbors.size()) * 4 + int(hnsw.offsets.size()) * 8
        return int(self.index.ntotal) * self.dim * 4 + links + int(hnsw.levels.size()) * 4

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path / "hnsw.faiss"))
        np.save(path / "hnsw-live.npy", self.live)

    def load(self, path: Path, next_label: int) -> None:
        self.index = faiss.read_index(str(path / "hnsw.faiss"))
        self.index.hnsw.efSearch = self.ef_search
        self.live = np.load(path / "hnsw-live.npy")
        self.dead = int((~self.live).sum())


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


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
        self._store: Any = self._make_store()
        if not self._store.is_trained:
            self._store = _FlatStore(self.dim, "exact", segment_rows)  # bootstrap until trained

    def _make_store(self) -> Any:
        p = self.params
        if self.mode in ("exact", "fp16", "int8"):
            return _FlatStore(self.dim, self.mode, p["segment_rows"])
        if self.mode == "ivf":
            return _IVFStore(self.dim, p["nlist"], p["nprobe"], p["ivf_storage"])
        return _HNSWStore(
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
        if self.mode in ("int8", "ivf") and isinstance(self._store, _FlatStore):
            if self._store.kind == "exact":
                return "exact"
        return self.mode

    @property
    def ids(self) -> list[str]:
        return list(self._label_of)

    @property
    def nprobe(self) -> int | None:
        return self._store.nprobe if isinstance(self._store, _IVFStore) else None

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self.params["nprobe"] = value
        if isinstance(self._store, _IVFStore):
            self._store.set_nprobe(value)

    @property
    def ef_search(self) -> int:
        return int(self.params["ef_search"])

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self.params["ef_search"] = int(value)
        if isinstance(self._store, _HNSWStore):
            self._store.ef_search = int(value)
            self._store.index.hnsw.efSearch = int(value)

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
        single = np.ndim(query) == 1
        Q = as_matrix(query, self.dim)
        with self._lock:
            if len(self) == 0 or top_k <= 0:
                results: list[list[Hit]] = [[] for _ in range(len(Q))]
            else:
                D, lab = self._store.search(Q, int(top_k))
                results = [self._to_hits(D[i], lab[i], min_score) for i in range(len(Q))]
        return results[0] if single else results

    def range_search(self, query: Any, min_score: float) -> list[Hit] | list[list[Hit]]:
        """Every photo scoring > min_score (the seed's ``DOT_PRODUCT(..) > 0.9``), best first."""
        single = np.ndim(query) == 1
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
        return results[0] if single else results

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
                "store_rows": int(getattr(self._store, "n", len(self))),
                "next_label": int(getattr(self._store, "next_label", 0)),
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
            store: Any = _FlatStore(index.dim, "exact", p["segment_rows"])
        else:
            store = index._make_store()
        if isinstance(store, _FlatStore):
            store.load(path, meta["store_rows"])
        else:
            store.load(path, meta["next_label"])
        index._store = store
        text = (path / "ids.txt").read_text()
        ids = text.split("\n") if text else []
        labels = np.load(path / "labels.npy")
        if len(ids) != len(labels) or len(ids) != meta["count"]:
            raise ValueError(f"{path}: ids and labels disagree")
        for pid, label in zip(ids, labels.tolist(), strict=True):
            index._bind(pid, int(label))
        return index, meta.get("extra", {})


def find_duplicate_groups(
    index: VectorIndex, min_score: float = 0.98, batch: int = 1024
) -> list[dict[str, Any]]:
    """Groups of near-identical photos: every pair scoring > min_score, joined by union-find."""
    parent: dict[str, str] = {}
    best: dict[tuple[str, str], float] = {}

    def find(x: str) -> str:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    for ids, X in index.iter_vectors(batch):
        for pid, hits in zip(ids, index.range_search(X, min_score), strict=True):
            for other, score in hits:
                if other == pid:
                    continue
                a, b = sorted((pid, other))
                best[(a, b)] = max(score, best.get((a, b), -math.inf))
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, list[str]] = {}
    for a, b in best:
        for x in (a, b):
            members = groups.setdefault(find(x), [])
            if x not in members:
                members.append(x)
    top: dict[str, float] = {}
    for (a, _), score in best.items():
        root = find(a)
        top[root] = max(top.get(root, -math.inf), score)
    out = [
        {"photo_ids": sorted(members), "size": len(members), "top_score": top[root]}
        for root, members in groups.items()
    ]
    out.sort(key=lambda g: (-g["size"], -g["top_score"], g["photo_ids"][0]))
    return out


# ---------------------------------------------------------------------------------------------
# Postgres
# ---------------------------------------------------------------------------------------------


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


def connect(settings: Settings) -> Any:
    """An autocommit connection (schema migrated) or a one-line ServiceError."""
    from autotag.storage import postgres as store

    return store.connect(settings)


def resolve_feature_set(name: str) -> tuple[str, int | None]:
    """('cnn@<version>', dim) for a bare name, as the bolt writes photo_vectors.feature_set.

    Vectors of different feature-set versions are not comparable, so a bare name means the
    version this code extracts; an explicit ``name@version`` is used as given.
    """
    base, _, version = name.partition("@")
    try:
        from autotag.vision.features import feature_set_spec

        spec = feature_set_spec(base)
    except (ImportError, AutotagError):
        spec = None
    if spec is None:
        return name, None
    current = str(spec["version"])
    dim = int(spec["dim"])  # type: ignore[call-overload]
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


def _vector_cursor(conn: Any, name: str | None = None) -> Any:
    """A binary cursor that returns real[] columns as float32 arrays (server-side if named)."""
    cur = conn.cursor(name=name, binary=True) if name else conn.cursor(binary=True)
    from psycopg import postgres

    cur.adapters.register_loader(postgres.types["float4"].array_oid, _float4_array_loader())
    return cur


class SimilarityService:
    """A VectorIndex kept in step with Postgres ``photo_vectors`` for one feature set.

    Restart-safe: ``load()`` rebuilds from Postgres (or reads ``<run_dir>/index/<set>-<mode>``
    saved by ``save()`` and applies the rows changed since); ``refresh()`` applies rows whose
    ``seq`` is newer than what was seen, plus a look-back window so rows from transactions
    that committed out of ``seq`` order are not missed.
    """

    def __init__(
        self,
        settings: Settings,
        mode: str = "exact",
        feature_set: str | None = None,
        *,
        persist: bool = False,
        lookback: int = 1000,
        **index_params: Any,
    ) -> None:
        if mode not in MODES:
            raise AutotagError(f"unknown similarity mode {mode!r}; choose {', '.join(MODES)}")
        self.settings = settings
        self.mode = mode
        self.feature_set, self._dim = resolve_feature_set(feature_set or settings.feature_set)
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
            self._conn = connect(self.settings)
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
        return self.settings.run_dir / "index" / f"{safe}-{self.mode}"

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

    def _stream(self, where: str, params: tuple[Any, ...]) -> Iterator[tuple[str, int, Any]]:
        """Rows (photo_id, seq, feature) of this feature set through a server-side cursor."""
        name = f"autotag_sim_{os.getpid()}_{threading.get_ident()}_{time.monotonic_ns()}"
        with self.conn.transaction():
            with _vector_cursor(self.conn, name) as cur:
                cur.itersize = 2000
                cur.execute(
                    "SELECT photo_id, seq, feature FROM photo_vectors "
                    f"WHERE feature_set = %s AND {where} ORDER BY seq",
                    (self.feature_set, *params),
                )
                yield from cur

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
        self._apply(self._stream("TRUE", ()))
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
        row = self.conn.execute(
            "SELECT d.oid, to_regclass('photo_vectors')::oid FROM pg_database d "
            "WHERE d.datname = current_database()"
        ).fetchone()
        try:
            (sysid,) = self.conn.execute(
                "SELECT system_identifier FROM pg_control_system()"
            ).fetchone()
        except Exception:  # not allowed for this role: oids alone still catch most cases
            sysid = "?"
        return f"{sysid}:{row[0]}:{row[1]}"

    def _load_saved(self) -> None:
        index, extra = VectorIndex.load(self.index_dir)
        if extra.get("feature_set") != self.feature_set:
            raise ValueError("saved for another feature set")
        if extra.get("identity") != self._identity():
            raise ValueError("saved from another database or photo_vectors table")
        (top,) = self.conn.execute("SELECT coalesce(max(seq), 0) FROM photo_vectors").fetchone()
        if int(extra.get("high_seq", 0)) > int(top):
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
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT photo_id, seq FROM photo_vectors WHERE feature_set = %s AND seq > %s",
                (self.feature_set, low),
            )
            changed = [pid for pid, seq in cur if seq > self._seq_of.get(pid, -1)]
        if not changed:
            return 0
        applied = 0
        for start in range(0, len(changed), 5000):
            chunk = changed[start : start + 5000]
            applied += self._apply(self._stream("photo_id = ANY(%s)", (chunk,)))
        return applied

    def _reconcile_deletions(self) -> int:
        """Drop photos whose vector rows were deleted while the saved index sat on disk."""
        assert self.index is not None
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT photo_id FROM photo_vectors WHERE feature_set = %s", (self.feature_set,)
            )
            present = {row[0] for row in cur}
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
        with _vector_cursor(self.conn) as cur:
            cur.execute(
                "SELECT feature FROM photo_vectors WHERE photo_id = %s AND feature_set = %s",
                (photo_id, self.feature_set),
            )
            row = cur.fetchone()
        return None if row is None else row[0]

    @_locked
    def resolve_photo_id(self, prefix: str) -> str:
        """Full photo id from an id or a unique prefix (>= 6 hex chars) of one with a vector."""
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT photo_id FROM photo_vectors WHERE feature_set = %s AND photo_id = %s",
                (self.feature_set, prefix),
            )
            if cur.fetchone():
                return prefix
            if len(prefix) >= 6:
                pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                cur.execute(
                    "SELECT photo_id FROM photo_vectors WHERE feature_set = %s "
                    "AND photo_id LIKE %s LIMIT 2",
                    (self.feature_set, pattern),
                )
                found = [r[0] for r in cur.fetchall()]
                if len(found) == 1:
                    return found[0]
                if len(found) > 1:
                    raise AutotagError(f"photo id prefix {prefix!r} is ambiguous")
        raise AutotagError(
            f"photo {prefix} has no {self.feature_set!r} vector (unknown, or not tagged yet)"
        )

    @_locked
    def current_tags(self, photo_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Each photo's current tags (model_version = photos.model_version), best first."""
        out: dict[str, list[dict[str, Any]]] = {pid: [] for pid in photo_ids}
        if not photo_ids:
            return out
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT t.photo_id, t.tag, t.score FROM tags t "
                "JOIN photos p ON p.photo_id = t.photo_id AND p.model_version = t.model_version "
                "WHERE t.photo_id = ANY(%s) ORDER BY t.photo_id, t.score DESC, t.tag",
                (list(photo_ids),),
            )
            for pid, tag, score in cur:
                out[pid].append({"tag": tag, "score": round(float(score), 6)})
        return out

    def _with_tag(self, photo_ids: Sequence[str], tag: str) -> set[str]:
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT t.photo_id FROM tags t JOIN photos p "
                "ON p.photo_id = t.photo_id AND p.model_version = t.model_version "
                "WHERE t.tag = %s AND t.photo_id = ANY(%s)",
                (tag, list(photo_ids)),
            )
            return {row[0] for row in cur}

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
                raw = self.index.range_search(q, min_score)
            else:
                raw = self.index.search(q, k, min_score)
            hits = [(pid, s) for pid, s in raw if pid not in skip]  # type: ignore[misc]
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
        pid = self.resolve_photo_id(photo_id)
        vec = self.vector_of(pid)
        assert vec is not None
        return self.similar(vec, top, min_score, tag, exclude=(pid,))


_services: dict[tuple[str, str, str, str], SimilarityService] = {}
_services_lock = threading.Lock()


def get_service(
    settings: Settings, mode: str = "exact", feature_set: str | None = None
) -> SimilarityService:
    """A process-wide service per (database, run dir, feature set, mode), loaded once and
    refreshed on each call, so repeated queries (HTTP API) never reload the index."""
    fs = feature_set or settings.feature_set
    key = (settings.postgres_dsn, str(settings.run_dir), fs, mode)
    with _services_lock:
        svc = _services.get(key)
        if svc is None:
            svc = _services[key] = SimilarityService(settings, mode, fs, persist=True)
    with svc.lock:
        if svc.index is None:
            svc.load()
        else:
            svc.refresh()
    return svc


def _service(settings: Settings, mode: str, service: SimilarityService | None) -> SimilarityService:
    if service is None:
        return get_service(settings, mode)
    service.refresh()
    return service


def similar_to_photo(
    settings: Settings,
    photo_id: str,
    top: int = 10,
    min_score: float | None = None,
    tag: str | None = None,
    mode: str = "exact",
    service: SimilarityService | None = None,
) -> list[dict[str, Any]]:
    """Photos most similar to a stored photo (itself excluded), with their current tags."""
    return _service(settings, mode, service).similar_to_photo(photo_id, top, min_score, tag)


def similar_to_vector(
    settings: Settings,
    vector: Any,
    top: int = 10,
    min_score: float | None = None,
    tag: str | None = None,
    mode: str = "exact",
    service: SimilarityService | None = None,
) -> list[dict[str, Any]]:
    """Photos most similar to a feature vector, with their current tags."""
    return _service(settings, mode, service).similar(vector, top, min_score, tag)


def similar_to_file(
    settings: Settings,
    path: str | Path,
    top: int = 10,
    min_score: float | None = None,
    tag: str | None = None,
    mode: str = "exact",
    service: SimilarityService | None = None,
) -> list[dict[str, Any]]:
    """Photos similar to an image file. A file already in the system uses its stored
    vector; any other is featurized by the same Tagger the Storm bolt runs."""
    path = Path(path)
    data = path.read_bytes()
    photo_id = hashlib.sha256(data).hexdigest()
    svc = _service(settings, mode, service)
    vector = svc.vector_of(photo_id)
    if vector is None:
        from autotag.vision.decode import DecodeLimits
        from autotag.vision.features import FeatureOptions
        from autotag.vision.tagger import Tagger  # heavy (ONNX runtime): only when needed

        result = Tagger.load(
            settings.models_dir,
            feature_options=FeatureOptions(settings.model_dirs, settings.tagging_threads),
            limits=DecodeLimits(
                settings.max_file_bytes, settings.max_pixels, settings.max_dimension
            ),
            min_score=settings.min_tag_score,
            max_tags=settings.max_tags,
        ).tag_file(path)
        if getattr(result, "vector", None) is None:
            reason = getattr(result, "reason", None) or "no feature vector"
            raise AutotagError(f"{path}: cannot featurize ({reason})")
        vector = np.asarray(result.vector, dtype=np.float32)
    return svc.similar(vector, top, min_score, tag)


def duplicates(
    settings: Settings,
    min_score: float = 0.98,
    mode: str = "exact",
    service: SimilarityService | None = None,
) -> list[dict[str, Any]]:
    """Groups of near-identical photos (pairwise score > min_score, transitively joined)."""
    svc = _service(settings, mode, service)
    with svc.lock:
        assert svc.index is not None
        return find_duplicate_groups(svc.index, min_score)
