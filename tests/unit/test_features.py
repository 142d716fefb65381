"""Feature sets: dimensions, determinism, batching, preprocessing and model verification."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from autotag.checksums import file_sha256
from autotag.config import Settings, load_settings
from autotag.errors import ModelError
from autotag.vision.feature_sets import FeatureOptions, available_feature_sets, get_feature_set
from autotag.vision.features import (
    CNN_DIM,
    ONNX_DIRNAME,
    ONNX_FILENAME,
    ONNX_SHA256,
    CnnFeatures,
    expected_onnx_sha256,
    feature_set_spec,
    hog_batch,
    l2_normalize,
    onnx_model_path,
    preprocess_cnn,
)


def _options(s: Settings) -> FeatureOptions:
    return FeatureOptions(s.model_dirs, s.tagging.tagging_threads)


OPTIONS = _options(load_settings())


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, :, ::-1])


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [_bgr(skimage.data.chelsea()), _bgr(skimage.data.coffee())]


@pytest.fixture(scope="module")
def mnist_like() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(5)]


def test_specs_known_without_loading() -> None:
    assert available_feature_sets() == ["cnn", "cnn-lite2", "hog", "cnn+hog"]
    assert feature_set_spec("cnn") == {"name": "cnn", "version": "1", "dim": 1280}
    hog = feature_set_spec("hog")["dim"]
    assert feature_set_spec("cnn+hog")["dim"] == 1280 + hog
    with pytest.raises(ModelError, match="unknown feature set 'sift'"):
        feature_set_spec("sift")
    with pytest.raises(ModelError, match="known: cnn, cnn-lite2, hog, cnn\\+hog"):
        get_feature_set("sift", OPTIONS)


def test_l2_normalize() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    out = l2_normalize(x)
    assert out.dtype == np.float32
    assert np.allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert np.allclose(l2_normalize(np.array([0.0, 2.0])), [0.0, 1.0])


def test_preprocess_matches_the_documented_recipe() -> None:
    rgb = skimage.data.coffee()  # 400x600
    x = preprocess_cnn(_bgr(rgb))
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    resized = cv2.resize(rgb, (384, 256), interpolation=cv2.INTER_AREA)
    crop = resized[16:240, 80:304]
    expected = (crop.astype(np.float32) - 127.0) / 128.0
    assert np.allclose(x, expected.transpose(2, 0, 1))


def test_preprocess_handles_odd_shapes() -> None:
    for shape in [(1, 1), (28, 28), (1, 5000, 3), (9000, 3, 3), (10, 10, 4)]:
        img = np.full(shape, 200, np.uint8)
        x = preprocess_cnn(img)
        assert x.shape == (3, 224, 224)
        assert np.allclose(x, (200 - 127) / 128)


def test_hog_dims_and_determinism(mnist_like: list[np.ndarray], photos: list[np.ndarray]) -> None:
    hog = get_feature_set("hog", OPTIONS)
    a = hog.extract(mnist_like)
    assert a.shape == (5, hog.dim) and a.dtype == np.float32
    assert np.array_equal(a, hog.extract(mnist_like))
    assert np.array_equal(a[2:3], hog.extract(mnist_like[2:3]))  # batch-independent
    b = hog.extract(photos)
    assert b.shape == (2, hog.dim)
    assert np.allclose(np.linalg.norm(b[:, :1764], axis=1), 1.0, atol=1e-5)
    assert np.allclose(np.linalg.norm(b[:, 1764:], axis=1), 1.0, atol=1e-5)
    assert hog.extract([]).shape == (0, hog.dim)


def test_hog_sees_edge_orientation() -> None:
    vertical = np.zeros((1, 64, 64), np.uint8)
    vertical[:, :, 32:] = 255  # an edge whose gradient points along x (0°)
    horizontal = vertical.transpose(0, 2, 1).copy()  # gradient along y (90°)
    hv = hog_batch(vertical).reshape(7, 7, 4, 9).sum((0, 1, 2))
    hh = hog_batch(horizontal).reshape(7, 7, 4, 9).sum((0, 1, 2))
    assert hv[0] + hv[8] > 0.9 * hv.sum()  # bins around 0°/180°
    assert hh[4] > 0.9 * hh.sum()  # bin 80°-100°


def test_cnn_dims_determinism_and_batching(photos: list[np.ndarray]) -> None:
    cnn = get_feature_set("cnn", OPTIONS)
    assert get_feature_set("cnn", OPTIONS) is cnn  # loaded once
    assert isinstance(cnn, CnnFeatures)
    emb, logits = cnn.run(photos)
    assert emb.shape == (2, CNN_DIM) and logits.shape == (2, 1000)
    assert emb.dtype == np.float32
    one = cnn.extract(photos[1:])
    assert np.allclose(one[0], emb[1], atol=1e-4)
    assert np.array_equal(cnn.extract(photos), cnn.extract(photos))
    assert int(np.argmax(logits[1])) == 967  # espresso, as in the provenance checks


def test_cnn_plus_hog_concatenates_normalized_parts(photos: list[np.ndarray]) -> None:
    both = get_feature_set("cnn+hog", OPTIONS)
    x = both.extract(photos)
    assert x.shape == (2, both.dim) == (2, feature_set_spec("cnn+hog")["dim"])
    assert np.allclose(np.linalg.norm(x[:, :CNN_DIM], axis=1), 1.0, atol=1e-5)
    assert np.allclose(np.linalg.norm(x[:, CNN_DIM:], axis=1), 1.0, atol=1e-5)
    assert both.key == "cnn+hog@1"


def test_provenance_records_the_shipped_checksum() -> None:
    path = onnx_model_path(OPTIONS.model_dirs)
    assert expected_onnx_sha256(path) == ONNX_SHA256
    assert file_sha256(path) == ONNX_SHA256


def _settings_for(models_dir: Path):
    return load_settings({**os.environ, "AUTOTAG_MODELS_DIR": str(models_dir)})


def test_models_dir_falls_back_to_the_project(tmp_path: Path) -> None:
    s = _settings_for(tmp_path / "empty-models")
    assert onnx_model_path(s.model_dirs) == s.home / "models" / ONNX_DIRNAME / ONNX_FILENAME


def test_missing_onnx_names_every_place_looked(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"not found \(looked in .*/a/.* or .*/b/"):
        onnx_model_path([tmp_path / "a", tmp_path / "b"])


def test_tampered_onnx_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "models" / ONNX_DIRNAME
    d.mkdir(parents=True)
    (d / ONNX_FILENAME).write_bytes(b"not really a network")
    s = _settings_for(tmp_path / "models")
    assert onnx_model_path(s.model_dirs) == d / ONNX_FILENAME
    with pytest.raises(ModelError, match="fails its checksum"):
        get_feature_set("cnn", _options(s))
