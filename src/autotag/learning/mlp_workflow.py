"""Labeled photos → an MLP head on cached feature vectors → a bundle: ``autotag train-mlp``.

The photos are featurized through the feature cache exactly as for ``autotag train`` (so a
feature set computed once serves the linear and the MLP heads alike). The hidden layer, with
the standardization folded in, is written as a small ONNX graph (Gemm, Relu) and becomes
feature set ``net:<bundle id>`` chained on the base feature set (``base`` in the manifest's
feature set); the output layer is the bundle's ``W, b`` with one softmax head. So
``autotag models activate`` and ``autotag evaluate`` take it like the networks of
``train-cnn``. Before installing, the ONNX graph is checked against the NumPy head on the
held-out photos (or the training photos if none are given).

Softmax needs exclusive classes: every labeled photo must have exactly one TRUE class.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotag.checksums import file_sha256
from autotag.errors import AutotagError
from autotag.learning.datasets import LabelSet, dataset_name
from autotag.learning.evaluation import align_classes, evaluate_scores
from autotag.learning.labeled_features import LabeledFeatures, load_labeled_features
from autotag.learning.mlp_head import MLPHead
from autotag.learning.network_export import run_onnx, write_onnx
from autotag.learning.networks import RELU, Layer
from autotag.learning.progress import Progress, note
from autotag.vision import bundle as bundles
from autotag.vision.bundle import HeadGroup, ModelBundle
from autotag.vision.decode import DecodeLimits
from autotag.vision.feature_sets import FeatureOptions, get_feature_set
from autotag.vision.network_features import NETWORK_FILE, network_name

MAX_ONNX_DIFF = 1e-5  # probabilities: what the bolt turns into tags


@dataclass(frozen=True)
class MLPRequest:
    """What ``autotag train-mlp`` was asked for; ``recipe`` overrides ``MLPHead`` defaults."""

    labels: LabelSet
    images_dir: Path
    features: str = "cnn+hog"
    recipe: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    activate: bool = False
    allow_missing: bool = False
    test: tuple[Path, LabelSet] | None = None


def exclusive_targets(labels: LabelSet) -> np.ndarray:
    """The class index of every photo; an error unless each has exactly one TRUE class."""
    npos = (labels.Y == 1).sum(axis=1)
    bad = np.flatnonzero(npos != 1)
    if len(bad):
        i = int(bad[0])
        raise AutotagError(
            f"a softmax head needs exactly one TRUE class per photo: {labels.photo_ids[i]} "
            f"has {int(npos[i])} ({len(bad)} such photos)"
        )
    return (labels.Y == 1).argmax(axis=1).astype(np.int64)


def train_mlp_bundle(
    request: MLPRequest,
    models_dir: Path,
    cache_root: Path,
    *,
    limits: DecodeLimits,
    feature_options: FeatureOptions,
    work_dir: Path,
    progress: Progress | None = None,
) -> tuple[ModelBundle, dict[str, Any]]:
    """Fit, export, check and install; return the bundle and its test report (or None)."""
    fs = get_feature_set(request.features, feature_options)

    def load(images: Path, labels: LabelSet) -> LabeledFeatures:
        return load_labeled_features(
            labels, images, fs, cache_root, limits=limits,
            allow_missing=request.allow_missing, progress=progress,
        )  # fmt: skip

    data = load(request.images_dir, request.labels)
    y = exclusive_targets(data.labels)
    head = MLPHead(**request.recipe).fit(data.X, y, data.labels.classes, progress=progress)
    note(
        progress,
        f"mlp-head: validation top-1 {head.validation_accuracy_:.4f} "
        f"(best epoch {head.best_epoch_} of {len(head.history_)})",
    )
    test = load(*request.test) if request.test is not None else None

    name = bundles.safe_bundle_name(request.name or f"{dataset_name(data.labels)}-mlp")
    bundle_id = bundles.new_bundle_id(name)
    n = 1
    while bundles.bundle_dir(models_dir, bundle_id).exists():
        n += 1
        bundle_id = f"{bundles.new_bundle_id(name)}-{n}"
    w1, b1 = head.hidden_layer()
    k = len(head.classes_)
    onnx_path = write_onnx(
        (Layer("dense", head.hidden), RELU, Layer("dense", k)),
        {"0.w": w1, "0.b": b1, "2.w": head.W2_, "2.b": head.b2_},
        (data.X.shape[1],),
        Path(work_dir) / f"{bundle_id}.onnx",
        name=bundle_id,
    )
    bundle = ModelBundle.create(
        id=bundle_id,
        name=name,
        feature_set={
            "name": network_name(bundle_id),
            "version": file_sha256(onnx_path)[:12],
            "dim": int(head.hidden),
            "base": fs.spec(),
            "arch": "mlp-head",
        },
        classes=list(head.classes_),
        heads=[HeadGroup(name, "softmax", 0, k, f"autotag train-mlp ({bundle_id})")],
        W=head.W2_.T,
        b=-head.b2_,  # bundles score X Wᵀ − b
        dataset={
            "name": dataset_name(data.labels),
            "labels": data.labels.source,
            "images": str(request.images_dir),
            "photos": data.labels.n_photos,
            "validation_photos": int(round(data.labels.n_photos * head.val_fraction)),
            "feature_set": fs.key,
            **{k_: v for k_, v in data.info.items() if k_ != "features"},
        },
        provenance={
            "trained_by": "autotag train-mlp",
            "trainer": "autotag.learning.mlp_head.MLPHead (NumPy, AdamW, cosine decay)",
            "recipe": head.recipe(),
            "python": platform.python_version(),
            "onnx_sha256": file_sha256(onnx_path),
        },
    )
    check = test if test is not None else data
    diff = _onnx_vs_head(bundle, head, onnx_path, check.X)
    report = None
    if test is not None:
        sub, cols, _ = align_classes(bundle.classes, test.labels)
        emb, _ = run_onnx(onnx_path, test.X)
        report = evaluate_scores(bundle.score(emb)[:, cols], sub, bundle.thresholds[cols])
        report["data"] = {
            "images": str(request.test[0]) if request.test else None,
            "labels": test.labels.source,
            "photos": test.labels.n_photos,
        }
    bundle.metrics = {
        **({"test_top1_accuracy": report["summary"]["top1_accuracy"]} if report else {}),
        "validation_top1": round(head.validation_accuracy_, 5),
        "best_epoch": head.best_epoch_,
        "epochs_run": len(head.history_),
        "history": head.history_,
        "onnx_vs_head_max_abs_diff": diff,
        **({"test": report["summary"]} if report else {}),
        "features": data.info["features"],
    }
    bundle.install(models_dir, {NETWORK_FILE: onnx_path})
    onnx_path.unlink()
    if request.activate:
        bundles.set_active(models_dir, bundle.id)
    return bundle, report or {}


def _onnx_vs_head(
    bundle: ModelBundle, head: MLPHead, onnx_path: Path, X: np.ndarray
) -> dict[str, float]:
    """The bolt's arithmetic (ONNX hidden layer, then the bundle's softmax) against the head's
    own ``predict_proba``; refuse to install past ``MAX_ONNX_DIFF`` on the probabilities."""
    emb, logits = run_onnx(onnx_path, np.asarray(X, np.float32))
    probs = bundle.score(emb)
    diff = {
        "probabilities": float(np.abs(probs - head.predict_proba(X)).max()),
        "embedding": float(np.abs(emb - head.transform(X)).max()),
        "logits": float(np.abs(logits - (head.transform(X) @ head.W2_ + head.b2_)).max()),
    }
    if diff["probabilities"] > MAX_ONNX_DIFF:
        raise AutotagError(
            f"the exported head's probabilities differ from the trained head's by "
            f"{diff['probabilities']:.2g} (> {MAX_ONNX_DIFF:g})"
        )
    return diff
