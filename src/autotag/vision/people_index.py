"""Fast nearest-person matching and exact DBSCAN neighbourhoods for face descriptors.

``PeopleIndex`` answers the same question as ``face_identity.nearest_person`` (the nearest
reference descriptor within ``max_distance``, and whose it is) without comparing the face
with every reference: each person's references get a centroid ``c`` and a radius ``R`` (the
farthest reference from ``c``). By the triangle inequality no reference of that person is
closer than ``|e - c| - R``, so one product against the centroids gives a lower bound per
person; people are then opened nearest bound first, and the search stops as soon as the next
bound exceeds the best distance found (or ``max_distance``). The answer is the exhaustive
one (up to float32 rounding, which a small slack on the bound absorbs).

``radius_graph`` is the ε-neighbourhood graph DBSCAN needs, computed exactly as blocked
float32 matrix products over the upper triangle only (half the work of scikit-learn's
brute force, which also copies float32 blocks to float64); ``face_identity.cluster`` hands it
to DBSCAN as a precomputed sparse graph, so the labels are DBSCAN's own.

Plain values in and out (numpy arrays); no configuration.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

# Absorbs float32 rounding in the distances (a few 1e-6 on unit-scale descriptors).
_SLACK = 1e-4


def _sq(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


class PeopleIndex:
    """The known people's reference descriptors, grouped by person, with centroid bounds."""

    def __init__(self, references: np.ndarray, owners: Sequence[int] | np.ndarray) -> None:
        refs = np.asarray(references, dtype=np.float32)
        own = np.asarray(owners, dtype=np.int64).reshape(-1)
        refs = refs.reshape(len(own), -1) if len(own) else refs.reshape(0, refs.shape[-1])
        order = np.argsort(own, kind="stable")
        self.refs = np.ascontiguousarray(refs[order])
        self.owners = own[order]
        self.norms = _sq(self.refs)
        self.people, starts, counts = np.unique(self.owners, return_index=True, return_counts=True)
        self.bounds = np.append(starts, len(self.owners)).astype(np.int64)
        if len(self.people):
            sums = np.add.reduceat(self.refs.astype(np.float64), starts, axis=0)
            centroids = sums / counts[:, None]
            spread = np.linalg.norm(
                self.refs.astype(np.float64) - np.repeat(centroids, counts, axis=0), axis=1
            )
            self.radii = np.maximum.reduceat(spread, starts)
        else:
            centroids = np.zeros((0, self.refs.shape[1]))
            self.radii = np.zeros(0)
        self.centroids = np.ascontiguousarray(centroids.astype(np.float32))
        self.cnorms = _sq(self.centroids)

    def __len__(self) -> int:
        return len(self.owners)

    def nearest(
        self,
        embedding: np.ndarray,
        max_distance: float,
        refused: Sequence[int] = (),
    ) -> tuple[int, float] | None:
        """(person id, distance) of the nearest reference within ``max_distance``, skipping
        the people in ``refused``; None when nobody is that close."""
        if len(self.people) == 0:
            return None
        e = np.asarray(embedding, dtype=np.float32).reshape(-1)
        ee = float(e @ e)
        dc = np.sqrt(np.maximum(self.cnorms - 2.0 * (self.centroids @ e) + ee, 0.0))
        lower = dc - self.radii - _SLACK
        if refused:
            lower = np.where(np.isin(self.people, np.asarray(list(refused))), np.inf, lower)
        candidates = np.flatnonzero(lower <= max_distance)
        if len(candidates) == 0:
            return None
        best_d, best_p = float(max_distance), -1
        for k in candidates[np.argsort(lower[candidates], kind="stable")]:
            if lower[k] > best_d:
                break
            a, b = self.bounds[k], self.bounds[k + 1]
            d2 = self.norms[a:b] - 2.0 * (self.refs[a:b] @ e) + ee
            d = float(np.sqrt(max(float(d2.min()), 0.0)))
            if d < best_d or (d == best_d and best_p < 0):
                best_d, best_p = d, int(self.people[k])
        if best_p < 0:
            return None
        return best_p, best_d


def radius_graph(x: np.ndarray, eps: float, block: int = 2048) -> sparse.csr_matrix:
    """The pairs of rows of ``x`` at most ``eps`` apart (Euclidean), as a symmetric sparse
    distance matrix with the diagonal stored (a point is its own neighbour; a distance of 0
    is stored as 1e-12 so it stays an explicit entry)."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    n = len(x)
    sq = _sq(x)
    eps2 = float(eps) ** 2
    margin = 1e-4 * max(1.0, eps2)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    half = sq / 2.0
    for i in range(0, n, block):
        xi = x[i : i + block]
        # |a - b|² <= eps² ⟺ a·b - |b|²/2 >= |a|²/2 - eps²/2: one product, one subtraction
        # in place and one comparison (no n×n temporaries beyond the block).
        floor = (half[i : i + block] - (eps2 + margin) / 2.0)[:, None]
        for j in range(i, n, block):
            p = xi @ x[j : j + block].T
            np.subtract(p, half[None, j : j + block], out=p)
            r, c = np.nonzero(p >= floor)
            if len(r) == 0:
                continue
            r = r + i
            c = c + j
            if i == j:
                upper = r < c
                r, c = r[upper], c[upper]
            # Exact check of the kept pairs in float64 (float32 products round near eps).
            diff = x[r].astype(np.float64) - x[c].astype(np.float64)
            dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
            ok = dist <= eps
            rows.append(r[ok])
            cols.append(c[ok])
            vals.append(np.maximum(dist[ok], 1e-12))
    r = np.concatenate([*rows, np.arange(n)]) if rows else np.arange(n)
    c = np.concatenate([*cols, np.arange(n)]) if cols else np.arange(n)
    v = np.concatenate([*vals, np.full(n, 1e-12)]) if vals else np.full(n, 1e-12)
    off = r != c
    rr = np.concatenate([r, c[off]])
    cc = np.concatenate([c, r[off]])
    vv = np.concatenate([v, v[off]])
    return sparse.csr_matrix((vv, (rr, cc)), shape=(n, n))


__all__ = ["PeopleIndex", "radius_graph"]
