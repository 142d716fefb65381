"""Tagger: bundle + feature set + detectors → tags and a vector for each photo.

One Tagger is built per process (the daemonized autotag bolt holds one) because loading the
CNN and the bundle is the expensive part; tagging is then a batch of feature extraction,
one matrix product, and face detection.

Face detection uses the Viola-Jones Haar cascade ``haarcascade_frontalface_default.xml``
from Debian's opencv-data. OpenCV 5 moved ``CascadeClassifier`` out of its main modules
(the opencv-python-headless wheel no longer has it), so the cascade is evaluated here,
with OpenCV's pyramid, window normalization and rectangle grouping. Each stage is a sparse
linear map from integral-image corners to stump features (scipy CSR, ~9 weights a stump):
the first stages run over every window of a pyramid level at once, later ones only over
the windows still alive. Slower than OpenCV's C (tens of ms, not a few), so photos are
shrunk first; see FaceDetector for the trade-offs.
"""

from __future__ import annotations

import base64
import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import scipy.sparse

from autotag import config
from autotag.bundle import ModelBundle, load_active
from autotag.config import Settings
from autotag.errors import ModelError
from autotag.features import FeatureSet, as_bgr, get_feature_set, l2_normalize
from autotag.images import DecodedImage, decode

CASCADE_NAME = "haarcascade_frontalface_default.xml"
CASCADE_DIRS = (
    Path("/usr/share/opencv4/haarcascades"),
    Path("/usr/share/opencv/haarcascades"),
    Path("/usr/local/share/opencv4/haarcascades"),
)
KNOWN_DETECTORS = ("face",)
_CHUNK = 2048  # windows per block in the cascade's later stages


# --- vectors on the wire ----------------------------------------------------------------


def vector_to_b64(vec: np.ndarray) -> str:
    """Base64 of little-endian float32: the tuple contract's ``vector``."""
    return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")


def vector_from_b64(text: str) -> np.ndarray:
    raw = base64.b64decode(text)
    if len(raw) % 4:
        raise ValueError(f"vector payload of {len(raw)} bytes is not float32")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


# --- Haar cascade -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Stage:
    """One boosted stage as a linear map: feature values = (integral image at corners) · C."""

    threshold: float
    corners: np.ndarray  # (U, 2) int: (dy, dx) of each integral-image corner used
    coef: Any  # (K, U) scipy CSR float32: signed rectangle weights, ~9 per stump
    node_thr: np.ndarray  # (K,)
    left: np.ndarray  # (K,) leaf value when feature < threshold
    right: np.ndarray  # (K,)
    left_sum: float  # stage score if every feature is below its threshold …
    gain: np.ndarray  # (K,) … plus right − left for each one that is not


def _stage_from_stumps(
    threshold: float, stumps: list[tuple[list[list[float]], float, float, float]]
) -> _Stage:
    """Fold each stump's rectangles into shared integral-image corners (a sparse map)."""
    index: dict[tuple[int, int], int] = {}
    entries: list[tuple[int, int, float]] = []
    for k, (rects, _, _, _) in enumerate(stumps):
        for x, y, w, h, wt in rects:
            x, y, w, h = int(x), int(y), int(w), int(h)
            for (dy, dx), sign in (
                ((y + h, x + w), 1.0),
                ((y, x + w), -1.0),
                ((y + h, x), -1.0),
                ((y, x), 1.0),
            ):
                u = index.setdefault((dy, dx), len(index))
                entries.append((u, k, sign * wt))
    coef = np.zeros((len(stumps), len(index)), np.float32)
    for u, k, v in entries:
        coef[k, u] += v
    return _Stage(
        threshold=threshold,
        corners=np.array(list(index), np.int64).reshape(-1, 2),
        coef=scipy.sparse.csr_matrix(coef),
        node_thr=np.array([st[1] for st in stumps], np.float32),
        left=np.array([st[2] for st in stumps], np.float32),
        right=np.array([st[3] for st in stumps], np.float32),
        left_sum=float(sum(st[2] for st in stumps)),
        gain=np.array([st[3] - st[2] for st in stumps], np.float32),
    )


@dataclass(frozen=True)
class Face:
    x: int
    y: int
    w: int
    h: int
    neighbors: int


