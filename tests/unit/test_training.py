"""Training: fitting maths on arrays, then real bundles from a small Fashion-MNIST slice."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_score

from autotag.config import Settings
from autotag.errors import AutotagError
from autotag.learning.datasets import (
    FASHION_MNIST_DIR,
    LabelSet,
    prepare_fashion_mnist,
    read_labels,
)
from autotag.learning.feature_cache import FeatureCache, featurize
from autotag.learning.training import (
    TrainConfig,
    _class_seed,
    choose_threshold,
    fit_class,
    fit_heads,
    platt,
    score_heads,
    sigmoid,
    split_rows,
    stack_heads,
    standardizer,
    train_bundle,
)

needs_fmnist = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed"
)


# --- maths on plain arrays -------------------------------------------------------------------


def _blobs(n: int = 3000, d: int = 20, k: int = 4, sep: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centers = rng.normal(size=(k, d)) * sep
    X = (rng.normal(size=(n, d)) * 2 + 3 + centers[y]).astype(np.float32)
    Y = np.zeros((n, k), np.int8)
    Y[np.arange(n), y] = 1
    return X, LabelSet([f"c{j}" for j in range(k)], [str(i) for i in range(n)], Y), y


def test_platt_recovers_a_known_sigmoid() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=20000) * 2
    y = (rng.random(z.size) < sigmoid(1.5 * z - 0.7)).astype(int)
    a, c = platt(z, y)
    assert a == pytest.approx(1.5, abs=0.08)
    assert c == pytest.approx(-0.7, abs=0.08)
    ref = LogisticRegression(C=1e6).fit(z[:, None], y)
    assert a == pytest.approx(ref.coef_[0, 0], abs=0.02)


def test_choose_threshold_target_and_fallback() -> None:
    y = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0])
    p = np.linspace(1, 0, 10)
    thr, info = choose_threshold(y, p, 0.9)
    assert info["threshold_rule"] == "precision>=0.9"
    assert thr == pytest.approx(p[2])  # top 3 all positive; adding more drops precision
    assert precision_score(y, p >= thr) >= 0.9
    # Unreachable target: negatives score highest, so fall back to best F1
    thr, info = choose_threshold(1 - y, p, 0.99)
    assert info["threshold_rule"] == "best-f1"


def test_folded_weights_equal_sklearn_decision_function() -> None:
    X, labels, _ = _blobs()
    mu, sd = standardizer(X)
    cfg = TrainConfig()
    h = fit_class(X, labels.Y[:, 1], "c1", cfg, mu, sd)
    # Refit sklearn on the same split and standardization: z = w.x - b must match.
    y = labels.Y[:, 1]
    tr, _ = split_rows(y, cfg.val_fraction, _class_seed(cfg.seed, "c1"))
    ref = LogisticRegression(C=cfg.C, class_weight="balanced", max_iter=cfg.max_iter)
    ref.fit((X[tr] - mu) / sd, y[tr])
    z_ref = ref.decision_function((X - mu) / sd)
    z = X @ h.w - h.b
    np.testing.assert_allclose(z, z_ref, rtol=1e-3, atol=1e-3)


def test_thresholds_reach_target_precision_on_validation() -> None:
    X, labels, _ = _blobs(n=4000, sep=1.2, seed=1)
    cfg = TrainConfig(target_precision=0.9)
    heads = fit_heads(X, labels, cfg, jobs=1, progress=False)
    reached = 0
    for j, h in enumerate(heads):
        y = labels.Y[:, j]
        _, va = split_rows(y, cfg.val_fraction, _class_seed(cfg.seed, h.name))
        p = score_heads(X[va], stack_heads([h], X.shape[1]))[:, 0]  # float32, as the bundle
        prec = precision_score(y[va], p >= np.float32(h.threshold))
        assert prec == pytest.approx(h.metrics["val_precision"], abs=1e-9)
        if h.metrics["threshold_rule"].startswith("precision"):
            reached += 1
            assert prec >= 0.9
    assert reached == len(heads)  # separable enough: reachable for every class


def test_unlabeled_rows_are_not_negatives_and_tiny_classes_skip() -> None:
    X, labels, _ = _blobs(n=600, seed=2)
    Y = labels.Y.copy()
    Y[:300, 0] = -1
    Y[:, 3] = 0
    Y[0, 3] = 1  # one positive: not trainable
    heads = fit_heads(X, LabelSet(labels.classes, labels.photo_ids, Y), jobs=1, progress=False)
    assert heads[0].metrics["n_pos"] + heads[0].metrics["n_neg"] == 300
    assert heads[3].metrics["status"].startswith("skipped")
    assert sigmoid(heads[3].calib_a * 0 + heads[3].calib_c) < heads[3].threshold  # never fires


def test_parallel_equals_serial() -> None:
    X, labels, _ = _blobs(n=1500, seed=3)
    a = fit_heads(X, labels, jobs=1, progress=False)
    b = fit_heads(X, labels, jobs=2, progress=False)
    for ha, hb in zip(a, b, strict=True):
        assert ha.name == hb.name
        np.testing.assert_array_equal(ha.w, hb.w)
        assert (ha.b, ha.threshold, ha.calib_a) == (hb.b, hb.threshold, hb.calib_a)


def test_score_heads_top1_on_held_out_blobs() -> None:
    X, labels, y = _blobs(n=4000, sep=1.5, seed=4)
    heads = fit_heads(X[:3000], labels.subset(range(3000)), jobs=1, progress=False)
    P = score_heads(X[3000:], stack_heads(heads, X.shape[1]))
    assert (P.argmax(axis=1) == y[3000:]).mean() > 0.8


# --- real data: a 300-photo Fashion-MNIST slice ----------------------------------------------


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip("dataset-fashion-mnist not installed")
    out = tmp_path_factory.mktemp("fmnist")
    prepare_fashion_mnist(out, limit=300, progress=False)
    return out


@pytest.fixture(scope="module")
def hog_bundle(fmnist: Path, test_settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    """(train result, models dir, cache dir) for a hog bundle trained on 300 photos."""
    models = tmp_path_factory.mktemp("models")
    cache = tmp_path_factory.mktemp("featcache")
    labels = read_labels(fmnist / "train" / "labels.csv")
    test = (fmnist / "test" / "images", read_labels(fmnist / "test" / "labels.csv"))
    res = train_bundle(
        labels,
        fmnist / "train" / "images",
        features="hog",
        name="fm-test",
        jobs=1,
        progress=False,
        cache_root=cache,
        models_dir=models,
        test=test,
    )
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
    assert b.dataset["name"] == "fashion-mnist/train"
    assert len(b.dataset["fingerprints"]) == 10
    assert set(b.metrics["per_class"]) == set(b.classes)


@needs_fmnist
def test_second_run_computes_no_features(hog_bundle, fmnist: Path) -> None:
    _, models, cache = hog_bundle
    res = train_bundle(
        read_labels(fmnist / "train" / "labels.csv"),
        fmnist / "train" / "images",
        features="hog",
        name="fm-test",
        jobs=1,
        progress=False,
        cache_root=cache,
        models_dir=models,
    )
    assert res.features["computed"] == 0
    assert res.features["reused"] == 300
    assert res.bundle.id != hog_bundle[0].bundle.id  # a new version, the old one untouched
    # Same data, same recipe, same seeds: the same weights
    np.testing.assert_array_equal(res.bundle.W, hog_bundle[0].bundle.W)


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
    up = train_bundle(
        read_labels(changed),
        fmnist / "train" / "images",
        update=str(res.path),
        jobs=1,
        progress=False,
        cache_root=cache,
        models_dir=models,
    )
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
        train_bundle(
            read_labels(changed),
            fmnist / "train" / "images",
            update=str(res.path),
            features="cnn",
            progress=False,
            cache_root=cache,
            models_dir=models,
        )


@needs_fmnist
def test_feature_cache_resumes_and_remembers_failures(
    fmnist: Path, tmp_path: Path, test_settings: Settings
) -> None:
    from autotag.vision.features import FeatureOptions, get_feature_set

    fs = get_feature_set("hog", FeatureOptions(test_settings.model_dirs, threads=1))
    imgs = sorted((fmnist / "test" / "images").glob("*.png"))[:30]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # header only: undecodable
    paths = [*imgs[:10], bad, *imgs[10:]]
    first = featurize(paths[:11], fs, cache_root=tmp_path / "c", chunk=4, progress=False)
    assert (first.computed, first.failed) == (10, 1) and not first.ok[10]
    # A torn shard from a "crash" is moved aside, not trusted.
    cdir = FeatureCache.for_feature_set(fs, tmp_path / "c").dir
    (cdir / "shard-99999999999999999999-1.npz").write_bytes(b"PK\x03\x04 torn")
    second = featurize(paths, fs, cache_root=tmp_path / "c", chunk=4, progress=False)
    assert second.computed == 20  # only the photos not done before; the bad one not retried
    assert second.failed == 1
    assert list(cdir.glob("*.corrupt"))
    np.testing.assert_array_equal(second.X[:10], first.X[:10])
    direct = fs.extract([__import__("cv2").imread(str(p)) for p in imgs[10:]])
    np.testing.assert_allclose(second.X[11:], direct, rtol=1e-6, atol=1e-6)


def _onnx_available(settings: Settings) -> bool:
    try:
        from autotag.vision.features import onnx_model_path

        onnx_model_path(settings.model_dirs)
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
    if not _onnx_available(test_settings):
        pytest.skip("EfficientNet-Lite0 ONNX model not present")
    import cv2

    from autotag.vision.bundle import ModelBundle
    from autotag.vision.features import FeatureOptions, get_feature_set

    labels = read_labels(fmnist / "train" / "labels.csv").subset(range(60))
    res = train_bundle(
        labels,
        fmnist / "train" / "images",
        features="cnn",
        merge_default=True,
        name="fm-merged",
        jobs=1,
        progress=False,
        cache_root=tmp_path / "cache",
        models_dir=tmp_path / "models",
    )
    b = ModelBundle.load(res.path)
    assert [h.activation for h in b.heads] == ["sigmoid", "softmax"]
    assert b.classes[:10] == labels.classes
    assert b.k == 10 + 1000 - len(b.provenance["replaced_default_tags"])
    assert "sandal" in b.provenance["replaced_default_tags"]  # an ImageNet class too
    assert b.classes.count("sandal") == 1
    assert "face" in b.detectors
    assert b.metrics["training"]["retrained"] == 10  # our metrics, not the default's

    with pytest.raises(AutotagError, match="needs --features cnn"):
        train_bundle(
            labels,
            fmnist / "train" / "images",
            features="hog",
            merge_default=True,
            progress=False,
            cache_root=tmp_path / "cache",
            models_dir=tmp_path / "models",
        )

    paths = sorted((fmnist / "test" / "images").glob("*.png"))[:12]
    fs = get_feature_set("cnn+hog", FeatureOptions(test_settings.model_dirs, threads=1))
    r = featurize(paths, fs, cache_root=tmp_path / "cache", progress=False)
    direct = fs.extract([cv2.imread(str(p)) for p in paths])
    np.testing.assert_allclose(r.X, direct, rtol=1e-5, atol=1e-6)
    # Training + held-out evaluation on cnn+hog read the part caches too: nothing stored twice.
    test_labels = read_labels(fmnist / "test" / "labels.csv").subset(range(12))
    both = train_bundle(
        labels,
        fmnist / "train" / "images",
        features="cnn+hog",
        jobs=1,
        progress=False,
        cache_root=tmp_path / "cache",
        models_dir=tmp_path / "models",
        test=(fmnist / "test" / "images", test_labels),
    )
    assert both.features["computed"] == 60  # their hog half only: cnn was cached above
    assert both.test["data"]["features"]["computed"] == 0
    assert not any((tmp_path / "cache").glob("cnn+hog*"))  # derived, never stored twice


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
