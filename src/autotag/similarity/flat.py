"""Brute-force stores: every query scans every vector, as float32, fp16 or int8 codes.

``exact`` keeps float32 (scanned by BLAS), ``fp16`` halves the bytes (faiss's scalar
quantizer), ``int8`` quarters them: our own per-dimension affine codes, scanned by faiss's
decode-free ``QT_8bit_direct_signed`` kernel with the scale folded into the query, then
re-ranked on the decoded rows. Codes live in fixed-size faiss segments so one query is
scanned by all cores at once and growth never reallocates gigabytes; an update overwrites
its row in place and a removal moves the last row into the hole, so nothing is rebuilt.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import faiss
import numpy as np

from autotag.similarity.threads import search_threads, thread_pool


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


class FlatStore:
    """Brute-force scan over float32 / fp16 / int8 codes, kept in fixed-size faiss segments.

    Label == global row (segment * segment_rows + row). Overwrites are in place; a removal
    moves the last row into the hole, so labels stay dense and no tombstones are scanned.
    """

    def __init__(self, dim: int, kind: str, segment_rows: int = 65536) -> None:
        self.dim = dim
        self.kind = kind
        self.segment_rows = segment_rows
        # Flat and scalar-quantizer segments alike keep their codes in one array.
        self.segments: list[faiss.IndexFlatCodes] = []
        self.n = 0
        # int8: code = rint((x - lo) / step) - 128, so x ~ lo + (code + 128) * step.
        self.lo: np.ndarray | None = None
        self.step: np.ndarray | None = None

    def __len__(self) -> int:
        return self.n

    @property
    def next_label(self) -> int:
        """Labels are row positions, rebuilt from the rows on load: nothing to record."""
        return 0

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

    def _new_segment(self) -> faiss.IndexFlatCodes:
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

    def _codes_view(self, seg: faiss.IndexFlatCodes) -> np.ndarray:
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

        For one query numpy's ``X @ q`` scans faster than faiss's IndexFlatIP (BENCHMARKS.md),
        so the float32 mode keeps faiss as its storage and scans the same memory with BLAS.
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
            parts = list(thread_pool().map(one, idx))
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
            parts = list(thread_pool().map(one, idx))
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
        parts = list(thread_pool().map(one, idx)) if len(self.segments) > 1 else [one(0)]
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
        if self.kind == "int8" and self.lo is not None and self.step is not None:
            np.save(path / "int8-lo.npy", self.lo)
            np.save(path / "int8-step.npy", self.step)

    def load(self, path: Path, next_label: int) -> None:
        files = sorted(path.glob("segment-*.faiss"))
        # read_index returns the concrete class (what save wrote); faiss' stub says Index.
        self.segments = [cast(faiss.IndexFlatCodes, faiss.read_index(str(f))) for f in files]
        self.n = sum(s.ntotal for s in self.segments)
        if self.kind == "int8" and (path / "int8-step.npy").is_file():
            self.lo = np.load(path / "int8-lo.npy")
            self.step = np.load(path / "int8-step.npy")
