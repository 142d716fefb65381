"""The photos a learned tag is least sure about: the fastest way to improve it is a yes/no
answer on the stored photos whose probability sits nearest the tag's threshold.

Probabilities come from the active bundle's learned row for the tag, applied to the stored
vectors (``storage.learned.vector_chunks``), as the re-scoring pass does; photos already
labelled with the tag are left out (their answer is known).
"""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Any

import psycopg

from autotag.errors import ModelError
from autotag.learning.learned_bundle import learned_rows, row_probabilities
from autotag.storage import learned as store
from autotag.vision.bundle import load_active


def least_sure(
    conn: psycopg.Connection[Any], models_dir: Path, tag: str, n: int = 12
) -> list[dict[str, Any]]:
    """Up to ``n`` unlabelled stored photos whose probability for ``tag`` is nearest its
    threshold: ``[{photo_id, probability, threshold, tagged}]``, least sure first."""
    bundle = load_active(Path(models_dir))
    row = learned_rows(bundle).get(tag)
    if row is None:
        raise ModelError(f"{tag!r} is not a learned tag of the active bundle")
    threshold = float(row["thresholds"])
    labelled = {pid for pid, t, _pos, _at in store.list_labels(conn, tag) if t == tag}
    best: list[tuple[float, str, float]] = []  # (-distance, photo, p): a max-heap of n
    for ids, X in store.vector_chunks(conn, bundle.feature_key):
        if not len(ids):
            continue
        probs = row_probabilities(row, X)
        for pid, p in zip(ids, probs.tolist(), strict=True):
            if pid in labelled:
                continue
            item = (-abs(p - threshold), pid, p)
            if len(best) < n:
                heapq.heappush(best, item)
            elif item > best[0]:
                heapq.heapreplace(best, item)
    ranked = sorted(best, key=lambda x: (-x[0], x[1]))
    return [
        {
            "photo_id": pid,
            "probability": round(float(p), 4),
            "threshold": round(threshold, 4),
            "tagged": p >= threshold,
        }
        for _d, pid, p in ranked
    ]
