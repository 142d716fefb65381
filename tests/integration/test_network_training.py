"""A network trained here (JAX, two data-parallel processes) becomes a bundle that the running
topology switches to without a resubmit; photos tagged through Storm score exactly as the
exported ONNX graph does when run directly, and `autotag evaluate` measures the bundle."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from autotag.config import Settings
from autotag.learning.datasets import FASHION_MNIST_CLASSES
from autotag.pipeline import intake
from autotag.vision.bundle import load_bundle
from tests.cli import autotag, new_intake, wait_model

pytestmark = pytest.mark.cluster


def _assert_topology_tags_match(
    s: Settings, bundle_id: str, photos: list[Path], logits_of: Callable[[Path], Any]
) -> None:
    """Each photo, uploaded to the running topology, is stored with the softmax of
    ``logits_of(photo)`` (the bundle's ONNX graph run directly: ``[logits]`` of one photo)
    within 1e-5, and its best class is among its tags."""
    time.sleep(6)  # the bolts look at models/ACTIVE every 5 s
    for photo in photos:
        (rec,) = intake.upload([str(photo)], new_intake(s), force=True)
        info = wait_model(s, rec.photo_id, bundle_id)
        (logits,) = logits_of(photo)
        p = np.exp(logits[0] - logits[0].max())
        p /= p.sum()
        stored = dict(info.tags)
        assert stored, f"{photo.name}: no tags stored"
        for tag, score in stored.items():
            direct = p[FASHION_MNIST_CLASSES.index(tag)]
            assert abs(score - direct) <= 1e-5, (photo.name, tag, score, direct)
        best = FASHION_MNIST_CLASSES[int(p.argmax())]
        assert best in stored, (photo.name, best, stored)


def test_trained_network_tags_through_the_cluster(
    autotagger: Settings, restore_default: str, tmp_path: Path
) -> None:
    s = autotagger
    args = "--model tiny --procs 2 --epochs 1 --limit 1536 --test-limit 500 --batch-size 32"
    trained = autotag(
        s, "train-cnn", *args.split(), "--lr", "0.01", "--name", "tinynet", "--activate",
        "--json", "--work-dir", str(tmp_path / "work"),
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = json.loads(trained.stdout)
    bundle_id = result["id"]
    assert result["onnx_max_abs_diff"]["logits"] <= 1e-5, result
    assert result["onnx_max_abs_diff"]["embedding"] <= 1e-5, result
    assert result["onnx_max_abs_diff"]["probabilities"] <= 1e-5, result
    assert result["onnx_allclose_1e-5"] == dict.fromkeys(
        ("embedding", "logits", "probabilities"), True
    )
    assert result["test_images"] == 500 and [h["epoch"] for h in result["history"]] == [1]
    assert result["bundle_vs_network_max_abs_diff"] <= 1e-5
    # Far above chance (10%; ±1.3% on 500 images) after one short epoch: it did train.
    assert result["test_top1"] > 0.25, result
    listed = json.loads(autotag(s, "models", "list", "--json").stdout)
    assert [b["id"] for b in listed if b.get("active")] == [bundle_id]

    bundle = load_bundle(s.models_dir, bundle_id)
    assert bundle.feature_set["name"] == f"net:{bundle_id}"
    session = ort.InferenceSession(str(bundle.path / "network.onnx"))

    prepared = autotag(s, "datasets", "prepare", "fashion-mnist", "--limit", "40", "-q",
                        "--out", str(tmp_path / "fm"))  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr
    photos = sorted((tmp_path / "fm" / "test" / "images").glob("*.png"))[:6]

    def logits_of(photo: Path) -> np.ndarray:
        grey = cv2.imread(str(photo), cv2.IMREAD_GRAYSCALE)
        return session.run(["logits"], {"image": (grey.astype(np.float32) / 255.0)[None, None]})

    _assert_topology_tags_match(s, bundle_id, photos, logits_of)

    # `autotag evaluate` measures the network's bundle like any other: its top-1 accuracy on
    # the prepared test images is the ONNX graph's own.
    test_dir = tmp_path / "fm" / "test"
    report = autotag(s, "evaluate", bundle_id, "--images", str(test_dir / "images"),
                      "--labels", str(test_dir / "labels.csv"), "--json", "-q",
                      "--out", str(tmp_path / "eval"))  # fmt: skip
    assert report.returncode == 0, report.stderr
    summary = json.loads(report.stdout)["summary"]
    images = sorted((test_dir / "images").glob("*.png"))
    x = np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in images]).astype(np.float32)
    (logits,) = session.run(["logits"], {"image": (x / 255.0)[:, None]})
    truth = json.loads((test_dir / "dataset.json").read_text())
    assert summary["top1_photos"] == len(images) == truth["n_images"] == 40
    from autotag.learning.datasets import fashion_mnist_arrays

    _, y = fashion_mnist_arrays("test", limit=40)
    assert summary["top1_accuracy"] == pytest.approx(
        float((logits.argmax(1) == y).mean()), abs=1e-4
    )


def test_trained_mlp_head_tags_through_the_cluster(
    autotagger: Settings, restore_default: str, tmp_path: Path
) -> None:
    """`autotag train-mlp` on a small slice: its bundle chains two feature sets (hog, then
    the exported hidden layer), and the topology's tags equal running that chain directly:
    hog of the decoded photo, the bundle's ONNX graph, softmax of its logits."""
    from autotag.pipeline.tag_step import decode_limits, feature_options
    from autotag.vision.decode import decode_file, network_view
    from autotag.vision.feature_sets import get_feature_set

    s = autotagger
    prepared = autotag(s, "datasets", "prepare", "fashion-mnist", "--limit", "300", "-q",
                        "--out", str(tmp_path / "fm"))  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr
    train, test = tmp_path / "fm" / "train", tmp_path / "fm" / "test"
    trained = autotag(
        s, "train-mlp", "--images", str(train / "images"), "--labels", str(train / "labels.csv"),
        "--test-images", str(test / "images"), "--test-labels", str(test / "labels.csv"),
        "--features", "hog", "--hidden", "32", "--epochs", "10", "--name", "tinymlp",
        "--activate", "--json", "-q",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = json.loads(trained.stdout)
    bundle_id = result["id"]
    listed = json.loads(autotag(s, "models", "list", "--json").stdout)
    assert [b["id"] for b in listed if b.get("active")] == [bundle_id]
    bundle = load_bundle(s.models_dir, bundle_id)
    assert bundle.feature_set["name"] == f"net:{bundle_id}"
    assert bundle.feature_set["base"]["name"] == "hog"
    assert bundle.metrics["onnx_vs_head_max_abs_diff"]["probabilities"] <= 1e-5
    # 270 training photos, 10 classes (chance 10%): it did train.
    assert bundle.metrics["test_top1_accuracy"] > 0.5, bundle.metrics

    session = ort.InferenceSession(str(bundle.path / "network.onnx"))
    hog = get_feature_set("hog", feature_options(s.tagging))
    photos = sorted((test / "images").glob("*.png"))[:6]

    def logits_of(photo: Path) -> np.ndarray:
        decoded = decode_file(photo, decode_limits(s.limits), min_side=hog.min_side)
        x = hog.extract([network_view(decoded)]).astype(np.float32)
        return session.run(["logits"], {"image": x})

    _assert_topology_tags_match(s, bundle_id, photos, logits_of)
