"""Evaluation numbers must be exactly sklearn.metrics' on the same predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from autotag.learning.datasets import LabelSet
from autotag.learning.evaluation import cross_validate, evaluate_scores, write_report
from autotag.learning.head import LinearHead


def _exclusive(n: int = 400, k: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    Y = np.zeros((n, k), np.int8)
    Y[np.arange(n), y] = 1
    scores = rng.random((n, k)) * 0.7
    scores[np.arange(n), y] += rng.random(n) * 0.5  # informative but imperfect
    labels = LabelSet([f"c{j}" for j in range(k)], [str(i) for i in range(n)], Y)
    return labels, y, scores, rng.uniform(0.3, 0.7, k)


def test_metrics_equal_sklearn_exclusive() -> None:
    labels, y, scores, thr = _exclusive()
    rep = evaluate_scores(scores, labels, thr, curves=True)
    pred = scores >= thr
    for j, c in enumerate(labels.classes):
        yt = labels.Y[:, j] == 1
        pc = rep["per_class"][c]
        assert pc["precision"] == pytest.approx(precision_score(yt, pred[:, j]), abs=1e-6)
        assert pc["recall"] == pytest.approx(recall_score(yt, pred[:, j]), abs=1e-6)
        assert pc["f1"] == pytest.approx(f1_score(yt, pred[:, j]), abs=1e-6)
        assert pc["ap"] == pytest.approx(average_precision_score(yt, scores[:, j]), abs=1e-6)
    s = rep["summary"]
    Yt = labels.Y == 1
    assert s["map"] == pytest.approx(average_precision_score(Yt, scores, average="macro"), abs=1e-6)
    assert s["macro_f1"] == pytest.approx(f1_score(Yt, pred, average="macro"), abs=1e-6)
    top = scores.argmax(axis=1)
    assert s["top1_accuracy"] == pytest.approx(accuracy_score(y, top), abs=1e-6)
    assert s["top1_macro_f1"] == pytest.approx(f1_score(y, top, average="macro"), abs=1e-6)
    np.testing.assert_array_equal(rep["confusion"]["matrix"], confusion_matrix(y, top))


def test_unlabeled_pairs_are_left_out() -> None:
    labels, _, scores, thr = _exclusive(n=200, k=3, seed=1)
    Y = labels.Y.copy()
    Y[:50, 0] = -1  # no label for class c0 on the first 50 photos
    partial = LabelSet(labels.classes, labels.photo_ids, Y)
    rep = evaluate_scores(scores, partial, thr)
    m = Y[:, 0] >= 0
    yt = Y[m, 0] == 1
    assert rep["per_class"]["c0"]["n_pos"] + rep["per_class"]["c0"]["n_neg"] == 150
    assert rep["per_class"]["c0"]["ap"] == pytest.approx(
        average_precision_score(yt, scores[m, 0]), abs=1e-6
    )
    assert rep["per_class"]["c0"]["f1"] == pytest.approx(
        f1_score(yt, scores[m, 0] >= thr[0]), abs=1e-6
    )


def test_hierarchical_top1_uses_top_level_classes() -> None:
    classes = ["animals", "animals/cats", "food"]
    Y = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0]], np.int8)
    scores = np.array([[0.9, 0.8, 0.1], [0.2, 0.1, 0.7], [0.1, 0.0, 0.8], [0.5, 0.1, 0.4]])
    rep = evaluate_scores(scores, LabelSet(classes, list("abcd"), Y), np.full(3, 0.5))
    # photo d has no top-level class: excluded; b is wrong; a, c right
    assert rep["summary"]["top1_photos"] == 3
    assert rep["summary"]["top1_accuracy"] == pytest.approx(2 / 3, abs=1e-6)
    assert rep["confusion"]["classes"] == ["animals", "food"]


def test_write_report_files(tmp_path: Path) -> None:
    labels, _, scores, thr = _exclusive(n=120, k=4, seed=2)
    rep = evaluate_scores(scores, labels, thr, curves=True)
    files = write_report(rep, tmp_path / "out")
    assert set(files) == {"report", "pr_curves", "confusion"}
    for p in files.values():
        assert p.stat().st_size > 1000
    assert json.loads(files["report"].read_text())["summary"]["map"] == rep["summary"]["map"]


def test_cross_validation_keeps_test_folds_out() -> None:
    rng = np.random.default_rng(3)
    n, d, k = 300, 16, 3
    y = rng.integers(0, k, n)
    centers = rng.normal(size=(k, d)) * 2
    X = (rng.normal(size=(n, d)) + centers[y]).astype(np.float32)
    Y = np.zeros((n, k), np.int8)
    Y[np.arange(n), y] = 1
    labels = LabelSet(["a", "b", "c"], [str(i) for i in range(n)], Y)
    rep = cross_validate(X, labels, LinearHead(), folds=3)
    assert rep["cv"]["stratified"] is True
    assert len(rep["cv"]["top1_accuracy"]["folds"]) == 3
    assert rep["cv"]["top1_accuracy"]["mean"] > 0.9  # well separated blobs
    assert rep["summary"]["photos"] == n
    assert all(f["photos"] == 100 for f in rep["folds"])
