"""Whole people, not only faces: the Tagger's ``person`` comes from CenterNet's person boxes
(vision.person_detector) on real photos from packages — pedestrians seen small, from the
side and from behind (opencv-doc's vtest.avi), the astronaut — and not from oranges, a cat
or noise; boxes come with the result (the contract's ``person_boxes``)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from autotag.config import Settings
from autotag.contract import PhotoResult
from autotag.errors import ModelError
from autotag.vision.decode import DecodeLimits
from autotag.vision.feature_sets import FeatureOptions
from autotag.vision.person_detector import PersonDetector
from autotag.vision.tagger import Tagger
from tests.bundles import with_default_bundle

LIMITS = DecodeLimits(max_file_bytes=8 << 20, max_pixels=64_000_000, max_dimension=20_000)
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


@pytest.fixture(scope="module")
def settings_(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return with_default_bundle(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def tagger(settings_: Settings) -> Tagger:
    return Tagger.load(
        settings_.models_dir,
        feature_options=FeatureOptions(settings_.model_dirs, threads=1),
        limits=LIMITS,
        min_score=0.05,
        max_tags=10,
    )


def _frame(index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(OPENCV_DATA / "vtest.avi"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    cap.release()
    assert ok, "opencv-doc's vtest.avi is needed (apt install opencv-doc)"
    return frame


def _tags(tagger: Tagger, bgr: np.ndarray) -> dict[str, float]:
    r = tagger.tag_images([bgr], describe_faces=False)[0]
    return {t.tag: t.score for t in r.tags}


def test_pedestrians_without_faces_are_people_with_boxes(tagger: Tagger) -> None:
    frame = _frame(200)  # several walkers, small, from the side and behind
    r = tagger.tag_images([frame], describe_faces=False)[0]
    assert "person" in {t.tag for t in r.tags}
    assert r.people is not None and len(r.people) >= 3
    h, w = frame.shape[:2]
    for p in r.people:
        x, y, bw, bh = p.box
        assert 0 <= x < w and 0 <= y < h and 0 < bw <= w and 0 < bh <= h
    sure = [p for p in r.people if p.score >= 0.5]
    assert len(sure) >= 3
    assert all(p.box[3] > p.box[2] for p in sure)  # standing people: taller than wide
    # The boxes travel in the result contract as JSON text, stored per photo.
    stored = PhotoResult.tagged("a" * 64, r).person_boxes
    assert stored is not None
    assert [b[:4] for b in json.loads(stored)] == [list(p.box) for p in r.people]


def test_astronaut_is_a_person_with_a_face(tagger: Tagger) -> None:
    tags = _tags(tagger, np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1]))
    assert {"person", "face"} <= set(tags)


@pytest.mark.parametrize("name", ["orange.jpg", "fruits.jpg", "apple.jpg"])
def test_fruit_is_no_person(tagger: Tagger, name: str) -> None:
    img = cv2.imread(str(OPENCV_DATA / name), cv2.IMREAD_COLOR)
    assert img is not None
    tags = _tags(tagger, img)
    assert "person" not in tags and "face" not in tags, tags
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 25, img.shape), 0, 255)
    tags = _tags(tagger, noisy.astype(np.uint8))
    assert "person" not in tags and "face" not in tags, tags


def test_cat_and_noise_are_no_person(tagger: Tagger) -> None:
    cat = np.ascontiguousarray(skimage.data.chelsea()[:, :, ::-1])
    noise = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for img in (cat, noise):
        tags = _tags(tagger, img)
        assert "person" not in tags and "face" not in tags, tags


def test_tiny_and_black_photos_cost_nothing_and_find_nobody(settings_: Settings) -> None:
    det = PersonDetector.load(settings_.model_dirs)
    assert det.detect(np.zeros((1, 1, 3), np.uint8)) == []
    assert det.detect(np.zeros((480, 640, 3), np.uint8)) == []


def test_a_replaced_model_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "centernet" / "centernet.onnx"
    bad.parent.mkdir()
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="checksum"):
        PersonDetector.load([tmp_path])
