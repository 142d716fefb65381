"""Tagger: bundle + feature set + detectors → tags and a vector for each photo.

One Tagger is built per process (the daemonized autotag bolt holds one) because loading the
CNN and the bundle is the expensive part; tagging is then a batch of feature extraction,
one matrix product, and face detection.

Face detection (the ``person`` / ``face`` tags) is OpenCV's Haar cascade on a shrunk copy.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from autotag import config
from autotag.config import Settings
from autotag.errors import ModelError
from autotag.vision.bundle import ModelBundle, load_active
from autotag.vision.decode import DecodedImage, decode
from autotag.vision.features import FeatureSet, as_bgr, get_feature_set, l2_normalize

CASCADE_NAME = "haarcascade_frontalface_default.xml"
CASCADE_DIRS = (
    Path("/usr/share/opencv4/haarcascades"),
    Path("/usr/share/opencv/haarcascades"),
    Path("/usr/local/share/opencv4/haarcascades"),
)
KNOWN_DETECTORS = ("face",)


# --- vectors on the wire ----------------------------------------------------------------


def vector_to_b64(vec: np.ndarray) -> str:
    """Base64 of little-endian float32: the tuple contract's ``vector``."""
    return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")


def vector_from_b64(text: str) -> np.ndarray:
    raw = base64.b64decode(text)
    if len(raw) % 4:
        raise ValueError(f"vector payload of {len(raw)} bytes is not float32")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


# --- face detection --------------------------------------------------------------------


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


# --- the tagger -------------------------------------------------------------------------

_BLAS: Any = None


def _single_threaded_blas() -> contextlib.AbstractContextManager[object]:
    """BLAS limited to one thread while tagging.

    Tagging's matrix products are small (one photo's scores, cascade blocks); OpenBLAS
    spreading them over threads only adds contention with the other bolts and ONNX
    Runtime on a shared machine (measured: score 0.3 ms → 16 ms, faces 3-4× slower under
    load). threadpoolctl (a scikit-learn dependency) switches it per call, in microseconds.
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


@dataclass
class TagResult:
    """What the autotag bolt emits for a photo (see the tuple contract)."""

    tags: list[tuple[str, float]]
    vector: np.ndarray
    model_version: str
    feature_set: str
    width: int
    height: int

    def tags_json(self) -> list[list[object]]:
        return [[t, float(s)] for t, s in self.tags]

    def vector_b64(self) -> str:
        return vector_to_b64(self.vector)


class Tagger:
    """Holds a bundle, its feature set and its detectors; tags photos in batches."""

    def __init__(
        self,
        bundle: ModelBundle,
        feature_set: FeatureSet | None = None,
        *,
        settings: Settings | None = None,
        min_score: float | None = None,
        max_tags: int | None = None,
    ) -> None:
        s = settings or config.settings()
        self.settings = s
        self.bundle = bundle
        fs_name = str(bundle.feature_set["name"])
        self.features = feature_set or get_feature_set(fs_name, s)
        if (self.features.name, self.features.version, self.features.dim) != (
            fs_name,
            str(bundle.feature_set["version"]),
            int(bundle.feature_set["dim"]),
        ):
            raise ModelError(
                f"bundle {bundle.id} was built for {bundle.feature_key} "
                f"(dim {bundle.feature_set['dim']}), this process has {self.features.key} "
                f"(dim {self.features.dim})"
            )
        unknown = [d for d in bundle.detectors if d not in KNOWN_DETECTORS]
        if unknown:
            raise ModelError(f"bundle {bundle.id} wants unknown detectors {unknown}")
        self.face = FaceDetector.load() if "face" in bundle.detectors else None
        self.min_score = s.min_tag_score if min_score is None else min_score
        self.max_tags = s.max_tags if max_tags is None else max_tags

    @classmethod
    def from_active(cls, settings: Settings | None = None) -> Tagger:
        """The active bundle of ``settings.models_dir`` with everything it needs, loaded."""
        s = settings or config.settings()
        return cls(load_active(s.models_dir), settings=s)

    @property
    def model_version(self) -> str:
        return self.bundle.id

    def _merge_tags(self, *lists: list[tuple[str, float]]) -> list[tuple[str, float]]:
        best: dict[str, float] = {}
        for lst in lists:
            for tag, score in lst:
                best[tag] = max(score, best.get(tag, 0.0))
        ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
        return ranked[: self.max_tags]

    def tag_images(self, images: Sequence[np.ndarray]) -> list[TagResult]:
        """Tag decoded BGR images; features are extracted in one batch."""
        images = [as_bgr(im) for im in images]
        if not images:
            return []
        with _single_threaded_blas():
            return self._tag_images(images)

    def _tag_images(self, images: list[np.ndarray]) -> list[TagResult]:
        X = self.features.extract(images)
        probs = self.bundle.score(X)
        vectors = l2_normalize(X)
        out = []
        for i, img in enumerate(images):
            tags = self.bundle.tags_for(probs[i], self.min_score, self.max_tags)
            extra = self.face.tags(img) if self.face is not None else []
            out.append(
                TagResult(
                    tags=self._merge_tags(tags, extra),
                    vector=vectors[i],
                    model_version=self.bundle.id,
                    feature_set=self.features.key,
                    width=int(img.shape[1]),
                    height=int(img.shape[0]),
                )
            )
        return out

    def tag_decoded(self, decoded: DecodedImage) -> TagResult:
        return self.tag_images([decoded.bgr])[0]

    def tag_bytes(self, data: bytes) -> TagResult:
        """Decode (with the configured limits) and tag; a bad image raises ImageError."""
        return self.tag_decoded(decode(data))

    def tag_file(self, path: str | Path) -> TagResult:
        from autotag.vision.decode import decode_file

        return self.tag_decoded(decode_file(path))


__all__ = [
    "FaceDetector",
    "TagResult",
    "Tagger",
    "vector_from_b64",
    "vector_to_b64",
]
