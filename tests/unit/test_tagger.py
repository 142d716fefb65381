"""The Tagger end to end on real photos (scikit-image samples), plus the face detector."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from autotag.config import Settings, load_settings
from autotag.errors import ImageError, ModelError
from autotag.vision import bundle as bundles
from autotag.vision.bundle import HeadGroup, ModelBundle
from autotag.vision.features import feature_set_spec, get_feature_set
from autotag.vision.imagenet import build_default_bundle
from autotag.vision.tagger import (
    FaceDetector,
    Tagger,
    find_cascade,
    vector_from_b64,
    vector_to_b64,
)

CAT_TAGS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
COFFEE_TAGS = {"espresso", "cup", "coffee mug"}


def _jpeg(name: str) -> bytes:
    rgb = getattr(skimage.data, name)()
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    return buf.tobytes()


def _bgr(name: str) -> np.ndarray:
    return np.ascontiguousarray(getattr(skimage.data, name)()[:, :, ::-1])


@pytest.fixture(scope="module")
def settings_(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    models_dir = tmp_path_factory.mktemp("models")
    build_default_bundle(models_dir)
    return load_settings({**os.environ, "AUTOTAG_MODELS_DIR": str(models_dir)})


@pytest.fixture(scope="module")
def tagger(settings_: Settings) -> Tagger:
    return Tagger.from_active(settings_)


def _names(result) -> list[str]:
    return [t for t, _ in result.tags]


def test_cat_photo(tagger: Tagger) -> None:
    r = tagger.tag_bytes(_jpeg("chelsea"))
    assert set(_names(r)[:3]) & CAT_TAGS, r.tags
    assert "person" not in _names(r)
    assert (r.width, r.height) == (451, 300)


def test_coffee_photo(tagger: Tagger) -> None:
    r = tagger.tag_bytes(_jpeg("coffee"))
    assert _names(r)[0] in COFFEE_TAGS, r.tags
    assert r.tags[0][1] > 0.5


def test_astronaut_is_a_person(tagger: Tagger) -> None:
    r = tagger.tag_bytes(_jpeg("astronaut"))
    assert {"person", "face"} <= set(_names(r)), r.tags
    assert dict(r.tags)["person"] >= 0.85


def test_result_carries_the_contract_fields(tagger: Tagger, settings_: Settings) -> None:
    r = tagger.tag_bytes(_jpeg("coffee"))
    assert r.model_version == bundles.active_bundle_id(settings_.models_dir)
    assert r.feature_set == "cnn@1"
    assert r.vector.dtype == np.float32 and r.vector.shape == (1280,)
    assert abs(float(np.linalg.norm(r.vector)) - 1.0) < 1e-5
    assert all(isinstance(t, str) and 0.0 <= s <= 1.0 for t, s in r.tags)
    assert [s for _, s in r.tags] == sorted((s for _, s in r.tags), reverse=True)
    assert len(r.tags) <= settings_.max_tags
    assert r.tags_json()[0] == [r.tags[0][0], r.tags[0][1]]
    assert np.array_equal(vector_from_b64(r.vector_b64()), r.vector)


def test_batch_equals_single(tagger: Tagger) -> None:
    imgs = [_bgr("chelsea"), _bgr("coffee")]
    batch = tagger.tag_images(imgs)
    single = [tagger.tag_images([im])[0] for im in imgs]
    for a, b in zip(batch, single, strict=True):
        assert _names(a) == _names(b)
        assert np.allclose(a.vector, b.vector, atol=1e-5)
    assert tagger.tag_images([]) == []


def test_tag_file_and_bad_input(tagger: Tagger, tmp_path: Path) -> None:
    p = tmp_path / "coffee.jpg"
    p.write_bytes(_jpeg("coffee"))
    assert _names(tagger.tag_file(p))[0] in COFFEE_TAGS
    with pytest.raises(ImageError, match="not an image"):
        tagger.tag_bytes(b"<html><body>hi</body></html>")
    with pytest.raises(ImageError, match="empty file"):
        tagger.tag_bytes(b"")


def test_grey_and_tiny_images_tag(tagger: Tagger) -> None:
    grey = cv2.cvtColor(_bgr("coffee"), cv2.COLOR_BGR2GRAY)
    tiny = np.full((1, 1, 3), 128, np.uint8)
    for r in tagger.tag_images([grey, tiny]):
        assert r.vector.shape == (1280,)


def test_vector_b64_is_little_endian_float32() -> None:
    v = np.array([1.0, -2.5], np.float32)
    assert vector_to_b64(v) == base64.b64encode(b"\x00\x00\x80?\x00\x00 \xc0").decode()
    assert np.array_equal(vector_from_b64(vector_to_b64(v)), v)
    with pytest.raises(ValueError):
        vector_from_b64(base64.b64encode(b"abc").decode())


def test_hog_bundle_without_detectors(settings_: Settings) -> None:
    spec = feature_set_spec("hog")
    rng = np.random.default_rng(0)
    b = ModelBundle.create(
        id="hog-test-1",
        name="hog-test",
        feature_set=spec,
        classes=["bright", "dark"],
        heads=[HeadGroup("tone", "softmax", 0, 2)],
        W=rng.normal(size=(2, spec["dim"])),
        b=np.zeros(2),
        thresholds=np.zeros(2),
    )
    t = Tagger(b, settings=settings_)
    assert t.face is None
    r = t.tag_images([_bgr("coffee")])[0]
    assert r.feature_set == "hog@1" and r.vector.shape == (spec["dim"],)
    assert sorted(_names(r)) == ["bright", "dark"]


def test_feature_set_mismatch_is_refused(settings_: Settings) -> None:
    b = bundles.load_active(settings_.models_dir)
    with pytest.raises(ModelError, match="was built for cnn@1"):
        Tagger(b, get_feature_set("hog"), settings=settings_)
    b.detectors = ["unicorn"]
    with pytest.raises(ModelError, match="unknown detectors"):
        Tagger(b, settings=settings_)


def test_no_active_bundle(tmp_path: Path) -> None:
    s = load_settings({**os.environ, "AUTOTAG_MODELS_DIR": str(tmp_path)})
    with pytest.raises(ModelError, match="init-default"):
        Tagger.from_active(s)


# --- face detector ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def faces() -> FaceDetector:
    return FaceDetector.load()


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


def test_missing_cascade_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="could not be loaded"):
        FaceDetector.load(tmp_path / "missing.xml")
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

    found = sum(bool(faces.tags(scene(lfw[i]))) for i in range(20))
    false = sum(bool(faces.tags(scene(lfw[100 + i]))) for i in range(20))
    assert found >= 14, found
    assert false == 0, false
