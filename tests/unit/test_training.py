"""Training workflow: real bundles from a small Fashion-MNIST slice (maths: test_head.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from autotag.config import Settings, load_settings
from autotag.errors import AutotagError
from autotag.learning.datasets import (
    FASHION_MNIST_DIR,
    prepare_fashion_mnist,
    read_labels,
)
from autotag.learning.feature_cache import FeatureCache, featurize
from autotag.learning.progress import Step
from autotag.learning.workflow import TrainRequest, train_bundle
from autotag.vision.decode import DecodeLimits
from autotag.vision.feature_sets import FeatureOptions, get_feature_set
from autotag.vision.features import onnx_model_path

needs_fmnist = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed"
)

# What the CLI reads from settings and passes down.
_SETTINGS = load_settings()
LIMITS = DecodeLimits(
    _SETTINGS.limits.max_file_bytes, _SETTINGS.limits.max_pixels, _SETTINGS.limits.max_dimension
)
OPTIONS = FeatureOptions(_SETTINGS.model_dirs, threads=1)


# --- real data: a 300-photo Fashion-MNIST slice ----------------------------------------------


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip("dataset-fashion-mnist not installed")
    out = tmp_path_factory.mktemp("fmnist")
    prepare_fashion_mnist(out, limit=300)
    return out


@pytest.fixture(scope="module")
def hog_bundle(fmnist: Path, test_settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    """(train result, models dir, cache dir) for a hog bundle trained on 300 photos."""
    models = tmp_path_factory.mktemp("models")
    cache = tmp_path_factory.mktemp("featcache")
    labels = read_labels(fmnist / "train" / "labels.csv")
    test = (fmnist / "test" / "images", read_labels(fmnist / "test" / "labels.csv"))
    request = TrainRequest(
        labels, fmnist / "train" / "images", features="hog", name="fm-test", jobs=1, test=test
    )
    res = train_bundle(request, models, cache, limits=LIMITS, feature_options=OPTIONS)
    return res, models, cache


@needs_fmnist
def test_trained_bundle_loads_and_beats_chance(hog_bundle) -> None:
    from autotag.vision.bundle import ModelBundle

    res, models, _ = hog_bundle
    b = ModelBundle.load(res.path)  # the other side of the contract: checksums, shapes
    assert b.classes == read_labels(res.bundle.dataset["labels"]).classes
    assert b.feature_key == "hog@1" and b.heads[0].activation == "sigmoid"
    assert res.features["computed"] == 300
    test = b.metrics["test"]
    assert test["data"]["features"]["computed"] == 300  # held-out photos, featurized apart
    assert test["photos"] == 300
    assert test["top1_accuracy"] > 0.6  # chance is 0.1
    assert b.metrics["test_top1_accuracy"] == test["top1_accuracy"]
    assert b.provenance["trainer"] == "autotag.learning.workflow.train_bundle"
    assert b.dataset["name"] == "fashion-mnist/train"
    assert len(b.dataset["fingerprints"]) == 10
    assert set(b.metrics["per_class"]) == set(b.classes)


@needs_fmnist
def test_second_run_computes_no_features(hog_bundle, fmnist: Path) -> None:
    _, models, cache = hog_bundle
    labels = read_labels(fmnist / "train" / "labels.csv")
    request = TrainRequest(
        labels, fmnist / "train" / "images", features="hog", name="fm-test", jobs=1
    )
    res = train_bundle(request, models, cache, limits=LIMITS, feature_options=OPTIONS)
    assert res.features["computed"] == 0
    assert res.features["reused"] == 300
    assert res.bundle.id != hog_bundle[0].bundle.id  # a new version, the old one untouched
    # Same data, same recipe, same seeds: the same weights
    np.testing.assert_array_equal(res.bundle.W, hog_bundle[0].bundle.W)


@needs_fmnist
def test_progress_goes_to_the_callback_not_stdout(
    hog_bundle, fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res, models, cache = hog_bundle
    events: list[Step | str] = []
    labels = read_labels(fmnist / "train" / "labels.csv")
    request = TrainRequest(labels, fmnist / "train" / "images", update=res.bundle.id, jobs=1)
    up = train_bundle(
        request, models, cache, limits=LIMITS, feature_options=OPTIONS, progress=events.append
    )
    assert up.retrained == [] and len(up.reused) == 10
    assert events[-1] == f"update {res.bundle.id}: retrain 0, reuse 10, keep 0 classes"
    assert events[:-1] == [Step("features hog@1", 0, 0, "img")]  # all cached, nothing to fit
    assert capsys.readouterr() == ("", "")
    np.testing.assert_array_equal(up.bundle.W, res.bundle.W)


@needs_fmnist
def test_update_retrains_only_the_changed_class(hog_bundle, fmnist: Path, tmp_path: Path) -> None:
    from autotag.vision.bundle import ModelBundle

    res, models, cache = hog_bundle
    old = ModelBundle.load(res.path)
    rows = list(csv.reader((fmnist / "train" / "labels.csv").open()))
    flipped = 0
    for r in rows[1:]:
        if r[0] == "bag" and r[2] == "FALSE" and flipped < 3:
            r[2] = "TRUE"
            flipped += 1
    # Drop the "shirt" rows entirely: that class must be kept as it was.
    rows = [r for r in rows if r[0] != "shirt"]
    changed = tmp_path / "labels.csv"
    with changed.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    request = TrainRequest(
        read_labels(changed), fmnist / "train" / "images", update=str(res.path), jobs=1
    )
    up = train_bundle(request, models, cache, limits=LIMITS, feature_options=OPTIONS)
    assert up.retrained == ["bag"]
    assert up.kept == ["shirt"]
    assert len(up.reused) == 8
    new = ModelBundle.load(up.path)
    assert sorted(new.classes) == sorted(old.classes)
    for c in old.classes:
        i, j = old.classes.index(c), new.classes.index(c)
        same = old.W[i].tobytes() == new.W[j].tobytes()
        assert same == (c != "bag"), c
        if c != "bag":
            for key in ("b", "thresholds", "calib_a", "calib_c"):
                assert getattr(old, key)[i].tobytes() == getattr(new, key)[j].tobytes()
    assert new.dataset["fingerprints"]["bag"] != old.dataset["fingerprints"]["bag"]
    assert new.provenance["updated_from"] == old.id
    with pytest.raises(AutotagError, match="uses hog features"):
        request = TrainRequest(
            read_labels(changed), fmnist / "train" / "images", features="cnn", update=str(res.path)
        )
        train_bundle(request, models, cache, limits=LIMITS, feature_options=OPTIONS)


@needs_fmnist
def test_feature_cache_resumes_and_remembers_failures(
    fmnist: Path, tmp_path: Path, test_settings: Settings
) -> None:
    fs = get_feature_set("hog", OPTIONS)
    imgs = sorted((fmnist / "test" / "images").glob("*.png"))[:30]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # header only: undecodable
    paths = [*imgs[:10], bad, *imgs[10:]]
    first = featurize(paths[:11], fs, tmp_path / "c", limits=LIMITS, chunk=4)
    assert (first.computed, first.failed) == (10, 1) and not first.ok[10]
    # A torn shard from a "crash" is moved aside, not trusted.
    cdir = FeatureCache.for_feature_set(fs, tmp_path / "c").dir
    (cdir / "shard-99999999999999999999-1.npz").write_bytes(b"PK\x03\x04 torn")
    second = featurize(paths, fs, tmp_path / "c", limits=LIMITS, chunk=4)
    assert second.computed == 20  # only the photos not done before; the bad one not retried
    assert second.failed == 1
    assert list(cdir.glob("*.corrupt"))
    np.testing.assert_array_equal(second.X[:10], first.X[:10])
    direct = fs.extract([__import__("cv2").imread(str(p)) for p in imgs[10:]])
    np.testing.assert_allclose(second.X[11:], direct, rtol=1e-6, atol=1e-6)


def _onnx_available() -> bool:
    try:
        onnx_model_path(OPTIONS.model_dirs)
        return True
    except Exception:  # noqa: BLE001 - any reason means: skip
        return False


@needs_fmnist
def test_merge_default_and_cnn_hog_from_part_caches(
    fmnist: Path, test_settings: Settings, tmp_path: Path
) -> None:
    """--merge-default: trained sigmoid heads first, ImageNet softmax after, clashes replaced.

    cnn+hog features come from the cnn and hog caches and must equal a direct extract.
    """
    if not _onnx_available():
        pytest.skip("EfficientNet-Lite0 ONNX model not present")
    import cv2

    from autotag.vision.bundle import ModelBundle

    labels = read_labels(fmnist / "train" / "labels.csv").subset(range(60))
    images = fmnist / "train" / "images"
    cache, models = tmp_path / "cache", tmp_path / "models"
    request = TrainRequest(labels, images, "cnn", merge_default=True, name="fm-merged", jobs=1)
    res = train_bundle(request, models, cache, limits=LIMITS, feature_options=OPTIONS)
    b = ModelBundle.load(res.path)
    assert [h.activation for h in b.heads] == ["sigmoid", "softmax"]
    assert b.classes[:10] == labels.classes
    assert b.k == 10 + 1000 - len(b.provenance["replaced_default_tags"])
    assert "sandal" in b.provenance["replaced_default_tags"]  # an ImageNet class too
    assert b.classes.count("sandal") == 1
    assert "face" in b.detectors
    assert b.metrics["training"]["retrained"] == 10  # our metrics, not the default's

    hog_default = TrainRequest(labels, images, "hog", merge_default=True)
    with pytest.raises(AutotagError, match="needs --features cnn"):
        train_bundle(hog_default, models, cache, limits=LIMITS, feature_options=OPTIONS)

    paths = sorted((fmnist / "test" / "images").glob("*.png"))[:12]
    fs = get_feature_set("cnn+hog", OPTIONS)
    r = featurize(paths, fs, cache, limits=LIMITS)
    direct = fs.extract([cv2.imread(str(p)) for p in paths])
    np.testing.assert_allclose(r.X, direct, rtol=1e-5, atol=1e-6)
    # Training + held-out evaluation on cnn+hog read the part caches too: nothing stored twice.
    test_labels = read_labels(fmnist / "test" / "labels.csv").subset(range(12))
    request = TrainRequest(
        labels, images, "cnn+hog", jobs=1, test=(fmnist / "test" / "images", test_labels)
    )
    both = train_bundle(request, models, cache, limits=LIMITS, feature_options=OPTIONS)
    assert both.features["computed"] == 60  # their hog half only: cnn was cached above
    assert both.test["data"]["features"]["computed"] == 0
    assert not any(cache.glob("cnn+hog*"))  # derived, never stored twice


@needs_fmnist
def test_cli_train_and_evaluate(fmnist: Path, test_settings: Settings, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from autotag.cli.training import evaluate, train

    runner = CliRunner()
    r = runner.invoke(
        train,
        [
            "--images",
            str(fmnist / "train" / "images"),
            "--labels",
            str(fmnist / "train" / "labels.csv"),
            "--features",
            "hog",
            "--jobs",
            "1",
            "--name",
            "cli-test",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["classes"] == 10 and out["id"].startswith("cli-test-")
    r = runner.invoke(
        evaluate,
        [
            out["path"],
            "--images",
            str(fmnist / "test" / "images"),
            "--labels",
            str(fmnist / "test" / "labels.csv"),
            "--out",
            str(tmp_path / "ev"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    ev = json.loads(r.output)
    assert ev["summary"]["top1_accuracy"] > 0.6
    assert (tmp_path / "ev" / "confusion.png").is_file()
    assert (tmp_path / "ev" / "pr_curves.png").is_file()
