"""Feature sets: BGR pixels → fixed-length float32 vectors, versioned by name.

A bundle's linear heads are only valid for the exact features they were trained on, so each
set has a ``name`` and a ``version`` (bumped whenever preprocessing or weights change) and
bundles record both. Sets:

- ``cnn``: EfficientNet-Lite0's 1280-d pooled embedding (ONNX, onnxruntime). Raw, not
  normalized: the pretrained ImageNet classifier is a linear map of exactly this vector.
- ``cnn-lite2``: the same from EfficientNet-Lite2 (260 px input, about 2.5x the compute,
  higher ImageNet accuracy); a different vector space, so bundles and vectors do not mix.
- ``hog``: histogram of oriented gradients on a 64×64 grey resize plus an HSV colour
  histogram; cheap, no model file, works on 28×28 Fashion-MNIST.
- ``cnn+hog``: both, each L2-normalized first so neither dominates by scale.

OpenCV 5 dropped ``cv2.HOGDescriptor`` from the main modules, so HOG is computed here in
numpy with OpenCV's default layout (8×8 cells, 2×2-cell blocks, stride one cell, 9 unsigned
bins, L2-Hys), batched over images.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from autotag.checksums import file_sha256
from autotag.errors import ModelError
from autotag.vision.area_resize import area_resize
from autotag.vision.onnx import onnx_session

ONNX_DIRNAME = "efficientnet-lite0"
ONNX_FILENAME = "efficientnet_lite0_embedding_logits.onnx"
# Also recorded in models/efficientnet-lite0/PROVENANCE.md, which wins when present.
ONNX_SHA256 = "75944fa7084c42b9811df733ece6727d3f6e7c541dfb0e480b40f64588d39a50"

CNN_INPUT = 224
CNN_RESIZE = 256
CNN_DIM = 1280


@dataclass(frozen=True)
class Backbone:
    """One exported EfficientNet-Lite: where its ONNX file lives and the input it takes
    (short side resized to ``resize``, centre crop ``size``: the networks' own 0.875 ratio)."""

    feature_set: str
    dirname: str
    filename: str
    sha256: str  # also in PROVENANCE.md beside the file, which wins when present
    size: int
    resize: int


LITE0 = Backbone("cnn", ONNX_DIRNAME, ONNX_FILENAME, ONNX_SHA256, CNN_INPUT, CNN_RESIZE)
LITE2 = Backbone(
    "cnn-lite2",
    "efficientnet-lite2",
    "efficientnet_lite2_embedding_logits.onnx",
    "e8d020e0b3e48ebb84db5744825430904aaae4ff90641f9bbb9378e4fec234e8",
    260,
    292,
)
BACKBONES = {b.feature_set: b for b in (LITE0, LITE2)}
HOG_SIZE = 64
HOG_CELL = 8
HOG_BINS = 9
HOG_DIM = ((HOG_SIZE // HOG_CELL) - 1) ** 2 * 4 * HOG_BINS  # 7*7 blocks * 4 cells * 9 bins
HSV_BINS = (8, 4, 4)
COLOR_DIM = HSV_BINS[0] * HSV_BINS[1] * HSV_BINS[2]

# name → (version, dim). Known without loading any model, for bundle manifests.
FEATURE_SPECS: dict[str, tuple[str, int]] = {
    "cnn": ("1", CNN_DIM),
    "cnn-lite2": ("1", CNN_DIM),
    "hog": ("1", HOG_DIM + COLOR_DIM),
    "cnn+hog": ("1", CNN_DIM + HOG_DIM + COLOR_DIM),
}


NETWORK_PREFIX = "net:"  # net:<bundle id>: a trained network (vision/network_features.py)


def feature_set_spec(name: str) -> dict[str, Any]:
    """``{name, version, dim}`` of a feature set, as bundles record it (no model loaded)."""
    if name.startswith(NETWORK_PREFIX):
        raise ModelError(f"{name} is a trained network: its bundle's manifest holds its spec")
    if name not in FEATURE_SPECS:
        known = ", ".join(FEATURE_SPECS)
        raise ModelError(f"unknown feature set {name!r} (known: {known})")
    version, dim = FEATURE_SPECS[name]
    return {"name": name, "version": version, "dim": dim}


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        n = float(np.linalg.norm(x))
        return x / n if n > eps else x.copy()
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, eps)


def as_bgr(img: np.ndarray) -> np.ndarray:
    """Accept grey (HxW / HxWx1), BGR or BGRA uint8 and return HxWx3 uint8 BGR."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {img.shape}")


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = img.shape[:2]
    shrinking = width <= w and height <= h
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(img, (width, height), interpolation=interp)


class FeatureSet(ABC):
    """Turns a batch of BGR images into an (n, dim) float32 matrix."""

    name: str
    version: str
    dim: int
    # The short side, in pixels, below which this set would have to enlarge a photo: a
    # decoder may hand it anything at least this large (a reduced JPEG decode).
    min_side: int = 0

    @abstractmethod
    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Features of each image, one row each, float32."""

    @property
    def key(self) -> str:
        """``name@version``: what vectors and bundles are tagged with."""
        return f"{self.name}@{self.version}"

    def spec(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "dim": self.dim}

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.dim), np.float32)


