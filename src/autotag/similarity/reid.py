"""Re-identification: the same person in other segments, videos and cameras, by the cosine of
the CNN vectors kept for detections, searched with the similarity engine's ``VectorIndex``.

A query is a stored detection (its own segment is left out: the same walker a second later
proves nothing) or an image: the best person box found in it, else the whole image. Results
are the best detection per segment, best first, since a walker is seen in many frames.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from autotag.errors import AutotagError
from autotag.similarity.index import VectorIndex
from autotag.storage import videos
from autotag.vision.features import FeatureSet, l2_normalize
from autotag.vision.people import Box, PeopleDetector, crop_square

DEFAULT_FEATURE_SET = "cnn@1"


def embed_image(bgr: np.ndarray, embedder: FeatureSet, people: PeopleDetector) -> np.ndarray:
    """The query vector of an image, cropped as the video bolt crops: its best person box,
    or (no person found) the whole image."""
    boxes = people.detect(bgr)
    box = boxes[0] if boxes else Box(0, 0, bgr.shape[1], bgr.shape[0], 0.0)
    return l2_normalize(embedder.extract([crop_square(bgr, box)]))[0]


class ReidIndex:
    """Detection vectors of one feature set and kind, loaded from Postgres into an exact
    ``VectorIndex`` keyed by detection id."""

    def __init__(self, conn: Any, feature_set: str = DEFAULT_FEATURE_SET, kind: str = "person"):
        self.conn = conn
        self.feature_set = feature_set
        self.kind = kind
        self.index: VectorIndex | None = None

    def load(self) -> int:
        """Read every kept vector; returns how many are searchable."""
        for ids, X in videos.detection_vectors(self.conn, self.feature_set, self.kind):
            if self.index is None:
                self.index = VectorIndex(X.shape[1], "exact")
            self.index.add([str(i) for i in ids], X)
        return 0 if self.index is None else len(self.index)

    def __len__(self) -> int:
        return 0 if self.index is None else len(self.index)

    def like_detection(self, detection_id: int, top: int = 10) -> tuple[dict[str, Any], list]:
        """(the query detection, the best match per other segment)."""
        query = videos.detection(self.conn, detection_id)
        if query is None:
            raise AutotagError(f"no detection {detection_id}")
        if query["feature"] is None:
            raise AutotagError(
                f"detection {detection_id} has no vector (one is kept per track every few"
                f" seconds); pick one listed with a vector by `autotag video show --detections`"
            )
        vector = query.pop("feature")
        own = (query["video_id"], query["segment"])
        return query, self.like_vector(
            vector, top, skip=lambda r: (r["video_id"], r["segment"]) == own
        )

    def like_vector(
        self,
        vector: np.ndarray,
        top: int = 10,
        *,
        skip: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """The best detection per segment by dot product with ``vector``, best first."""
        if self.index is None or top <= 0:
            return []
        if len(vector) != self.index.dim:
            raise AutotagError(f"query has {len(vector)} dimensions, the index {self.index.dim}")
        hits = self.index.search_rows(np.asarray(vector, np.float32), len(self.index))[0]
        best: dict[tuple[str, int], dict[str, Any]] = {}
        for start in range(0, len(hits), 500):  # rows fetched a chunk at a time, best first
            chunk = hits[start : start + 500]
            rows = videos.detection_rows(self.conn, [int(i) for i, _ in chunk])
            for pid, score in chunk:
                r = rows.get(int(pid))
                if r is None or (skip is not None and skip(r)):
                    continue
                key = (r["video_id"], r["segment"])
                if key not in best:
                    best[key] = {**r, "similarity": round(float(score), 6)}
                    if len(best) >= top:
                        return list(best.values())
        return list(best.values())
