"""Faces → the ``person`` and ``face`` tags.

``FaceDetector`` is MediaPipe's BlazeFace (short range), a small CNN converted once to ONNX
and run by ONNX Runtime (cheaper than OpenCV's TFLite importer: BENCHMARKS.md): more faces
found and fewer textures mistaken for faces than the Haar cascade it replaced.
``HaarFaceDetector`` (OpenCV's Viola-Jones cascade) stays for comparison in ``bench/faces.py``.

Also here: BLAS limited to one thread while tagging, because the bundle's scores are small
matrix products that threads only slow down on a shared machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import cv2.data  # the wheel's cascade folder (cv2's stub does not declare the submodule)
import numpy as np

from autotag.checksums import file_sha256
from autotag.errors import ModelError
from autotag.vision.features import as_bgr
from autotag.vision.onnx import onnx_session

BLAZEFACE_FILE = Path("blazeface") / "face_detection_short_range.onnx"
BLAZEFACE_SHA256 = "f2d8997203db3a4db0bd293c9fb1d82fd15000d9a73172d2765366b6725ffcb6"

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


def face_tags(scored: list[tuple[Face, float]]) -> list[tuple[str, float]]:
    """``person`` and ``face`` at the best face's score; none without a face."""
    if not scored:
        return []
    best = round(max(score for _, score in scored), 4)
    return [("person", best), ("face", best)]


def _blazeface_anchors() -> np.ndarray:
    """The 896 SSD anchor centres of BlazeFace short range: 16×16×2 at stride 8, then
    8×8×6 at stride 16, in [0, 1] image units."""
    centres = []
    for grid, per_cell in ((16, 2), (8, 6)):
        c = (np.arange(grid, dtype=np.float32) + 0.5) / grid
        xs, ys = np.meshgrid(c, c)
        cell = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell, per_cell, axis=0))
    return np.concatenate(centres)


def find_model(model_dirs: Sequence[Path], relative: Path) -> Path:
    """A shipped model file: the first of ``model_dirs`` that has ``relative``."""
    for d in model_dirs:
        if (Path(d) / relative).is_file():
            return Path(d) / relative
    looked = " or ".join(str(Path(d) / relative) for d in model_dirs)
    raise ModelError(f"model file not found (looked in {looked})")


class FaceDetector:
    """Faces → ``person`` and ``face`` tags: BlazeFace (short range) on the photo padded to a
    square and shrunk to 128×128, so one pass costs the same for any photo size.

    A face is a box whose score (the sigmoid of the network's logit) reaches
    ``min_score`` (0.6: the lowest with no false face on half A of bench/faces.py's LFW
    scenes; half B is the held-out check); overlapping boxes are merged by non-maximum
    suppression. The tag score is the best face's score. Short range means faces that
    matter to the photo (roughly a tenth of its longer side or more), not a crowd in the
    background.
    """

    SIZE = 128
    TILE_ASPECT = 2.0  # a photo this elongated is also looked at in squares (panoramas)

    def __init__(self, model_path: Path, *, min_score: float = 0.6, nms_iou: float = 0.3):
        actual = file_sha256(model_path)
        if actual != BLAZEFACE_SHA256:
            raise ModelError(
                f"{model_path} fails its checksum (sha256 {actual[:12]}…, expected "
                f"{BLAZEFACE_SHA256[:12]}…): corrupt or replaced model file"
            )
        # One thread: a small network per photo, which more threads would only make wait.
        self.session = onnx_session(model_path, 1, what=f"face detector {model_path}")
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.anchors = _blazeface_anchors()
        self.min_score = min_score
        self.nms_iou = nms_iou

    @classmethod
    def load(cls, model_dirs: Sequence[Path]) -> FaceDetector:
        return cls(find_model(model_dirs, BLAZEFACE_FILE))

    def detect_scored(self, bgr: np.ndarray) -> list[tuple[Face, float]]:
        """(face in original-image pixels, score), best first. A photo at least
        ``TILE_ASPECT`` times wider than tall (or taller than wide) is also looked at in
        overlapping squares along its long side: shrunk whole to 128 px, a panorama's faces
        would be a few pixels."""
        img = as_bgr(bgr)
        h, w = img.shape[:2]
        found = [self._candidates(img)]
        short, long = min(h, w), max(h, w)
        if short > 0 and long >= self.TILE_ASPECT * short:
            step = max(1, short // 2)
            offsets = sorted({*range(0, long - short, step), long - short})
            for off in offsets:
                tile = img[:, off : off + short] if w > h else img[off : off + short, :]
                boxes, scores = self._candidates(tile)
                boxes[:, 0 if w > h else 1] += off
                found.append((boxes, scores))
        boxes = np.concatenate([f[0] for f in found])
        scores = np.concatenate([f[1] for f in found])
        if not len(scores):
            return []
        picked = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.min_score, self.nms_iou)
        out = []
        for i in sorted(np.ravel(picked), key=lambda i: -scores[i]):
            x, y, fw, fh = boxes[i]
            out.append((Face(round(x), round(y), round(fw), round(fh), 1), float(scores[i])))
        return out

    def _candidates(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One BlazeFace pass over ``img`` padded to a square: the boxes (x, y, w, h in
        ``img``'s pixels, float) scoring at least ``min_score``, and their scores."""
        h, w = img.shape[:2]
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        # Shrink first, then pad: the padded copy is 128×128, never photo-sized.
        scale = self.SIZE / side
        small = cv2.resize(
            img,
            (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA,
        )
        square = np.zeros((self.SIZE, self.SIZE, 3), np.uint8)
        st, sl = round(top * scale), round(left * scale)
        square[st : st + small.shape[0], sl : sl + small.shape[1]] = small
        blob = cv2.dnn.blobFromImage(
            square, 1 / 127.5, (self.SIZE, self.SIZE), (127.5, 127.5, 127.5), swapRB=True
        )
        found = dict(
            zip(self.outputs, self.session.run(self.outputs, {self.input: blob}), strict=True)
        )
        logits = np.clip(found["classificators"].reshape(-1), -60.0, 60.0)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = scores >= self.min_score
        reg = found["regressors"].reshape(-1, 16)[keep]
        anchors = self.anchors[keep]
        cx = reg[:, 0] / self.SIZE + anchors[:, 0]
        cy = reg[:, 1] / self.SIZE + anchors[:, 1]
        bw, bh = reg[:, 2] / self.SIZE, reg[:, 3] / self.SIZE
        boxes = np.stack(
            [(cx - bw / 2) * side - left, (cy - bh / 2) * side - top, bw * side, bh * side],
            axis=1,
        ).astype(np.float64)
        return boxes.reshape(-1, 4), scores[keep].astype(np.float64)

    def detect(self, bgr: np.ndarray) -> list[Face]:
        return [f for f, _ in self.detect_scored(bgr)]

    def tags(self, bgr: np.ndarray) -> list[tuple[str, float]]:
        return face_tags(self.detect_scored(bgr))


class HaarFaceDetector:
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
    def load(cls, path: Path | None = None) -> HaarFaceDetector:
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
        return face_tags([(f, f.neighbors / (f.neighbors + 1.0)) for f in self.detect(bgr)])


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