# --- cnn --------------------------------------------------------------------------------


def onnx_model_path(model_dirs: Sequence[Path], backbone: Backbone = LITE0) -> Path:
    """The backbone's ONNX file (EfficientNet-Lite0 by default) in the first of
    ``model_dirs`` that has it."""
    candidates = [Path(d) / backbone.dirname / backbone.filename for d in model_dirs]
    for path in candidates:
        if path.is_file():
            return path
    looked = " or ".join(str(p) for p in dict.fromkeys(candidates))
    raise ModelError(f"{backbone.dirname} ONNX model not found (looked in {looked})")


def expected_onnx_sha256(path: Path) -> str:
    """The sha256 that PROVENANCE.md beside the model records (else the built-in one)."""
    prov = path.parent / "PROVENANCE.md"
    if prov.is_file():
        m = re.search(r"sha256\s*`([0-9a-f]{64})`", prov.read_text(encoding="utf-8"))
        if m:
            return m.group(1)
    for b in BACKBONES.values():
        if path.name == b.filename:
            return b.sha256
    return ONNX_SHA256


_VERIFIED: dict[tuple[str, int, int], str] = {}


def verify_onnx(path: Path) -> str:
    """Check the model file against its recorded sha256 (once per file version)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return _VERIFIED[key]
    actual = file_sha256(path)
    expected = expected_onnx_sha256(path)
    if actual != expected:
        raise ModelError(
            f"{path} fails its checksum: sha256 {actual[:12]}…, expected {expected[:12]}… "
            "(corrupt or replaced model file)"
        )
    _VERIFIED[key] = actual
    return actual


def preprocess_cnn(img: np.ndarray, size: int = CNN_INPUT, resize: int = CNN_RESIZE) -> np.ndarray:
    """One image → (3, size, size) float32, exactly as the export was checked.

    BGR→RGB, short side to ``resize`` (INTER_AREA; only the crop is computed), centre crop,
    (x − 127) / 128, CHW;
    224 from 256 for Lite0, 260 from 292 for Lite2.
    A very elongated image is first cut to its centre 4:1 region: the crop would discard
    the rest anyway, and resizing all of it could allocate gigabytes.
    """
    bgr = as_bgr(img)
    h, w = bgr.shape[:2]
    short = min(h, w)
    if max(h, w) > 4 * short:
        keep = 4 * short
        if h > w:
            top = (h - keep) // 2
            bgr = bgr[top : top + keep]
        else:
            left = (w - keep) // 2
            bgr = bgr[:, left : left + keep]
        h, w = bgr.shape[:2]
    scale = resize / min(h, w)
    nh = max(resize, round(h * scale))
    nw = max(resize, round(w * scale))
    top = (nh - size) // 2
    left = (nw - size) // 2
    crop = area_resize(bgr, (nw, nh), (left, top, size, size))
    # (x − 127) × (1/128) is exactly (x − 127) / 128 in float32: 1/128 is a power of two.
    blob = cv2.dnn.blobFromImage(crop, 1 / 128, (size, size), (127, 127, 127), swapRB=True)
    return blob[0]


class CnnFeatures(FeatureSet):
    """EfficientNet-Lite embedding through onnxruntime; also exposes the ImageNet logits."""

    name = "cnn"
    version = FEATURE_SPECS["cnn"][0]
    dim = CNN_DIM
    min_side = CNN_RESIZE

    def __init__(
        self,
        onnx_path: Path,
        *,
        threads: int = 1,
        batch_size: int = 16,
        backbone: Backbone = LITE0,
    ) -> None:
        self.name = backbone.feature_set
        self.version = FEATURE_SPECS[backbone.feature_set][0]
        self.backbone = backbone
        self.onnx_path = onnx_path
        self.onnx_sha256 = verify_onnx(onnx_path)
        self.batch_size = batch_size
        self.session = onnx_session(onnx_path, threads)
        outputs = [o.name for o in self.session.get_outputs()]
        if not {"embedding", "logits"} <= set(outputs):
            raise ModelError(f"{onnx_path.name} has outputs {outputs}, expected embedding, logits")
        self.input_name = self.session.get_inputs()[0].name

    def run(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(embedding (n, 1280), logits (n, 1000)), in batches of ``batch_size``."""
        if len(images) == 0:
            return self._empty(), np.zeros((0, 1000), np.float32)
        embs, logits = [], []
        for start in range(0, len(images), self.batch_size):
            batch = np.stack(
                [
                    preprocess_cnn(im, self.backbone.size, self.backbone.resize)
                    for im in images[start : start + self.batch_size]
                ]
            )
            e, lg = self.session.run(["embedding", "logits"], {self.input_name: batch})
            embs.append(e)
            logits.append(lg)
        return (
            np.concatenate(embs).astype(np.float32, copy=False),
            np.concatenate(logits).astype(np.float32, copy=False),
        )

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.run(images)[0]

    def logits(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The network's own ImageNet logits, for checking bundles built from it."""
        return self.run(images)[1]


# --- hog --------------------------------------------------------------------------------


def hog_batch(gray: np.ndarray) -> np.ndarray:
    """HOG of (n, 64, 64) grey images → (n, 1764) float32, OpenCV's default layout."""
    g = gray.astype(np.float32)
    n, h, w = g.shape
    gx = np.zeros_like(g)
    gy = np.zeros_like(g)
    gx[:, :, 1:-1] = g[:, :, 2:] - g[:, :, :-2]
    gx[:, :, 0] = g[:, :, 1] - g[:, :, 0]
    gx[:, :, -1] = g[:, :, -1] - g[:, :, -2]
    gy[:, 1:-1, :] = g[:, 2:, :] - g[:, :-2, :]
    gy[:, 0, :] = g[:, 1, :] - g[:, 0, :]
    gy[:, -1, :] = g[:, -1, :] - g[:, -2, :]
    mag, ang = cv2.cartToPolar(gx.reshape(n * h, w), gy.reshape(n * h, w), angleInDegrees=True)
    mag = mag.reshape(n, h, w)
    ang = ang.reshape(n, h, w) % np.float32(180.0)
    # Each gradient votes into its two nearest orientation bins (bin centres at 10°, 30°, …).
    pos = ang * np.float32(HOG_BINS / 180.0) - np.float32(0.5)
    lo = np.floor(pos)
    frac = pos - lo
    b0 = lo.astype(np.int32)  # -1 … 8
    b0[b0 < 0] = HOG_BINS - 1
    b1 = b0 + 1
    b1[b1 == HOG_BINS] = 0
    cy, cx = h // HOG_CELL, w // HOG_CELL
    cell_of = (np.arange(h) // HOG_CELL)[:, None] * cx + (np.arange(w) // HOG_CELL)[None, :]
    base = ((np.arange(n) * cy * cx)[:, None, None] + cell_of[None]).astype(np.int32) * HOG_BINS
    size = n * cy * cx * HOG_BINS
    upper = mag * frac
    hist = np.bincount((base + b0).ravel(), (mag - upper).ravel(), size)
    hist += np.bincount((base + b1).ravel(), upper.ravel(), size)
    cells = hist.reshape(n, cy, cx, HOG_BINS).astype(np.float32)
    blocks = np.concatenate(
        [cells[:, :-1, :-1], cells[:, 1:, :-1], cells[:, :-1, 1:], cells[:, 1:, 1:]], axis=-1
    )  # (n, cy-1, cx-1, 36)
    eps = 1e-3
    v = blocks / np.sqrt((blocks**2).sum(-1, keepdims=True) + eps**2)
    v = np.minimum(v, 0.2)
    v = v / np.sqrt((v**2).sum(-1, keepdims=True) + eps**2)
    return v.reshape(n, -1).astype(np.float32)


def color_hist_batch(small_bgr: Sequence[np.ndarray]) -> np.ndarray:
    """HSV joint histograms (8 hue × 4 sat × 4 value), Hellinger-mapped (sqrt of freqs)."""
    hb, sb, vb = HSV_BINS
    out = np.zeros((len(small_bgr), COLOR_DIM), np.float32)
    for i, img in enumerate(small_bgr):
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hh = hsv[:, :, 0].astype(np.int64) * hb // 180
        ss = hsv[:, :, 1].astype(np.int64) * sb // 256
        vv = hsv[:, :, 2].astype(np.int64) * vb // 256
        idx = (np.minimum(hh, hb - 1) * sb + ss) * vb + vv
        counts = np.bincount(idx.ravel(), minlength=COLOR_DIM).astype(np.float32)
        out[i] = np.sqrt(counts / counts.sum())
    return out


class HogFeatures(FeatureSet):
    """HOG (shape) + HSV histogram (colour): a light feature set with no model file."""

    name = "hog"
    version = FEATURE_SPECS["hog"][0]
    dim = HOG_DIM + COLOR_DIM
    chunk = 2048

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty((len(images), self.dim), np.float32)
        for start in range(0, len(images), self.chunk):  # bounds temporaries on big datasets
            small = [
                _resize(as_bgr(im), HOG_SIZE, HOG_SIZE) for im in images[start : start + self.chunk]
            ]
            gray = np.stack([cv2.cvtColor(s, cv2.COLOR_BGR2GRAY) for s in small])
            stop = start + len(small)
            out[start:stop, :HOG_DIM] = l2_normalize(hog_batch(gray))
            out[start:stop, HOG_DIM:] = color_hist_batch(small)
        return out


# --- cnn+hog ----------------------------------------------------------------------------


def concat_normalized(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Feature matrices side by side, each L2-normalized first so none dominates by scale."""
    return np.concatenate([l2_normalize(x) for x in parts], axis=1)


class ConcatFeatures(FeatureSet):
    """Several feature sets side by side, each part L2-normalized first."""

    def __init__(self, name: str, parts: Sequence[FeatureSet]) -> None:
        self.name = name
        self.version = FEATURE_SPECS[name][0]
        self.parts = list(parts)
        self.dim = sum(p.dim for p in self.parts)
        sides = [p.min_side for p in self.parts]
        self.min_side = 0 if 0 in sides else max(sides)

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if len(images) == 0:
            return self._empty()
        return concat_normalized([p.extract(images) for p in self.parts])
