"""MLP head: learns what a linear head cannot, exports to a bundle whose ONNX hidden layer on
the base feature set scores as the NumPy head does, and ``evaluate`` reads that bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autotag.config import Settings, load_settings
from autotag.errors import AutotagError
from autotag.learning.datasets import (
    FASHION_MNIST_DIR,
    LabelSet,
    prepare_fashion_mnist,
    read_labels,
)
from autotag.learning.evaluation import evaluate_bundle
from autotag.learning.mlp_head import MLPHead
from autotag.learning.mlp_workflow import MLPRequest, exclusive_targets, train_mlp_bundle
from autotag.vision.bundle import ModelBundle
from autotag.vision.decode import DecodeLimits
from autotag.vision.feature_sets import FeatureOptions, get_feature_set

_SETTINGS = load_settings()
LIMITS = DecodeLimits(
    _SETTINGS.limits.max_file_bytes, _SETTINGS.limits.max_pixels, _SETTINGS.limits.max_dimension
)


def _rings(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric rings in 2-d plus 3 noise dimensions: no line separates them."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = np.where(y == 1, 2.0, 1.0) + rng.normal(0, 0.15, n)
    X = np.c_[radius * np.cos(angle), radius * np.sin(angle), rng.normal(0, 1, (n, 3))]
    return X.astype(np.float32), y


def test_mlp_separates_what_a_line_cannot() -> None:
    X, y = _rings(2000, 0)
    head = MLPHead(hidden=32, epochs=40, lr=1e-2, dropout=0.0, seed=1).fit(X, y)
    Xt, yt = _rings(1000, 1)
    proba = head.predict_proba(Xt)
    assert proba.shape == (1000, 2) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert (head.predict(Xt) == yt).mean() > 0.95
    assert head.validation_accuracy_ > 0.95 and 1 <= head.best_epoch_ <= len(head.history_)
    assert head.W1_.shape == (5, 32) and head.W2_.shape == (32, 2) and head.classes_ == ["0", "1"]
    # The best linear rule on these features is near chance.
    from sklearn.linear_model import LogisticRegression

    assert LogisticRegression().fit(X, y).score(Xt, yt) < 0.7


def test_folded_hidden_layer_equals_transform() -> None:
    X, y = _rings(500, 2)
    X = X * 30 + 7  # far from standardized, so the fold matters
    head = MLPHead(hidden=8, epochs=3, seed=0).fit(X, y)
    w, b = head.hidden_layer()
    assert np.abs(np.maximum(X @ w + b, 0) - head.transform(X)).max() <= 1e-3
    again = MLPHead(hidden=8, epochs=3, seed=0).fit(X, y)
    assert np.array_equal(again.W1_, head.W1_)  # seeded: a retrain is reproducible


def test_softmax_needs_exactly_one_class_per_photo() -> None:
    ok = LabelSet(["a", "b"], ["1", "2"], np.array([[1, 0], [0, 1]]))
    assert exclusive_targets(ok).tolist() == [0, 1]
    with pytest.raises(AutotagError, match="exactly one TRUE class"):
        exclusive_targets(LabelSet(["a", "b"], ["1", "2"], np.array([[1, 1], [0, 1]])))


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip("dataset-fashion-mnist not installed")
    out = tmp_path_factory.mktemp("fmnist")
    prepare_fashion_mnist(out, limit=400)
    return out


def test_mlp_bundle_scores_through_its_feature_set_and_evaluates(
    fmnist: Path, test_settings: Settings, tmp_path: Path
) -> None:
    models, cache = tmp_path / "models", tmp_path / "featcache"
    options = FeatureOptions((models, *_SETTINGS.model_dirs), threads=1)
    test = (fmnist / "test" / "images", read_labels(fmnist / "test" / "labels.csv"))
    request = MLPRequest(
        read_labels(fmnist / "train" / "labels.csv"),
        fmnist / "train" / "images",
        features="hog",
        recipe={"hidden": 64, "epochs": 15},
        name="mlp-test",
        test=test,
    )
    bundle, report = train_mlp_bundle(
        request, models, cache, limits=LIMITS, feature_options=options, work_dir=tmp_path
    )
    saved = ModelBundle.load(bundle.path)
    assert saved.feature_set["base"]["name"] == "hog" and saved.k == 10
    assert saved.metrics["onnx_vs_head_max_abs_diff"]["probabilities"] <= 1e-5
    top1 = report["summary"]["top1_accuracy"]
    assert top1 > 0.6  # 400 training photos, 10 classes
    # The bolt's path: the chained feature set straight from decoded images, then the bundle.
    fs = get_feature_set(saved.feature_set["name"], options)
    assert fs.dim == 64 and fs.min_side == get_feature_set("hog", options).min_side
    ev = evaluate_bundle(saved, test[0], test[1], cache, limits=LIMITS, feature_options=options)
    assert ev["summary"]["top1_accuracy"] == pytest.approx(top1, abs=1e-9)
