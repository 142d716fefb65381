"""The face detector (BlazeFace): where it finds faces, where it must not, LFW recall and
precision, and that it finds at least as many faces as the Haar cascade it replaced."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from autotag.config import load_settings
from autotag.errors import ModelError
from autotag.vision.faces import BLAZEFACE_FILE, FaceDetector, HaarFaceDetector, find_cascade


def _bgr(name: str) -> np.ndarray:
    return np.ascontiguousarray(getattr(skimage.data, name)()[:, :, ::-1])


@pytest.fixture(scope="module")
def faces() -> FaceDetector:
    return FaceDetector.load(load_settings().model_dirs)


def test_face_found_where_it_is(faces: FaceDetector) -> None:
    found = faces.detect(_bgr("astronaut"))
    assert len(found) == 1
    f = found[0]
    # Eileen Collins' face: roughly x 170-270, y 60-160 in the 512x512 photo.
    assert 150 < f.x + f.w / 2 < 290 and 60 < f.y + f.h / 2 < 170
    assert 60 < f.w < 140


def test_no_faces_in_non_portraits(faces: FaceDetector) -> None:
    for name in ("chelsea", "coffee", "coins", "rocket", "page"):
        img = getattr(skimage.data, name)()
        bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img[:, :, ::-1]
        assert faces.tags(np.ascontiguousarray(bgr)) == [], name


def test_missing_or_altered_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        FaceDetector.load([tmp_path])
    bad = tmp_path / BLAZEFACE_FILE
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="checksum"):
        FaceDetector.load([tmp_path])
    with pytest.raises(ModelError, match="could not be loaded"):
        HaarFaceDetector.load(tmp_path / "missing.xml")
    with pytest.raises(ModelError, match="opencv-data"):
        find_cascade("no_such_cascade.xml")


def test_face_recall_and_precision_on_lfw(faces: FaceDetector) -> None:
    """LFW crops (scikit-image's lfw_subset) pasted into textured 320x240 scenes."""
    lfw = (skimage.data.lfw_subset() * 255).astype(np.uint8)  # 100 faces, then 100 non-faces
    rng = np.random.default_rng(0)

    def scene(patch: np.ndarray) -> np.ndarray:
        noise = np.clip(rng.normal(128, 30, (240, 320)), 0, 255).astype(np.uint8)
        bg = cv2.GaussianBlur(noise, (0, 0), 3)
        bg[40:130, 100:190] = cv2.resize(patch, (90, 90), interpolation=cv2.INTER_CUBIC)
        return cv2.cvtColor(bg, cv2.COLOR_GRAY2BGR)

    face_scenes = [scene(lfw[i]) for i in range(100)]
    other_scenes = [scene(lfw[100 + i]) for i in range(100)]
    found = sum(bool(faces.tags(s)) for s in face_scenes)
    false = sum(bool(faces.tags(s)) for s in other_scenes)
    assert found >= 90, found
    assert false <= 1, false
    # Not worse than the Haar cascade it replaced, on the same scenes.
    haar = HaarFaceDetector.load()
    assert found >= sum(bool(haar.tags(s)) for s in face_scenes)


def test_faces_side_by_side_in_a_panorama(faces: FaceDetector) -> None:
    """Five LFW faces side by side in a 5:1 strip (a group panorama), or one above the
    other in a 1:5 one, are each found where they are: shrunk whole to the detector's
    128 px they would be a few pixels. Five non-face crops in the same strip give no face."""
    lfw = (skimage.data.lfw_subset() * 255).astype(np.uint8)
    rng = np.random.default_rng(1)

    def strip(patches: list[np.ndarray], tall: bool = False) -> np.ndarray:
        tiles = []
        for patch in patches:
            noise = np.clip(rng.normal(128, 30, (240, 240)), 0, 255)
            tile = cv2.GaussianBlur(noise.astype(np.uint8), (0, 0), 3)
            tile[60:150, 75:165] = cv2.resize(patch, (90, 90), interpolation=cv2.INTER_CUBIC)
            tiles.append(tile)
        joined = np.vstack(tiles) if tall else np.hstack(tiles)
        return cv2.cvtColor(joined, cv2.COLOR_GRAY2BGR)

    for start in (0, 20, 40):
        patches = [lfw[start + i] for i in range(5)]
        wide = faces.detect(strip(patches))
        assert sorted((f.x + f.w / 2) // 240 for f in wide) == [0, 1, 2, 3, 4], (start, wide)
        tall = faces.detect(strip(patches, tall=True))
        assert sorted((f.y + f.h / 2) // 240 for f in tall) == [0, 1, 2, 3, 4], (start, tall)
    for start in (100, 120, 140):
        assert faces.detect(strip([lfw[start + i] for i in range(5)])) == [], start
