"""Model bundles: the on-disk contract, verification, scoring, merging and the default one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from autotag.checksums import file_sha256
from autotag.config import load_settings
from autotag.errors import ModelError
from autotag.vision import bundle as bundles
from autotag.vision.bundle import HeadGroup, ModelBundle
from autotag.vision.feature_sets import FeatureOptions, get_feature_set
from autotag.vision.features import feature_set_spec, onnx_model_path
from autotag.vision.imagenet import (
    build_default_bundle,
    default_bundle_id,
    imagenet_class_names,
)

FS = {"name": "hog", "version": "1", "dim": 4}
MODEL_DIRS = load_settings().model_dirs


def small_bundle(bundle_id: str = "tiny-1", seed: int = 0, prefix: str = "") -> ModelBundle:
    """Two heads over 4-d features: a 3-way softmax and two calibrated sigmoids."""
    rng = np.random.default_rng(seed)
    return ModelBundle.create(
        id=bundle_id,
        name="tiny",
        feature_set=FS,
        classes=[f"{prefix}{c}" for c in ("cat", "dog", "bird", "indoor", "night")],
        heads=[
            HeadGroup("animal", "softmax", 0, 3, "test"),
            HeadGroup("scene", "sigmoid", 3, 5, "test"),
        ],
        W=rng.normal(size=(5, 4)),
        b=rng.normal(size=5),
        calib_a=np.array([1, 1, 1, 2.0, 0.5]),
        calib_c=np.array([0, 0, 0, -1.0, 0.25]),
        metrics={"accuracy": 0.9},
        dataset={"name": "unit"},
    )


def test_save_load_round_trip(tmp_path: Path) -> None:
    b = small_bundle()
    path = b.install(tmp_path)
    assert path == tmp_path / "bundles" / "tiny-1"
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "weights.npz"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == "autotag-bundle/1"
    assert set(manifest) >= {
        "id", "name", "version", "created", "feature_set", "classes", "heads",
        "detectors", "files", "metrics", "dataset", "provenance",
    }  # fmt: skip
    assert manifest["heads"][1] == {
        "group": "scene", "activation": "sigmoid", "start": 3, "stop": 5, "source": "test",
        "input": "raw",
    }  # fmt: skip
    with np.load(path / "weights.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["W", "b", "calib_a", "calib_c", "thresholds"]
    c = ModelBundle.load(path)
    for arr in ("W", "b", "thresholds", "calib_a", "calib_c"):
        assert np.array_equal(getattr(b, arr), getattr(c, arr))
        assert getattr(c, arr).dtype == np.float32
    assert (c.id, c.classes, c.heads, c.metrics) == (b.id, b.classes, b.heads, b.metrics)
    assert c.path == path


def test_checksum_tamper_is_refused(tmp_path: Path) -> None:
    path = small_bundle().install(tmp_path)
    data = bytearray((path / "weights.npz").read_bytes())
    data[-40] ^= 0xFF
    (path / "weights.npz").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="weights.npz fails its sha256 check"):
        ModelBundle.load(path)
    (path / "weights.npz").unlink()
    with pytest.raises(ModelError, match="weights.npz is missing"):
        ModelBundle.load(path)


def test_pickled_arrays_are_refused_even_with_a_matching_checksum(tmp_path: Path) -> None:
    path = small_bundle().install(tmp_path)
    b = ModelBundle.load(path)
    with open(path / "weights.npz", "wb") as f:
        np.savez(
            f,
            W=np.array([object()] * 20, dtype=object),
            b=b.b,
            thresholds=b.thresholds,
            calib_a=b.calib_a,
            calib_c=b.calib_c,
        )
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["weights.npz"] = file_sha256(path / "weights.npz")
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="cannot read weights.npz"):
        ModelBundle.load(path)


def test_manifest_problems_are_model_errors(tmp_path: Path) -> None:
    path = small_bundle().install(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable manifest.json"):
        ModelBundle.load(path)
    manifest["classes"] = manifest["classes"][:4]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"W is \(5, 4\), expected \(4, 4\)"):
        ModelBundle.load(path)
    manifest["files"] = {"../weights.npz": "0" * 64, "weights.npz": "0" * 64}
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="bad file name"):
        ModelBundle.load(path)


def test_score_is_one_product_then_activations() -> None:
    b = small_bundle()
    X = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    Z = X @ b.W.T - b.b
    assert np.allclose(b.decision(X), Z)
    P = b.score(X)
    assert P.shape == (6, 5)
    soft = np.exp(Z[:, :3]) / np.exp(Z[:, :3]).sum(1, keepdims=True)
    assert np.allclose(P[:, :3], soft, atol=1e-6)
    assert np.allclose(P[:, :3].sum(1), 1.0)
    sig = 1 / (1 + np.exp(-(b.calib_a[3:] * Z[:, 3:] + b.calib_c[3:])))
    assert np.allclose(P[:, 3:], sig, atol=1e-6)
    assert np.allclose(b.score(X[0]), P[:1])  # a single vector works too
    with pytest.raises(ModelError, match="expects 4-d hog@1 features"):
        b.score(np.zeros((1, 7)))


def test_extreme_scores_do_not_overflow() -> None:
    b = small_bundle()
    P = b.score(np.full((1, 4), 1e30, np.float32))
    assert np.all(np.isfinite(P))


def test_tags_for_thresholds_and_order() -> None:
    b = small_bundle()
    b.thresholds[:] = [0.15, 0.15, 0.15, 0.5, 0.5]
    probs = np.array([0.1, 0.7, 0.2, 0.55, 0.4])
    assert b.tags_for(probs) == [
        ("dog", pytest.approx(0.7)),
        ("indoor", pytest.approx(0.55)),
        ("bird", pytest.approx(0.2)),
    ]
    assert [t for t, _ in b.tags_for(probs, min_score=0.5)] == ["dog", "indoor"]
    assert [t for t, _ in b.tags_for(probs, max_tags=1)] == ["dog"]


def test_merge_concatenates_heads() -> None:
    a = small_bundle("a-1", seed=1)
    c = small_bundle("c-1", seed=2, prefix="x-")
    c.heads = [HeadGroup("animal2", "softmax", 0, 3), HeadGroup("scene2", "sigmoid", 3, 5)]
    m = a.merge(c, id="merged-1")
    assert m.id == "merged-1" and m.k == 10
    assert [h.group for h in m.heads] == ["animal", "scene", "animal2", "scene2"]
    assert (m.heads[2].start, m.heads[3].stop) == (5, 10)
    X = np.random.default_rng(3).normal(size=(4, 4))
    assert np.allclose(m.score(X), np.concatenate([a.score(X), c.score(X)], axis=1), atol=1e-6)
    assert m.provenance["merged_from"] == ["a-1", "c-1"]
    with pytest.raises(ModelError, match="both have tags"):
        a.merge(small_bundle("d-1"))
    other_fs = small_bundle("e-1", prefix="y-")
    other_fs.feature_set = {"name": "cnn", "version": "1", "dim": 4}
    with pytest.raises(ModelError, match="different feature sets"):
        a.merge(other_fs)


def test_validation_rejects_bad_layouts() -> None:
    with pytest.raises(ModelError, match="heads must tile"):
        ModelBundle.create(
            name="x", feature_set=FS, classes=["a", "b"], heads=[HeadGroup("g", "softmax", 1, 2)],
            W=np.zeros((2, 4)), b=np.zeros(2),
        )  # fmt: skip
    with pytest.raises(ModelError, match="duplicate class names"):
        ModelBundle.create(
            name="x", feature_set=FS, classes=["a", "a"], heads=[HeadGroup("g", "softmax", 0, 2)],
            W=np.zeros((2, 4)), b=np.zeros(2),
        )  # fmt: skip
    with pytest.raises(ModelError, match="NaN"):
        ModelBundle.create(
            name="x", feature_set=FS, classes=["a"], heads=[HeadGroup("g", "sigmoid", 0, 1)],
            W=np.full((1, 4), np.nan), b=np.zeros(1),
        )  # fmt: skip
    for bad in ("../x", "a/b", "", ".hidden", "x" * 200):
        with pytest.raises(ModelError, match="invalid bundle id"):
            bundles.check_bundle_id(bad)
    assert bundles.new_bundle_id("fmnist").startswith("fmnist-2")


def test_active_bundle_management(tmp_path: Path) -> None:
    assert bundles.active_bundle_id(tmp_path) is None
    with pytest.raises(ModelError, match="no active model bundle"):
        bundles.load_active(tmp_path)
    small_bundle("one-1").install(tmp_path)
    small_bundle("two-1").install(tmp_path)
    with pytest.raises(ModelError, match="no bundle"):
        bundles.set_active(tmp_path, "three-1")
    bundles.set_active(tmp_path, "two-1")
    assert (tmp_path / "ACTIVE").read_text() == "two-1\n"
    assert bundles.load_active(tmp_path).id == "two-1"
    broken = tmp_path / "bundles" / "broken"
    broken.mkdir()
    listing = {m["id"]: m for m in bundles.list_bundles(tmp_path)}
    assert listing["two-1"]["active"] and not listing["one-1"]["active"]
    assert "error" in listing["broken"]
    # A corrupt bundle cannot be made active.
    (tmp_path / "bundles" / "one-1" / "weights.npz").write_bytes(b"x")
    with pytest.raises(ModelError, match="sha256"):
        bundles.set_active(tmp_path, "one-1")
    assert bundles.active_bundle_id(tmp_path) == "two-1"


def test_bundle_refs_and_names(tmp_path: Path) -> None:
    path = small_bundle("one-1").install(tmp_path)
    small_bundle("two-1").install(tmp_path)
    bundles.set_active(tmp_path, "two-1")
    assert bundles.load_bundle_ref(tmp_path, "one-1").id == "one-1"  # by id
    assert bundles.load_bundle_ref(tmp_path, str(path)).id == "one-1"  # by directory
    assert bundles.load_bundle_ref(tmp_path, "active").id == "two-1"
    with pytest.raises(ModelError, match="no bundle"):
        bundles.load_bundle_ref(tmp_path, "three-1")
    assert bundles.safe_bundle_name("fashion-mnist/train-cnn+hog") == "fashion-mnist-train-cnn+hog"
    assert bundles.safe_bundle_name("../") == "model"
    bundles.check_bundle_id(bundles.new_bundle_id(bundles.safe_bundle_name("a b/c:d" * 20)))


def test_calibrated_sigmoid_is_float32_and_saturates() -> None:
    z = np.array([-1e30, -3.0, 0.0, 2.0, 1e30], np.float32)
    p = bundles.calibrated_sigmoid(z, np.float32(1.5), np.float32(-0.5))
    assert p.dtype == np.float32
    expected = 1 / (1 + np.exp(-(1.5 * z[1:4].astype(np.float64) - 0.5)))
    np.testing.assert_allclose(p[1:4], expected, atol=1e-6)
    assert p[0] == 0.0 and p[-1] == 1.0  # no overflow at the extremes


def test_save_replaces_a_bundle_whole(tmp_path: Path) -> None:
    small_bundle("same-1", seed=1).install(tmp_path)
    b2 = small_bundle("same-1", seed=2)
    b2.install(tmp_path)
    assert np.array_equal(ModelBundle.load(tmp_path / "bundles" / "same-1").W, b2.W)
    assert [p.name for p in (tmp_path / "bundles").iterdir()] == ["same-1"]


# --- the default ImageNet bundle --------------------------------------------------------


@pytest.fixture(scope="module")
def default_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models_dir = tmp_path_factory.mktemp("models")
    assert build_default_bundle(models_dir, onnx_model_path(MODEL_DIRS)) == default_bundle_id()
    return models_dir


def test_default_bundle_layout(default_models: Path) -> None:
    b = bundles.load_active(default_models)
    assert b.id == default_bundle_id()
    assert b.feature_set == feature_set_spec("cnn")
    assert b.k == 1000 and b.W.shape == (1000, 1280)
    assert [(h.group, h.activation, h.start, h.stop) for h in b.heads] == [
        ("imagenet", "softmax", 0, 1000)
    ]
    assert b.detectors == ["face", "monochrome"]
    assert b.provenance["weights_license"] == "Apache-2.0"
    assert len(b.concepts) >= 50 and b.concept_matrix.shape == (len(b.concepts), 1000)
    assert {"dog", "cat", "animal", "vehicle"} <= {c.tag for c in b.concepts}
    assert "alsatian" in b.class_words["German shepherd"]
    assert np.all(b.thresholds == np.float32(0.15))
    with zipfile.ZipFile(b.path / "weights.npz") as z:  # plain arrays, nothing pickled
        assert all(n.endswith(".npy") for n in z.namelist())


def test_default_bundle_is_idempotent(default_models: Path) -> None:
    path = default_models / "bundles" / default_bundle_id()
    before = (path / "manifest.json").read_text()
    mtime = (path / "weights.npz").stat().st_mtime_ns
    assert build_default_bundle(default_models, onnx_model_path(MODEL_DIRS)) == default_bundle_id()
    assert (path / "manifest.json").read_text() == before
    assert (path / "weights.npz").stat().st_mtime_ns == mtime


def test_default_bundle_scores_equal_onnx_softmax(default_models: Path) -> None:
    b = bundles.load_active(default_models)
    cnn = get_feature_set("cnn", FeatureOptions(MODEL_DIRS, threads=1))
    photos = [
        np.ascontiguousarray(getattr(skimage.data, n)()[:, :, ::-1])
        for n in ("chelsea", "coffee", "astronaut")
    ]
    emb, logits = cnn.run(photos)
    e = np.exp(logits - logits.max(1, keepdims=True))
    expected = e / e.sum(1, keepdims=True)
    assert np.allclose(b.score(emb), expected, atol=1e-5)
    assert np.allclose(b.decision(emb), logits, atol=1e-3)
    assert b.tags_for(b.score(emb)[1])[0][0] == "espresso"


def test_imagenet_names_are_readable_and_unique() -> None:
    names = imagenet_class_names()
    assert len(names) == 1000
    assert len({n.lower() for n in names}) == 1000
    assert names[281] == "tabby" and names[282] == "tiger cat" and names[967] == "espresso"
    assert {"crane (bird)", "crane (machine)", "tank suit", "maillot"} <= set(names)
    assert {"Cardigan Welsh corgi", "cardigan"} <= set(names)
    assert not any("_" in n for n in names)


def test_cli_lists_and_shows_bundles(default_models: Path) -> None:
    env = {**os.environ, "AUTOTAG_MODELS_DIR": str(default_models)}
    cmd = "from autotag.cli import main; main()"
    out = subprocess.run(
        [sys.executable, "-c", cmd, "models", "list", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = json.loads(out.stdout)
    assert rows[0]["id"] == default_bundle_id() and rows[0]["active"]
    assert rows[0]["classes"] == 1000 and rows[0]["feature_set"] == "cnn@1"
    shown = subprocess.run(
        [sys.executable, "-c", cmd, "models", "show", default_bundle_id()],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "head imagenet: softmax, 1000 tags" in shown.stdout
    bad = subprocess.run(
        [sys.executable, "-c", cmd, "models", "activate", "missing-1"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("autotag: no bundle 'missing-1'")
    assert len(bad.stderr.strip().splitlines()) == 1
