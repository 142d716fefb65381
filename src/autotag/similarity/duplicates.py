"""Near-identical photos: every pair scoring above a threshold, joined into groups.

A group is transitive (a ~ b and b ~ c puts a, b and c together), found by union-find over
one range search per photo (in batches).
"""

from __future__ import annotations

import math
from typing import Any

from autotag.similarity.index import VectorIndex


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
        for pid, hits in zip(ids, index.range_search_rows(X, min_score), strict=True):
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
    out: list[dict[str, Any]] = [
        {"photo_ids": sorted(members), "size": len(members), "top_score": top[root]}
        for root, members in groups.items()
    ]
    out.sort(key=lambda g: (-g["size"], -g["top_score"], g["photo_ids"][0]))
    return out
