"""Whose face: a 128-d descriptor per face, and the nearest known person.

A face found by the detector (``vision.faces``) that is at least ``min_face_px`` wide and tall
(PhotoPrism's 50 px) is aligned by dlib's 5-point landmark model and described by dlib's
ResNet face descriptor (``dlib_face_recognition_resnet_model_v1``, 128 floats, LFW 99.38% as
published by dlib). Both model files come from the installed PyPI package
``face-recognition-models`` 0.3.0 and run with ``dlib-bin`` 20.0.1 (a prebuilt wheel): nothing
is downloaded. Two descriptors closer than ``MATCH_DISTANCE`` (Euclidean) are the same person:
measured by ``bench/face_identity.py`` on ../shared/data/faces (MODELS.md).

Plain values in and out: a BGR image and boxes ``(x, y, w, h)`` in its pixels; descriptors
are float32 numpy arrays. Matching a descriptor against the known people is one matrix
product (``nearest_person``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from autotag.errors import ModelError
from autotag.vision.features import as_bgr

MODEL_VERSION = "dlib-resnet-v1+5pt"
DIM = 128
# Same person below this Euclidean distance (dlib's own 0.6; MODELS.md has the ROC).
MATCH_DISTANCE = 0.6
# The smallest face described (PhotoPrism's 50 px); smaller faces keep their box only.
MIN_FACE_PX = 50
# At most this many faces of one photo are described (the biggest first): a crowd of 200
# tiny faces costs a bounded amount.
MAX_FACES_PER_PHOTO = 20
# At most this many faces of one photo are kept at all (boxes; best first).
MAX_FACES_KEPT = 100


@dataclass(frozen=True)
class Described:
    """A face's descriptor and how usable it is (``quality`` in [0, 1]: the sharpness of the
    aligned 150×150 chip, variance of its Laplacian v mapped as v / (v + 100))."""

    embedding: np.ndarray  # float32, (128,)
    quality: float


def model_files() -> tuple[Path, Path]:
    """(5-point landmark model, descriptor model) from the installed face-recognition-models."""
    try:
        import face_recognition_models as frm
    except ImportError:
        raise ModelError(
            "face recognition needs the PyPI package face-recognition-models==0.3.0 "
            "(scripts/install-deps.sh installs it)"
        ) from None
    shape = Path(frm.pose_predictor_five_point_model_location())
    net = Path(frm.face_recognition_model_location())
    for p in (shape, net):
        if not p.is_file():
            raise ModelError(f"face model file {p} is missing from face-recognition-models")
    return shape, net


class FaceDescriber:
    """dlib's 5-point alignment + ResNet descriptor for boxes found by any face detector."""

    def __init__(
        self,
        shape_model: Path,
        descriptor_model: Path,
        *,
        min_face_px: int = MIN_FACE_PX,
        max_faces: int = MAX_FACES_PER_PHOTO,
    ) -> None:
        try:
            import dlib
        except ImportError:
            raise ModelError("face recognition needs the PyPI package dlib-bin==20.0.1") from None
        try:
            self._shape = dlib.shape_predictor(str(shape_model))
            self._net = dlib.face_recognition_model_v1(str(descriptor_model))
        except RuntimeError as exc:
            raise ModelError(f"face models could not be loaded: {exc}") from None
        self._dlib = dlib
        self.min_face_px = int(min_face_px)
        self.max_faces = int(max_faces)
        self.version = MODEL_VERSION

    @classmethod
    def load(cls, *, min_face_px: int = MIN_FACE_PX) -> FaceDescriber:
        shape, net = model_files()
        return cls(shape, net, min_face_px=min_face_px)

    def big_enough(self, box: Sequence[float]) -> bool:
        return min(float(box[2]), float(box[3])) >= self.min_face_px

    def describe(self, bgr: np.ndarray, boxes: Sequence[Sequence[float]]) -> list[Described | None]:
        """A descriptor for each box (None: too small, mostly outside the photo, or past
        ``max_faces`` of the biggest)."""
        img = as_bgr(bgr)
        h, w = img.shape[:2]
        out: list[Described | None] = [None] * len(boxes)
        order = sorted(range(len(boxes)), key=lambda i: -float(boxes[i][2]) * float(boxes[i][3]))
        wanted = [i for i in order if self.big_enough(boxes[i])][: self.max_faces]
        if not wanted:
            return out
        rgb = np.ascontiguousarray(img[:, :, ::-1])
        for i in wanted:
            x, y, bw, bh = (float(v) for v in boxes[i])
            left, top = max(0, round(x)), max(0, round(y))
            right, bottom = min(w - 1, round(x + bw)), min(h - 1, round(y + bh))
            if right - left < self.min_face_px // 2 or bottom - top < self.min_face_px // 2:
                continue  # mostly outside the photo
            rect = self._dlib.rectangle(left, top, right, bottom)
            shape = self._shape(rgb, rect)
            chip = self._dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
            emb = np.asarray(self._net.compute_face_descriptor(chip), dtype=np.float32)
            if emb.shape != (DIM,) or not np.isfinite(emb).all():
                continue
            grey = cv2.cvtColor(np.asarray(chip), cv2.COLOR_RGB2GRAY)
            v = float(cv2.Laplacian(grey, cv2.CV_64F).var())
            out[i] = Described(emb, round(v / (v + 100.0), 4))
        return out


