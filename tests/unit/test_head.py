"""The linear head estimator and its calibration maths, on plain arrays."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_score

from autotag.learning.bundle_edit import head_rows
from autotag.learning.calibration import choose_threshold, platt, sigmoid
from autotag.learning.head import RECIPE, LinearHead, class_seed, split_rows, standardizer
from autotag.vision.bundle import HeadGroup, ModelBundle, calibrated_sigmoid


def _blobs(n: int = 3000, d: int = 20, k: int = 4, sep: float = 1.0, seed: int = 0):
    """(X, Y (n, k) one-hot int8, class names, y): k Gaussian blobs, one class per photo."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centers = rng.normal(size=(k, d)) * sep
    X = (rng.normal(size=(n, d)) * 2 + 3 + centers[y]).astype(np.float32)
    Y = np.zeros((n, k), np.int8)
    Y[np.arange(n), y] = 1
    return X, Y, [f"c{j}" for j in range(k)], y


# --- calibration -----------------------------------------------------------------------------


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


# --- the estimator -------------------------------------------------------------------------


def test_fit_sets_learned_attributes() -> None:
    X, Y, names, _ = _blobs(n=800, k=3)
    head = LinearHead()
    assert not hasattr(head, "coef_")
    assert head.fit(X, Y, names) is head
    assert head.classes_ == names
    assert head.n_features_in_ == X.shape[1]
    assert head.coef_.shape == (3, X.shape[1]) and head.coef_.dtype == np.float32
    for attr in ("intercept_", "calib_a_", "calib_c_", "threshold_"):
        arr = getattr(head, attr)
        assert arr.shape == (3,) and arr.dtype == np.float32, attr
    assert np.all(head.calib_a_ > 0)  # a higher score means more likely
    assert set(head.class_metrics_) == set(names)
    assert all(m["status"] == "trained" for m in head.class_metrics_.values())
    # Unnamed columns are named by position; a 1-d y is one class.
    assert LinearHead().fit(X, Y[:, :2]).classes_ == ["0", "1"]
    assert LinearHead().fit(X, Y[:, 0]).coef_.shape == (1, X.shape[1])


def test_separable_data_decision_sign_and_probabilities() -> None:
    X, Y, names, y = _blobs(n=3000, k=3, sep=4.0, seed=5)
    head = LinearHead().fit(X[:2000], Y[:2000], names)
    Z = head.decision_function(X[2000:])
    P = head.predict_proba(X[2000:])
    assert Z.shape == P.shape == (1000, 3) and P.dtype == np.float32
    assert np.all((P >= 0) & (P <= 1))
    truth = Y[2000:] == 1
    assert np.mean((Z > 0) == truth) > 0.97  # the sign of z says which side of the plane
    for j in range(3):  # calibration is monotone in z: same ranking
        order = np.argsort(Z[:, j], kind="stable")
        assert np.all(np.diff(P[order, j]) >= 0)
    assert (P.argmax(axis=1) == y[2000:]).mean() > 0.97
    np.testing.assert_array_equal(head.predict(X[2000:]), P >= head.threshold_)


def test_probabilities_are_calibrated_on_held_out_data() -> None:
    X, Y, names, _ = _blobs(n=12000, k=3, sep=0.6, seed=6)  # overlapping: probabilities matter
    head = LinearHead().fit(X[:8000], Y[:8000], names)
    P = head.predict_proba(X[8000:])
    truth = Y[8000:] == 1
    for j in range(3):
        assert P[:, j].mean() == pytest.approx(truth[:, j].mean(), abs=0.03)
        bins = np.minimum((P[:, j] * 5).astype(int), 4)
        for b in range(5):
            m = bins == b
            if m.sum() >= 100:
                assert P[m, j].mean() == pytest.approx(truth[m, j].mean(), abs=0.08), (j, b)


