"""A trained network as a feature set: ``net:<bundle id>``, its ONNX graph in that bundle.

A network trained by ``autotag train-cnn`` is split at its last layer: the ONNX graph up to
the penultimate layer gives the vector (output ``embedding``), and the last dense layer
becomes the bundle's ``W, b`` with a softmax head. So tagging, ``autotag evaluate`` and the
bolts run it exactly like any other bundle. The graph is found in ``bundles/<id>/`` of the
model directories and checked against the sha256 its manifest records before it is loaded.

Preprocessing is the training's: grey, resized to the network's input (INTER_AREA when
shrinking), scaled to [0, 1], NCHW. A head trained on feature vectors (``autotag train-mlp``)
names its ``base`` feature set in the spec instead: the graph then runs on that set's vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from autotag.checksums import file_sha256
from autotag.errors import ModelError
from autotag.vision.bundle import MANIFEST_FILE, check_bundle_id, read_manifest
from autotag.vision.features import NETWORK_PREFIX, FeatureSet, as_bgr
from autotag.vision.onnx import onnx_session

NETWORK_FILE = "network.onnx"


def network_name(bundle_id: str) -> str:
    return NETWORK_PREFIX + check_bundle_id(bundle_id)


def find_network(name: str, model_dirs: Sequence[Path]) -> Path:
    """The bundle directory that holds feature set ``name`` (first of ``model_dirs``)."""
    bundle_id = check_bundle_id(name[len(NETWORK_PREFIX) :])
    candidates = [Path(d) / "bundles" / bundle_id for d in model_dirs]
    for path in candidates:
        if (path / MANIFEST_FILE).is_file():
            return path
    looked = " or ".join(str(p) for p in dict.fromkeys(candidates))
    raise ModelError(f"feature set {name}: no bundle {bundle_id} (looked in {looked})")


def to_network_input(images: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Images (grey, BGR or BGRA uint8) → (n, 1, height, width) float32 in [0, 1]."""
    out = np.empty((len(images), 1, height, width), np.float32)
    for i, img in enumerate(images):
        grey = cv2.cvtColor(as_bgr(img), cv2.COLOR_BGR2GRAY)
        h, w = grey.shape
        if (h, w) != (height, width):
            shrink = height <= h and width <= w
            interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            grey = cv2.resize(grey, (width, height), interpolation=interp)
        out[i, 0] = grey.astype(np.float32) / np.float32(255.0)
    return out


class NetworkFeatures(FeatureSet):
    """The embedding of a trained network (ONNX, onnxruntime)."""

    min_side = 0
    batch_size = 256

    def __init__(
        self,
        name: str,
        model_dirs: Sequence[Path],
        *,
        threads: int = 1,
        base_sets: Callable[[str], FeatureSet] | None = None,
    ) -> None:
        """``base_sets`` gives a head trained on vectors its base feature set by name (the
        registry, ``vision/feature_sets.py``, passes its own lookup)."""

        directory = find_network(name, model_dirs)
        manifest = read_manifest(directory)
        spec = manifest.get("feature_set") or {}
        digest = (manifest.get("files") or {}).get(NETWORK_FILE)
        if spec.get("name") != name or not digest:
            raise ModelError(f"bundle {directory.name} does not define feature set {name}")
        self.onnx_path = directory / NETWORK_FILE
        if not self.onnx_path.is_file() or file_sha256(self.onnx_path) != digest:
            raise ModelError(f"{self.onnx_path} is missing or fails its sha256 check")
        self.name, self.version, self.dim = name, str(spec["version"]), int(spec["dim"])
        self.base: FeatureSet | None = None
        if "base" in spec:
            base = spec["base"]
            if base_sets is None:
                raise ModelError(f"{name} runs on {base['name']} vectors: load it by its name")
            self.base = base_sets(str(base["name"]))
            want, have = (
                (str(base["version"]), int(base["dim"])),
                (self.base.version, self.base.dim),
            )
            if (str(have[0]), int(have[1])) != want:
                raise ModelError(f"{name} was trained on {base}; this code has {self.base.spec()}")
            self.min_side = self.base.min_side
        else:
            _, self.height, self.width = (int(v) for v in spec["input"])
        self.session = onnx_session(self.onnx_path, threads, what=f"network {self.onnx_path}")

    def run(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(embedding, logits) of the images, in batches."""
        if self.base is not None:
            x = self.base.extract(images)
        else:
            x = to_network_input(images, self.height, self.width)
        embs, logits = [], []
        for s in range(0, max(len(x), 1), self.batch_size):
            e, lg = self.session.run(["embedding", "logits"], {"image": x[s : s + self.batch_size]})
            embs.append(e)
            logits.append(lg)
        return np.concatenate(embs).astype(np.float32), np.concatenate(logits)

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.run(images)[0]