def distances(
    embedding: np.ndarray, references: np.ndarray, norms: np.ndarray | None = None
) -> np.ndarray:
    """Euclidean distances from one descriptor to each row of ``references`` (n, 128);
    ``norms``: the rows' squared norms, when the caller keeps them (``squared_norms``)."""
    refs = np.asarray(references, dtype=np.float32).reshape(-1, DIM)
    e = np.asarray(embedding, dtype=np.float32).reshape(DIM)
    sq = squared_norms(refs) if norms is None else norms
    d2 = sq - 2.0 * (refs @ e) + float(e @ e)
    return np.sqrt(np.maximum(d2, 0.0))


def squared_norms(references: np.ndarray) -> np.ndarray:
    refs = np.asarray(references, dtype=np.float32).reshape(-1, DIM)
    return np.einsum("ij,ij->i", refs, refs)


def nearest_person(
    embedding: np.ndarray,
    references: np.ndarray,
    owners: Sequence[int] | np.ndarray,
    max_distance: float = MATCH_DISTANCE,
    refused: Sequence[int] = (),
    norms: np.ndarray | None = None,
) -> tuple[int, float] | None:
    """(person id, distance) of the nearest reference within ``max_distance``, skipping the
    people in ``refused``; None when nobody is that close."""
    if len(owners) == 0:
        return None
    d = distances(embedding, references, norms)
    if refused:
        d = np.where(np.isin(np.asarray(owners), np.asarray(list(refused))), np.inf, d)
    best = int(np.argmin(d))
    if not d[best] <= max_distance:
        return None
    return int(owners[best]), float(d[best])


def match_score(distance: float, max_distance: float = MATCH_DISTANCE) -> float:
    """A tag score in (0.5, 1] for a match: 1 at distance 0, 0.5 at the threshold."""
    return round(1.0 - 0.5 * min(1.0, max(0.0, distance) / max_distance), 4)


# Clustering of the faces nobody is assigned to (``autotag people cluster``): DBSCAN on the
# descriptors, Euclidean. CLUSTER_DISTANCE is DBSCAN's eps (tighter than MATCH_DISTANCE, so
# chains of look-alikes do not join two people: PhotoPrism's --face-cluster-dist plays this
# part); CLUSTER_MIN_FACES its min_samples (Immich's min_faces, PhotoPrism's core 4).
CLUSTER_DISTANCE = 0.5
CLUSTER_MIN_FACES = 3


def cluster(
    embeddings: np.ndarray,
    *,
    max_distance: float = CLUSTER_DISTANCE,
    min_faces: int = CLUSTER_MIN_FACES,
) -> np.ndarray:
    """A cluster label per descriptor (-1: left unassigned): scikit-learn's DBSCAN on the
    exact ε-neighbourhood graph (``people_index.radius_graph``: float32 matrix products in
    blocks over the upper triangle, half of DBSCAN's own brute force and 20x faster than a
    ball tree in 128 dimensions, bench/people.py); the labels are DBSCAN's own, memory grows
    with the neighbours, not with n²."""
    from sklearn.cluster import DBSCAN

    from autotag.vision.people_index import radius_graph

    x = np.asarray(embeddings, dtype=np.float32).reshape(-1, DIM)
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    db = DBSCAN(eps=max_distance, min_samples=min_faces, metric="precomputed")
    return db.fit_predict(radius_graph(x, max_distance)).astype(np.int64)