def test_refit_is_deterministic_and_seeded() -> None:
    X, Y, names, _ = _blobs(n=1500, k=3, seed=7)
    a = LinearHead(seed=3).fit(X, Y, names)
    b = LinearHead(seed=3).fit(X, Y, names)
    for attr in ("coef_", "intercept_", "calib_a_", "calib_c_", "threshold_"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
    c = LinearHead(seed=4).fit(X, Y, names)  # another split of each class
    assert not np.array_equal(a.coef_, c.coef_)


def test_params_recipe_and_clone() -> None:
    head = LinearHead(C=0.5, target_precision=0.8, n_jobs=2)
    assert head.get_params()["C"] == 0.5 and head.get_params()["n_jobs"] == 2
    assert tuple(head.recipe()) == RECIPE  # n_jobs changes speed, never the result
    assert head.recipe()["target_precision"] == 0.8
    copy = clone(head)
    assert copy.get_params() == head.get_params() and copy is not head


def test_head_scores_equal_the_bundle_bit_for_bit() -> None:
    X, Y, names, _ = _blobs(n=1000, k=3, seed=8)
    head = LinearHead().fit(X, Y, names)
    bundle = ModelBundle.create(
        name="t",
        feature_set={"name": "blobs", "version": "1", "dim": X.shape[1]},
        classes=names,
        heads=[HeadGroup("g", "sigmoid", 0, 3)],
        **head_rows(head),
    )
    assert bundle.score(X).tobytes() == head.predict_proba(X).tobytes()
    assert bundle.decision(X).tobytes() == head.decision_function(X).tobytes()


def test_folded_weights_equal_sklearn_decision_function() -> None:
    X, Y, _, _ = _blobs()
    head = LinearHead().fit(X, Y[:, 1], ["c1"])
    # Refit sklearn on the same split and standardization: z = w.x - b must match.
    mu, sd = standardizer(X)
    y = Y[:, 1]
    tr, _ = split_rows(y, head.val_fraction, class_seed(head.seed, "c1"))
    ref = LogisticRegression(C=head.C, class_weight="balanced", max_iter=head.max_iter)
    ref.fit((X[tr] - mu) / sd, y[tr])
    z_ref = ref.decision_function((X - mu) / sd)
    np.testing.assert_allclose(head.decision_function(X)[:, 0], z_ref, rtol=1e-3, atol=1e-3)


def test_thresholds_reach_target_precision_on_validation() -> None:
    X, Y, names, _ = _blobs(n=4000, sep=1.2, seed=1)
    head = LinearHead(target_precision=0.9).fit(X, Y, names)
    reached = 0
    for j, name in enumerate(head.classes_):
        y = Y[:, j]
        _, va = split_rows(y, head.val_fraction, class_seed(head.seed, name))
        # float32 as in the bundle; one class alone, as fit scored it (a matrix-vector product)
        z = X[va] @ head.coef_[j] + head.intercept_[j]
        p = calibrated_sigmoid(z, head.calib_a_[j], head.calib_c_[j])
        prec = precision_score(y[va], p >= head.threshold_[j])
        m = head.class_metrics_[name]
        assert prec == pytest.approx(m["val_precision"], abs=1e-9)
        if m["threshold_rule"].startswith("precision"):
            reached += 1
            assert prec >= 0.9
    assert reached == len(names)  # separable enough: reachable for every class


def test_unlabeled_rows_are_not_negatives_and_tiny_classes_skip() -> None:
    X, Y, names, _ = _blobs(n=600, seed=2)
    Y[:300, 0] = -1
    Y[:, 3] = 0
    Y[0, 3] = 1  # one positive: not trainable
    head = LinearHead().fit(X, Y, names)
    m0 = head.class_metrics_["c0"]
    assert m0["n_pos"] + m0["n_neg"] == 300
    assert head.class_metrics_["c3"]["status"].startswith("skipped")
    assert sigmoid(head.calib_a_[3] * 0 + head.calib_c_[3]) < head.threshold_[3]  # never fires
    assert not head.predict(X)[:, 3].any()


def test_parallel_equals_serial() -> None:
    X, Y, names, _ = _blobs(n=1500, seed=3)
    a = LinearHead(n_jobs=1).fit(X, Y, names)
    b = LinearHead(n_jobs=2).fit(X, Y, names)
    assert a.classes_ == b.classes_
    for attr in ("coef_", "intercept_", "threshold_", "calib_a_", "calib_c_"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))


def test_top1_on_held_out_blobs() -> None:
    X, Y, names, y = _blobs(n=4000, sep=1.5, seed=4)
    P = LinearHead().fit(X[:3000], Y[:3000], names).predict_proba(X[3000:])
    assert (P.argmax(axis=1) == y[3000:]).mean() > 0.8


def test_progress_reports_each_class() -> None:
    X, Y, names, _ = _blobs(n=500, k=3, seed=9)
    events = []
    LinearHead().fit(X, Y, names, progress=events.append)
    assert [(e.stage, e.done, e.total) for e in events] == [("training", i, 3) for i in range(4)]