class HaarCascade:
    """An OpenCV (new-format XML) stump-based Haar cascade, evaluated with numpy."""

    def __init__(self, path: Path) -> None:
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as exc:
            raise ModelError(f"cannot read Haar cascade {path}: {exc}") from None
        casc = root.find("cascade")
        if casc is None or (casc.findtext("featureType") or "").strip() != "HAAR":
            raise ModelError(f"{path.name} is not a new-format HAAR cascade")
        self.win_w = int(casc.findtext("width") or 0)
        self.win_h = int(casc.findtext("height") or 0)
        feats = []
        for f in casc.find("features") or []:
            if int((f.findtext("tilted") or "0").strip() or 0):
                raise ModelError(f"{path.name}: tilted Haar features are not supported")
            rs = [[float(v) for v in (r.text or "").split()] for r in f.find("rects") or []]
            feats.append(rs)
        self.stages: list[_Stage] = []
        for st in casc.find("stages") or []:
            stumps = []
            for wc in st.find("weakClassifiers") or []:
                node = (wc.findtext("internalNodes") or "").split()
                leaves = (wc.findtext("leafValues") or "").split()
                if len(node) != 4 or len(leaves) != 2:
                    raise ModelError(f"{path.name}: only stump cascades are supported")
                rects = feats[int(node[2])]
                stumps.append((rects, float(node[3]), float(leaves[0]), float(leaves[1])))
            thr = float(st.findtext("stageThreshold") or 0)
            self.stages.append(_stage_from_stumps(thr, stumps))
        if not self.stages or self.win_w <= 2 or self.win_h <= 2:
            raise ModelError(f"{path.name}: empty or malformed cascade")

    def _dense_stages(
        self, img: np.ndarray, step: int, n_dense: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Run the first stages over every window of one pyramid level.

        Returns the level's integral image (float32) and, for windows still alive, their
        top-left (ys, xs) and 1/normalization. Slices of the integral image give one corner
        for all windows at once, so nothing is gathered index by index here.
        """
        h, w = img.shape
        ii, sq = cv2.integral2(img, sdepth=cv2.CV_32S, sqdepth=cv2.CV_64F)
        iif = ii.astype(np.float32)
        ny = (h - self.win_h) // step + 1
        nx = (w - self.win_w) // step + 1
        empty = np.zeros(0, np.int64)
        if ny <= 0 or nx <= 0:
            return iif, empty, empty, np.zeros(0, np.float32)

        def grid(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
            return a[dy : dy + (ny - 1) * step + 1 : step, dx : dx + (nx - 1) * step + 1 : step]

        # OpenCV's normalization: the window less a 1-px border, by area·std; flat windows
        # (std under ~10 grey levels) cannot hold a face and are skipped.
        ww, wh = self.win_w - 2, self.win_h - 2
        area = float(ww * wh)
        s1 = grid(sq, 1 + wh, 1 + ww) - grid(sq, 1, 1 + ww) - grid(sq, 1 + wh, 1) + grid(sq, 1, 1)
        s0 = grid(ii, 1 + wh, 1 + ww) - grid(ii, 1, 1 + ww) - grid(ii, 1 + wh, 1) + grid(ii, 1, 1)
        nf = np.sqrt(np.maximum(area * s1 - s0.astype(np.float64) ** 2, 0.0)).astype(np.float32)
        alive = nf > 10.0 * area
        # Corner (dy, dx) of every window = a slice of one of step² phase planes, each
        # contiguous, so the sums below run on plain 2-D blocks.
        planes = {
            (py, px): np.ascontiguousarray(iif[py::step, px::step])
            for py in range(step)
            for px in range(step)
        }

        def corner(dy: int, dx: int) -> np.ndarray:
            p = planes[(dy % step, dx % step)]
            return p[dy // step : dy // step + ny, dx // step : dx // step + nx]

        n = ny * nx
        for st in self.stages[:n_dense]:
            # All windows' corner values, (U, n), times the stage's coefficients: one product.
            stack = np.empty((len(st.corners), n), np.float32)
            for u, (dy, dx) in enumerate(st.corners.tolist()):
                stack[u].reshape(ny, nx)[...] = corner(dy, dx)
            feat = st.coef @ stack  # (K, n)
            # feature/nf ≥ thr  ⇔  feature ≥ thr·nf   (nf > 0 wherever alive)
            above = feat >= st.node_thr[:, None] * nf.reshape(1, n)
            score = st.gain @ above.astype(np.float32) + st.left_sum
            alive &= (score >= st.threshold).reshape(ny, nx)
        gy, gx = np.nonzero(alive)
        return iif, gy * step, gx * step, (1.0 / nf[gy, gx]).astype(np.float32)

    def _sparse_stages(
        self, flat: np.ndarray, stride: int, base: np.ndarray, inv_nf: np.ndarray, n_dense: int
    ) -> np.ndarray:
        """Run the remaining stages on surviving windows; return the indices that pass.

        A stage gathers the corner values it needs for each window (U × m, corner-major so
        the sparse product reads rows) and multiplies by its K × U coefficient matrix.
        Windows go through in chunks to bound the gathered block; most are rejected within a
        few stages.
        """
        passed = []
        for start in range(0, base.size, _CHUNK):
            b = base[start : start + _CHUNK]
            inv = inv_nf[start : start + _CHUNK]
            idx = np.arange(start, start + b.size)
            for st in self.stages[n_dense:]:
                offs = st.corners[:, 0] * stride + st.corners[:, 1]
                vals = flat[offs[:, None] + b[None, :]]  # (U, m), corner-major
                feat = (st.coef @ vals) * inv[None, :]  # (K, m)
                above = feat >= st.node_thr[:, None]
                keep = st.gain @ above.astype(np.float32) + st.left_sum >= st.threshold
                b, inv, idx = b[keep], inv[keep], idx[keep]
                if idx.size == 0:
                    break
            passed.append(idx)
        return np.concatenate(passed) if passed else np.zeros(0, np.int64)

    def detect(
        self,
        gray: np.ndarray,
        *,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 0,
        max_size: int = 0,
        n_dense: int = 2,
        fine_step_factor: float = 2.0,
    ) -> list[Face]:
        """Faces in a uint8 grey image, like OpenCV's ``detectMultiScale2``.

        Same pyramid as OpenCV: the image shrinks by ``scale_factor`` per level, windows
        step 2 px (1 px once the image is shrunk by more than ``fine_step_factor``, OpenCV's
        2), then overlapping hits are grouped and groups of more than ``min_neighbors`` hits
        kept. The first ``n_dense`` stages run over the whole grid, the rest on survivors.
        """
        H, W = gray.shape
        raw: list[tuple[int, int, int, int]] = []
        factor = 1.0
        while True:
            win_w, win_h = round(self.win_w * factor), round(self.win_h * factor)
            sw, sh = round(W / factor), round(H / factor)
            if sw <= self.win_w or sh <= self.win_h:
                break
            if max_size and (win_w > max_size or win_h > max_size):
                break
            if win_w >= min_size and win_h >= min_size:
                scaled = (
                    gray
                    if factor == 1.0
                    else cv2.resize(gray, (sw, sh), interpolation=cv2.INTER_LINEAR)
                )
                step = 1 if factor > fine_step_factor else 2
                iif, ys, xs, inv_nf = self._dense_stages(scaled, step, n_dense)
                stride = iif.shape[1]
                ok = self._sparse_stages(iif.ravel(), stride, ys * stride + xs, inv_nf, n_dense)
                raw.extend(
                    (round(int(xs[i]) * factor), round(int(ys[i]) * factor), win_w, win_h)
                    for i in ok.tolist()
                )
            factor *= scale_factor
        return group_rectangles(raw, min_neighbors)


def group_rectangles(
    rects: Sequence[tuple[int, int, int, int]], group_threshold: int, eps: float = 0.2
) -> list[Face]:
    """OpenCV's groupRectangles: cluster similar boxes, keep clusters of > threshold."""
    if not rects:
        return []
    r = np.asarray(rects, np.float64)
    n = len(r)
    x1, y1, w, h = r.T
    x2, y2 = x1 + w, y1 + h
    delta = eps * (np.minimum(w[:, None], w[None]) + np.minimum(h[:, None], h[None])) * 0.5
    similar = (
        (np.abs(x1[:, None] - x1[None]) <= delta)
        & (np.abs(y1[:, None] - y1[None]) <= delta)
        & (np.abs(x2[:, None] - x2[None]) <= delta)
        & (np.abs(y2[:, None] - y2[None]) <= delta)
    )
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(similar, 1)), strict=True):
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            parent[rj] = ri
    labels = np.array([find(i) for i in range(n)])
    clusters = []
    for lab in np.unique(labels):
        members = r[labels == lab]
        avg = np.round(members.mean(axis=0)).astype(int)
        clusters.append(Face(int(avg[0]), int(avg[1]), int(avg[2]), int(avg[3]), len(members)))
    kept = [c for c in clusters if c.neighbors > group_threshold]
    out = []
    for c in kept:  # drop a small box inside a bigger, better-supported one
        inside = False
        for o in kept:
            if o is c:
                continue
            dx, dy = round(o.w * eps), round(o.h * eps)
            if (
                c.x >= o.x - dx
                and c.y >= o.y - dy
                and c.x + c.w <= o.x + o.w + dx
                and c.y + c.h <= o.y + o.h + dy
                and (o.neighbors > max(3, c.neighbors) or c.neighbors < 3)
            ):
                inside = True
                break
        if not inside:
            out.append(c)
    return out


