"""Faces → the ``person`` and ``face`` tags: OpenCV's Haar cascade on a shrunk copy.

Also here: BLAS limited to one thread while tagging, because the cascade's blocks and the
bundle's scores are small matrix products that threads only slow down on a shared machine.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from autotag.errors import ModelError
from autotag.vision.features import as_bgr

CASCADE_NAME = "haarcascade_frontalface_default.xml"
CASCADE_DIRS = (
    Path("/usr/share/opencv4/haarcascades"),
    Path("/usr/share/opencv/haarcascades"),
    Path("/usr/local/share/opencv4/haarcascades"),
)


@dataclass(frozen=True)
class Face:
    """A detected face in original-image pixels; ``neighbors`` = overlapping raw hits."""

    x: int
    y: int
    w: int
    h: int
    neighbors: int


def find_cascade(name: str = CASCADE_NAME) -> Path:
    """The cascade file: OpenCV's wheel ships it; Debian's opencv-data is the fallback."""
    for d in (Path(cv2.data.haarcascades), *CASCADE_DIRS):
        if (d / name).is_file():
            return d / name
    looked = ", ".join(str(d) for d in (Path(cv2.data.haarcascades), *CASCADE_DIRS))
    raise ModelError(
        f"face detector {name} not found (looked in {looked}); install Debian's opencv-data"
    )


class FaceDetector:
    """Frontal faces → ``person`` and ``face`` tags (OpenCV's Viola-Jones Haar cascade).

    Tuned for precision over recall, and for speed: the photo is shrunk so its short side is
    at most ``analysis_side`` px, and a face must span at least ``min_face_fraction`` of that
    side (a face that matters to the photo, not a crowd in the background). A face needs more
    than ``min_neighbors`` overlapping raw hits; textures such as coins reach 4-5, a real face
    10+. The score grows with the hits: ``n / (n + 1)``, 0.875 at the minimum of 7.
    """

    def __init__(
        self,
        cascade_path: Path,
        *,
        analysis_side: int = 180,
        min_face_fraction: float = 0.13,
        min_neighbors: int = 6,
        scale_factor: float = 1.2,
    ) -> None:
        self.cascade = cv2.CascadeClassifier(str(cascade_path))
        if self.cascade.empty():
            raise ModelError(f"face detector {cascade_path} could not be loaded")
        self.analysis_side = analysis_side
        self.min_face_fraction = min_face_fraction
        self.min_neighbors = min_neighbors
        self.scale_factor = scale_factor

    @classmethod
    def load(cls, path: Path | None = None) -> FaceDetector:
        return cls(path or find_cascade())

    def detect(self, bgr: np.ndarray) -> list[Face]:
        """Faces in original-image coordinates."""
        gray = cv2.cvtColor(as_bgr(bgr), cv2.COLOR_BGR2GRAY)
        h, w = gray.shape
        scale = min(1.0, self.analysis_side / min(h, w))
        if scale < 1.0:
            gray = cv2.resize(
                gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
            )
        min_size = max(24, round(self.min_face_fraction * min(gray.shape)))
        if min(gray.shape) < min_size:
            return []
        rects, hits = self.cascade.detectMultiScale2(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(min_size, min_size),
        )
        return [
            Face(round(x / scale), round(y / scale), round(fw / scale), round(fh / scale), int(n))
            for (x, y, fw, fh), n in zip(rects, np.ravel(hits), strict=True)
        ]

    def tags(self, bgr: np.ndarray) -> list[tuple[str, float]]:
        faces = self.detect(bgr)
        if not faces:
            return []
        n = max(f.neighbors for f in faces)
        score = round(n / (n + 1.0), 4)
        return [("person", score), ("face", score)]


_BLAS: Any = None


def single_threaded_blas() -> contextlib.AbstractContextManager[object]:
    """BLAS limited to one thread while tagging.

    Tagging's matrix products are small (one photo's scores, cascade blocks): OpenBLAS
    spreading them over threads only adds contention with the other bolts and ONNX Runtime
    on a shared machine. threadpoolctl (a scikit-learn dependency) switches it per call.
    """
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            _BLAS = False
    if _BLAS is False:
        return contextlib.nullcontext()
    return _BLAS.limit(limits=1, user_api="blas")
