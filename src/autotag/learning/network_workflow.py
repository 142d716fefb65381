"""Fashion-MNIST → a trained network → a bundle that tags like any other.

The network trains in worker processes (``network_training``); its ONNX graph up to the
penultimate layer becomes feature set ``net:<bundle id>`` (shipped inside the bundle) and its
last dense layer the bundle's softmax head, so ``autotag models activate`` switches the
running topology to it and ``autotag evaluate`` measures it unchanged. Before installing,
the bundle's scores are checked against the network's own softmax on the test images.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autotag.checksums import file_sha256
from autotag.errors import AutotagError
from autotag.learning.datasets import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, fashion_mnist_arrays
from autotag.learning.network_data import softmax, to_input
from autotag.learning.network_export import run_onnx
from autotag.learning.network_training import (
    ONNX_FILE,
    PARAMS,
    TEST_LOGITS,
    NetworkConfig,
    TrainingSchedule,
    run,
)
from autotag.learning.networks import layers_of
from autotag.vision import bundle as bundles
from autotag.vision.bundle import HeadGroup, ModelBundle
from autotag.vision.network_features import NETWORK_FILE, network_name

MAX_PROBABILITY_DIFF = 1e-5  # tag scores: bundle (ONNX) vs the framework, every test image


@dataclass(frozen=True, kw_only=True)
class NetworkRequest(TrainingSchedule):
    """What to train (``arch`` on the Fashion-MNIST files in ``source``), where its work goes,
    and what becomes of the bundle."""

    arch: str
    work_dir: Path
    source: Path = FASHION_MNIST_DIR
    limit: int | None = None  # first N training images (tests, quick looks)
    test_limit: int | None = None
    name: str | None = None
    activate: bool = False


def train_network(request: NetworkRequest, models_dir: Path) -> tuple[ModelBundle, dict[str, Any]]:
    """Train, export, check and install; return the bundle and the training result."""
    if request.procs < 1 or request.batch_size % request.procs:
        raise AutotagError(
            f"--batch-size {request.batch_size} must be a multiple of --procs {request.procs}"
        )
    work = Path(request.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for split, limit in (("train", request.limit), ("test", request.test_limit)):
        x, y = fashion_mnist_arrays(split, request.source, limit)
        files[f"x_{split}"], files[f"y_{split}"] = work / f"x_{split}.npy", work / f"y_{split}.npy"
        np.save(files[f"x_{split}"], x)
        np.save(files[f"y_{split}"], y)
    config = NetworkConfig(
        arch=request.arch,
        x_train=str(files["x_train"]),
        y_train=str(files["y_train"]),
        x_test=str(files["x_test"]),
        y_test=str(files["y_test"]),
        classes=list(FASHION_MNIST_CLASSES),
        work_dir=str(work),
        **request.schedule(),
    )
    result = run(config)
    bundle = _bundle(request, config, result, models_dir)
    bundle.install(models_dir, {NETWORK_FILE: work / ONNX_FILE})
    if request.activate:
        bundles.set_active(models_dir, bundle.id)
    return bundle, result


def _bundle(
    request: NetworkRequest, config: NetworkConfig, result: dict[str, Any], models_dir: Path
) -> ModelBundle:
    import jax

    work = Path(config.work_dir)
    layers = layers_of(config.arch, len(config.classes))
    last = len(layers) - 1
    with np.load(work / PARAMS, allow_pickle=False) as z:
        w, b = z[f"{last}.w"], z[f"{last}.b"]
    name = bundles.safe_bundle_name(request.name or f"fashion-mnist-{config.arch}")
    bundle_id = bundles.new_bundle_id(name)
    n = 1
    while bundles.bundle_dir(models_dir, bundle_id).exists():
        n += 1
        bundle_id = f"{bundles.new_bundle_id(name)}-{n}"
    feature_set = {
        "name": network_name(bundle_id),
        "version": file_sha256(work / ONNX_FILE)[:12],
        "dim": int(w.shape[0]),
        "input": list(config.input_shape),
        "arch": config.arch,
    }
    bundle = ModelBundle.create(
        id=bundle_id,
        name=name,
        feature_set=feature_set,
        classes=list(config.classes),
        heads=[
            HeadGroup(name, "softmax", 0, len(config.classes), f"autotag train-cnn ({bundle_id})")
        ],
        W=w.T,
        b=-b,  # bundles score X Wᵀ − b
        dataset={
            "name": "fashion-mnist",
            "source": str(request.source),
            "train_images": result["n_train"] + result["n_validation"],
            "validation_images": result["n_validation"],
            "test_images": result["n_test"],
        },
        provenance={
            "trained_by": "autotag train-cnn",
            "framework": f"jax {jax.__version__} (jaxlib), optax",
            "python": platform.python_version(),
            "network": config.arch,
            "hyper_parameters": result["hyper_parameters"],
            "procs": config.procs,
            "onnx_sha256": file_sha256(work / ONNX_FILE),
        },
    )
    # What the bolt computes (ONNX embedding, then the bundle's softmax head) must equal the
    # framework's own probabilities on every test image.
    x_test = to_input(np.load(config.x_test))
    emb, _ = run_onnx(work / ONNX_FILE, x_test)
    soft = softmax(np.load(work / TEST_LOGITS))
    diff = float(np.abs(bundle.score(emb) - soft).max()) if len(emb) else 0.0
    if diff > MAX_PROBABILITY_DIFF:
        raise AutotagError(
            f"bundle scores differ from the network's softmax by {diff:.2g} "
            f"(> {MAX_PROBABILITY_DIFF:g})"
        )
    y_test = np.load(config.y_test)
    bundle.metrics = {
        "test_top1": result["test_accuracy"],
        "validation_top1": result["validation_accuracy"],
        "test_images": result["n_test"],
        "best_epoch": result["best_epoch"],
        "epochs_run": result["epochs_run"],
        "seconds_per_epoch": result["seconds_per_epoch"],
        "procs": config.procs,
        "history": result["history"],
        "onnx_max_abs_diff": result["onnx_max_abs_diff"],
        "onnx_allclose_1e-5": result["onnx_allclose_1e-5"],
        "float64_max_abs_diff": result["float64_max_abs_diff"],
        "bundle_vs_network_max_abs_diff": diff,
        "bundle_test_top1": float((bundle.score(emb).argmax(1) == y_test).mean())
        if len(emb)
        else None,
    }
    return bundle