def find_cascade(name: str = CASCADE_NAME) -> Path:
    for d in CASCADE_DIRS:
        if (d / name).is_file():
            return d / name
    looked = ", ".join(str(d) for d in CASCADE_DIRS)
    raise ModelError(
        f"face detector {name} not found (looked in {looked}); install Debian's opencv-data"
    )


class FaceDetector:
    """Frontal faces → ``person`` and ``face`` tags.

    Tuned for precision over recall, and for speed (numpy, not OpenCV's C): the photo is
    shrunk so its short side is at most ``analysis_side`` px, a face must span at least
    ``min_face_fraction`` of that side (a face that matters to the photo, not a crowd in the
    background; 24 px, the cascade's own window, at 180 px), windows step 2 px at every
    scale, and a face needs more than ``min_neighbors`` overlapping hits. Measured on 100
    LFW faces pasted into 320×240 scenes: 86% found; none of 100 LFW non-face patches nor
    13 scikit-image photos without faces fired (textures such as coins reach 4-5 hits, a
    real face 10+). The score grows with the hits: ``n / (n + 1)``, 0.875 at the minimum
    of 7, 0.93 at 13.
    """

    def __init__(
        self,
        cascade: HaarCascade,
        *,
        analysis_side: int = 180,
        min_face_fraction: float = 0.13,
        min_neighbors: int = 6,
        scale_factor: float = 1.1,
    ) -> None:
        self.cascade = cascade
        self.analysis_side = analysis_side
        self.min_face_fraction = min_face_fraction
        self.min_neighbors = min_neighbors
        self.scale_factor = scale_factor

    @classmethod
    def load(cls, path: Path | None = None) -> FaceDetector:
        return cls(HaarCascade(path or find_cascade()))

    def detect(self, bgr: np.ndarray) -> list[Face]:
        """Faces in original-image coordinates."""
        gray = cv2.cvtColor(as_bgr(bgr), cv2.COLOR_BGR2GRAY)
        h, w = gray.shape
        scale = min(1.0, self.analysis_side / min(h, w))
        if scale < 1.0:
            gray = cv2.resize(
                gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
            )
        min_size = max(self.cascade.win_w, round(self.min_face_fraction * min(gray.shape)))
        faces = self.cascade.detect(
            gray,
            scale_factor=self.scale_factor,
            min_neighbors=self.min_neighbors,
            min_size=min_size,
            fine_step_factor=float("inf"),
        )
        return [
            Face(
                round(f.x / scale),
                round(f.y / scale),
                round(f.w / scale),
                round(f.h / scale),
                f.neighbors,
            )
            for f in faces
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
        from autotag.images import decode_file

        return self.tag_decoded(decode_file(path))


__all__ = [
    "FaceDetector",
    "HaarCascade",
    "TagResult",
    "Tagger",
    "vector_from_b64",
    "vector_to_b64",
]
