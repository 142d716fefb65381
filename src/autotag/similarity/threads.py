"""Cores for one search, and the shared pool that scans a flat index's segments at once.

faiss parallelises over queries only, so a single query would use one core; the flat store
hands each of its segments to this pool instead (faiss releases the GIL while it scans).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import faiss

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def search_threads() -> int:
    """Cores used for one search (faiss's OpenMP setting, which defaults to all cores)."""
    return max(1, faiss.omp_get_max_threads())


def thread_pool() -> ThreadPoolExecutor:
    """The process's pool for scanning segments concurrently, created on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(search_threads(), thread_name_prefix="autotag-sim")
        return _pool
