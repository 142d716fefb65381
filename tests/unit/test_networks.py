"""Networks: the ONNX graph written from the weights computes what JAX computes, the
validation split is stratified, checkpoints round-trip, a shipped graph is checksummed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autotag.errors import ModelError
from autotag.learning.network_data import SHIFT, augment, split_validation, to_input
from autotag.learning.network_export import run_onnx, write_onnx
from autotag.learning.network_training import NetworkConfig, _local_batch
from autotag.learning.networks import (
    ARCHITECTURES,
    batchnorm_statistics,
    forward,
    forward_float64,
    init_params,
    layers_of,
    trainable,
)
from autotag.vision.bundle import HeadGroup, ModelBundle
from autotag.vision.network_features import NETWORK_FILE, NetworkFeatures, to_network_input


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_onnx_graph_equals_jax(arch: str, tmp_path: Path) -> None:
    layers = layers_of(arch, 10)
    params = init_params(layers, (1, 28, 28), seed=3)
    x = np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32)
    emb, logits = (np.asarray(a) for a in forward(layers, params, x))
    path = write_onnx(layers, params, (1, 28, 28), tmp_path / "n.onnx", name=arch)
    o_emb, o_logits = run_onnx(path, x, batch=20)
    assert o_logits.shape == (64, 10) and o_emb.shape == emb.shape
    assert np.abs(o_logits - logits).max() <= 1e-5
    assert np.abs(o_emb - emb).max() <= 1e-5


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_float64_reference_agrees_with_jax(arch: str) -> None:
    layers = layers_of(arch, 10)
    params = init_params(layers, (1, 28, 28), seed=5)
    x = np.random.default_rng(2).random((16, 1, 28, 28), dtype=np.float32)
    emb, logits = (np.asarray(a, np.float64) for a in forward(layers, params, x))
    emb64, logits64 = forward_float64(layers, params, x)
    assert emb64.shape == emb.shape and logits64.dtype == np.float64
    assert np.abs(logits64 - logits).max() <= 1e-4 * max(1.0, np.abs(logits64).max())
    assert np.abs(emb64 - emb).max() <= 1e-4 * max(1.0, np.abs(emb64).max())


def test_augment_flips_and_shifts_with_zero_fill() -> None:
    img = np.arange(1, 1 + 4 * 5, dtype=np.uint8).reshape(1, 4, 5)
    same = augment(img, np.array([False]), np.array([[0, 0]]))
    assert np.array_equal(same, img)
    flipped = augment(img, np.array([True]), np.array([[0, 0]]))
    assert np.array_equal(flipped[0], img[0, :, ::-1])
    down_left = augment(img, np.array([False]), np.array([[1, -2]]))
    assert (down_left[0, 0] == 0).all() and (down_left[0, :, -2:] == 0).all()
    assert np.array_equal(down_left[0, 1:, :3], img[0, :3, 2:])
    big = augment(np.full((1, 6, 6), 9, np.uint8), np.array([True]), np.array([[SHIFT, SHIFT]]))
    assert big[0, SHIFT:, SHIFT:].min() == 9 and big[0, :SHIFT].max() == 0


@pytest.mark.parametrize("aug", [False, True])
def test_workers_together_see_the_single_process_batch(aug: bool) -> None:
    x = np.random.default_rng(0).integers(0, 256, (64, 8, 8), dtype=np.uint8)
    order = np.random.default_rng(1).permutation(64)
    base = dict(x_train="", y_train="", x_test="", y_test="", classes=[], work_dir="", augment=aug)
    one = NetworkConfig(arch="tiny", procs=1, **base)
    two = NetworkConfig(arch="tiny", procs=2, **base)
    rows1, img1 = _local_batch(one, x, order, 3, 1, 0, 16)
    parts = [_local_batch(two, x, order, 3, 1, r, 8) for r in (0, 1)]
    rows2 = np.concatenate([p[0] for p in parts])
    img2 = np.concatenate([p[1] for p in parts])
    assert sorted(rows1) == sorted(rows2) == sorted(order[16:32])
    by1, by2 = np.argsort(rows1), np.argsort(rows2)
    assert np.array_equal(img1[by1], img2[by2])
    assert np.array_equal(img1[by1], x[np.sort(rows1)]) is (not aug)


def test_dropout_only_with_a_key() -> None:
    import jax

    layers = layers_of("small-cnn", 10)
    params = init_params(layers, (1, 28, 28), seed=0)
    x = np.ones((4, 1, 28, 28), np.float32)
    a = np.asarray(forward(layers, params, x)[1])
    b = np.asarray(forward(layers, params, x)[1])
    c = np.asarray(forward(layers, params, x, train_key=jax.random.key(1))[1])
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_validation_split_is_stratified_and_disjoint() -> None:
    y = np.repeat(np.arange(10), 100)
    train, val = split_validation(y, 0.1, seed=0)
    assert len(set(train) & set(val)) == 0 and len(train) + len(val) == 1000
    assert np.bincount(y[val]).tolist() == [10] * 10
    again = split_validation(y, 0.1, seed=0)[1]
    assert np.array_equal(val, again)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    import optax

    from autotag.learning import network_training as nt

    layers = layers_of("tiny", 10)
    params = init_params(layers, (1, 28, 28), seed=0)
    opt = optax.adamw(1e-3)
    state = opt.init(params)
    grads = {k: np.ones_like(v) for k, v in params.items()}
    _, state = opt.update(grads, state, params)
    cfg = NetworkConfig(
        arch="tiny", x_train="", y_train="", x_test="", y_test="", classes=[], work_dir="",
        epochs=3,
    )  # fmt: skip
    history = [{"epoch": 1, "seconds": 1.0, "loss": 2.0, "val_accuracy": 0.5}]
    best = {"val_accuracy": 0.5, "epoch": 0}
    path = tmp_path / nt.CHECKPOINT
    nt._save_checkpoint(path, cfg, params, state, params, 1, history, best)
    fresh = opt.init(init_params(layers, (1, 28, 28), seed=9))
    p2, s2, best_p, epoch, h2, b2 = nt._load_checkpoint(path, cfg, params, fresh)
    assert epoch == 1 and h2 == history and b2 == best
    assert all(np.array_equal(params[k], p2[k]) for k in params)
    import jax

    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(s2), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    other = NetworkConfig(**{**cfg.__dict__, "arch": "lenet5"})
    with pytest.raises(Exception, match="arch"):
        nt._load_checkpoint(path, other, params, fresh)
    with np.load(path, allow_pickle=False) as z:  # plain arrays, no pickled objects
        assert json.loads(bytes(z["meta"]).decode())["arch"] == "tiny"


def test_network_input_is_grey_resized_to_the_network() -> None:
    bgr = np.zeros((56, 56, 3), np.uint8)
    bgr[:, :28] = (255, 255, 255)
    x = to_network_input([bgr, np.full((28, 28), 51, np.uint8)], 28, 28)
    assert x.shape == (2, 1, 28, 28) and x.dtype == np.float32
    assert x[0, 0, :, :14].min() == 1.0 and x[0, 0, :, 14:].max() == 0.0
    assert np.allclose(x[1], 0.2)
    assert np.array_equal(to_input(np.full((1, 28, 28), 51, np.uint8)), x[1:])


def _network_bundle(models: Path, tmp_path: Path) -> ModelBundle:
    layers = layers_of("tiny", 3)
    params = init_params(layers, (1, 28, 28), seed=0)
    onnx_path = write_onnx(layers, params, (1, 28, 28), tmp_path / "n.onnx", name="tiny")
    w, b = params[f"{len(layers) - 1}.w"], params[f"{len(layers) - 1}.b"]
    spec = {"name": "net:tiny-1", "version": "x", "dim": 16, "input": [1, 28, 28]}
    bundle = ModelBundle.create(
        id="tiny-1", name="tiny", feature_set=spec, classes=["a", "b", "c"],
        heads=[HeadGroup("tiny", "softmax", 0, 3)], W=w.T, b=-b,
    )  # fmt: skip
    bundle.install(models, {NETWORK_FILE: onnx_path})
    return bundle


def test_network_feature_set_scores_like_the_network(tmp_path: Path) -> None:
    models = tmp_path / "models"
    bundle = _network_bundle(models, tmp_path)
    fs = NetworkFeatures("net:tiny-1", [tmp_path / "elsewhere", models])
    img = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    emb, logits = fs.run(list(img))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert np.abs(ModelBundle.load(bundle.path).score(emb) - p).max() <= 1e-5
    assert fs.extract([]).shape == (0, 16)


def test_altered_network_is_refused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    bundle = _network_bundle(models, tmp_path)
    with open(bundle.path / NETWORK_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="sha256"):
        NetworkFeatures("net:tiny-1", [models])
    with pytest.raises(ModelError, match="sha256"):
        ModelBundle.load(bundle.path)
    with pytest.raises(ModelError, match="no bundle"):
        NetworkFeatures("net:other", [models])


def test_batchnorm_statistics_are_those_of_the_layer_input(tmp_path: Path) -> None:
    """Measured statistics equal NumPy's mean and variance of each batch-norm layer's input,
    and with them JAX, ONNX and the float64 reference agree (the network's real inference)."""
    layers = layers_of("small-cnn-bn", 10)
    params = init_params(layers, (1, 28, 28), seed=4)
    params = {k: v * 3 if k.endswith(".w") else v + 0.1 for k, v in params.items()}
    x = np.random.default_rng(5).random((300, 1, 28, 28), dtype=np.float32)
    stats = batchnorm_statistics(layers, params, x, batch=128)
    bn = [i for i, layer in enumerate(layers) if layer.kind == "batchnorm"]
    assert sorted(stats) == sorted(f"{i}.{k}" for i in bn for k in ("mean", "var"))
    full = params | stats
    for i in bn:
        h = np.asarray(forward(layers, full, x, stop=i)[0], np.float64)
        assert np.allclose(stats[f"{i}.mean"], h.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
        assert np.allclose(stats[f"{i}.var"], h.var(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
        assert np.abs(stats[f"{i}.mean"]).max() > 0.1  # not the initial 0 / 1
    emb, logits = (np.asarray(a) for a in forward(layers, full, x))
    path = write_onnx(layers, full, (1, 28, 28), tmp_path / "bn.onnx", name="bn")
    o_emb, o_logits = run_onnx(path, x, batch=100)
    scale = max(1.0, float(np.abs(logits).max()))
    assert np.abs(o_logits - logits).max() <= 1e-5 * scale
    assert np.abs(o_emb - emb).max() <= 1e-5 * max(1.0, float(np.abs(emb).max()))
    _, logits64 = forward_float64(layers, full, x)
    assert np.abs(logits64 - logits).max() <= 1e-5 * scale


def test_batchnorm_trains_on_the_batch_statistics() -> None:
    """With a key (training), each channel after batch norm has mean 0 and variance 1 over
    the batch, whatever the measured statistics say; without one, those are used."""
    import jax

    layers = layers_of("small-cnn-bn", 10)
    params = init_params(layers, (1, 28, 28), seed=1)
    params = {k: v + 5.0 if k.endswith(".b") else v for k, v in params.items()}
    first = next(i for i, layer in enumerate(layers) if layer.kind == "batchnorm")
    x = np.random.default_rng(2).random((32, 1, 28, 28), dtype=np.float32)
    h = np.asarray(forward(layers, params, x, train_key=jax.random.key(0), stop=first + 1)[0])
    assert np.allclose(h.mean(axis=(0, 2, 3)), 5.0, atol=1e-4)  # shift 5, scale 1
    assert np.allclose(h.var(axis=(0, 2, 3)), 1.0, atol=1e-2)
    h_eval = np.asarray(forward(layers, params, x, stop=first + 1)[0])
    assert not np.allclose(h_eval.mean(axis=(0, 2, 3)), 5.0, atol=1e-2)
    assert set(trainable(params)) == {k for k in params if not k.endswith((".mean", ".var"))}


def test_checkpoint_keeps_batchnorm_statistics(tmp_path: Path) -> None:
    """Resume restores the measured statistics with the weights; the optimizer state holds
    only trained parameters."""
    import optax

    from autotag.learning import network_training as nt

    layers = layers_of("small-cnn-bn", 10)
    params = init_params(layers, (1, 28, 28), seed=0)
    x = np.random.default_rng(0).random((50, 1, 28, 28), dtype=np.float32)
    params |= batchnorm_statistics(layers, params, x)
    opt = optax.adamw(1e-3)
    state = opt.init(trainable(params))
    cfg = NetworkConfig(
        arch="small-cnn-bn", x_train="", y_train="", x_test="", y_test="", classes=[],
        work_dir="", epochs=3,
    )  # fmt: skip
    path = tmp_path / nt.CHECKPOINT
    best = {"val_accuracy": 0.5, "epoch": 0}
    nt._save_checkpoint(path, cfg, params, state, params, 1, [], best)
    fresh = init_params(layers, (1, 28, 28), seed=9)
    p2, _, best_p, *_ = nt._load_checkpoint(path, cfg, fresh, opt.init(trainable(fresh)))
    for k in params:
        assert np.array_equal(p2[k], params[k]) and np.array_equal(best_p[k], params[k]), k
    assert any(k.endswith(".var") and not np.allclose(v, 1.0) for k, v in p2.items())
