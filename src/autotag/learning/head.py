"""A linear one-vs-rest head in scikit-learn's style: one calibrated (w, b) per class.

``LinearHead(C=0.01).fit(X, Y)`` trains each column of ``Y`` independently, Flickr style:
only the photos labeled for that class are used (``1`` positive, ``0`` negative, ``-1`` no
label). They are split into train / validation (stratified, seeded by the class name, so a
retrain is reproducible and independent of the other classes). Logistic regression with
``class_weight='balanced'`` (Flickr's ~10K positives vs ~100K negatives) is fitted on
standardized features, and the standardization is folded back into the weights, so the head
keeps the plain ``z = X·coef_ᵀ + intercept_`` form: a bundle row ``W·x − b`` with
``b = −intercept_``. On the validation split a Platt sigmoid and a threshold are chosen
(``calibration``). Classes train in parallel with joblib (X is memory-mapped to the workers,
not copied).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from autotag.checksums import bytes_sha256
from autotag.learning.calibration import choose_threshold, platt
from autotag.learning.progress import Progress, Stage
from autotag.vision.bundle import calibrated_sigmoid

# The hyper-parameters that define a trained head: part of every class fingerprint, stored in
# the bundle manifest as the recipe (n_jobs changes speed, not the result, so it is not one).
RECIPE = ("C", "target_precision", "val_fraction", "max_iter", "tol", "seed", "min_positives")


@dataclass
class ClassFit:
    """One class's fitted row (float32, as the bundle stores it) and how it went."""

    coef: np.ndarray  # (d,)
    intercept: np.float32
    calib_a: np.float32
    calib_c: np.float32
    threshold: np.float32
    metrics: dict[str, Any]


class LinearHead(BaseEstimator):
    """Calibrated one-vs-rest logistic regression, each class with its own threshold.

    Learned attributes (k classes, d features): ``classes_`` (k names), ``coef_`` (k, d),
    ``intercept_``, ``calib_a_``, ``calib_c_``, ``threshold_`` (k,) - all float32 - and
    ``class_metrics_`` (per class: counts, status, validation precision / recall / AP).
    """

    def __init__(
        self,
        C: float = 0.01,  # noqa: N803 - scikit-learn's name; chosen on Fashion-MNIST, MODELS.md
        target_precision: float = 0.9,
        val_fraction: float = 0.2,
        max_iter: int = 500,
        tol: float = 1e-4,
        seed: int = 0,
        min_positives: int = 2,
        n_jobs: int = 1,
    ) -> None:
        self.C = C
        self.target_precision = target_precision
        self.val_fraction = val_fraction
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed
        self.min_positives = min_positives
        self.n_jobs = n_jobs

    def recipe(self) -> dict[str, Any]:
        """The hyper-parameters that decide the result (see ``RECIPE``), in a fixed order."""
        return {name: getattr(self, name) for name in RECIPE}

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        classes: Sequence[str] | None = None,
        progress: Progress | None = None,
    ) -> LinearHead:
        """Fit one head per column of ``Y`` (n, k) of 1 / 0 / -1; a 1-d ``y`` is one class.

        ``classes`` names the columns (they seed each class's split); default ``"0"``,
        ``"1"``... A class with too few examples gets a head that never fires.
        """
        from joblib import Parallel, delayed

        Y = np.asarray(Y, dtype=np.int8)
        if Y.ndim == 1:
            Y = Y[:, None]
        names = [str(j) for j in range(Y.shape[1])] if classes is None else list(classes)
        if X.shape[0] != Y.shape[0] or len(names) != Y.shape[1]:
            raise ValueError(f"X has {X.shape[0]} rows, Y is {Y.shape}, {len(names)} class names")
        X = np.ascontiguousarray(X, dtype=np.float32)
        fits: dict[str, ClassFit] = {}
        if names:
            mu, sigma = standardizer(X)
            recipe = self.recipe()
            bar = Stage(progress, "training", len(names), "class")
            if self.n_jobs == 1 or len(names) == 1:
                for j, name in enumerate(names):
                    fits[name] = fit_one_class(X, Y[:, j], name, recipe, mu, sigma)
                    bar.advance()
            else:
                par = Parallel(n_jobs=self.n_jobs, return_as="generator_unordered", max_nbytes="1M")
                tasks = (
                    delayed(_fit_named)(X, np.ascontiguousarray(Y[:, j]), name, recipe, mu, sigma)
                    for j, name in enumerate(names)
                )
                for name, fit in par(tasks):
                    fits[name] = fit
                    bar.advance()
        ordered = [fits[n] for n in names]
        d = X.shape[1]
        self.classes_ = names
        self.n_features_in_ = d
        self.coef_ = np.zeros((len(names), d), dtype=np.float32)
        for i, f in enumerate(ordered):
            self.coef_[i] = f.coef
        self.intercept_ = np.asarray([f.intercept for f in ordered], dtype=np.float32)
        self.calib_a_ = np.asarray([f.calib_a for f in ordered], dtype=np.float32)
        self.calib_c_ = np.asarray([f.calib_c for f in ordered], dtype=np.float32)
        self.threshold_ = np.asarray([f.threshold for f in ordered], dtype=np.float32)
        self.class_metrics_ = {n: f.metrics for n, f in zip(names, ordered, strict=True)}
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Raw scores (n, k), float32: the bundle's ``X·Wᵀ − b``."""
        return np.asarray(X, dtype=np.float32) @ self.coef_.T + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n, k), float32, bit for bit what the bolt computes."""
        return calibrated_sigmoid(self.decision_function(X), self.calib_a_, self.calib_c_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Tags (n, k) bool: probability at or above each class's threshold."""
        return self.predict_proba(X) >= self.threshold_


def class_seed(seed: int, name: str) -> int:
    """A class's own seed: its split does not depend on which other classes are trained."""
    return int.from_bytes(bytes.fromhex(bytes_sha256(f"{seed}:{name}".encode())[:8]), "little")


def split_rows(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/val split of positions into y; at least one of each label on each side."""
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for lab in (1, 0):
        idx = np.flatnonzero(y == lab)
        rng.shuffle(idx)
        n_val = min(max(1, int(round(len(idx) * val_fraction))), len(idx) - 1)
        va.append(idx[:n_val])
        tr.append(idx[n_val:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))


def standardizer(X: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std over all training photos (constant dims get std 1)."""
    n, d = X.shape
    s = np.zeros(d)
    ss = np.zeros(d)
    for i in range(0, n, chunk):
        blk = np.asarray(X[i : i + chunk], dtype=np.float64)
        s += blk.sum(0)
        ss += (blk * blk).sum(0)
    mu = s / max(n, 1)
    var = np.maximum(ss / max(n, 1) - mu * mu, 0.0)
    sd = np.sqrt(var)
    sd[sd < 1e-6 * max(float(sd.max(initial=0.0)), 1e-12)] = 1.0
    return mu.astype(np.float32), sd.astype(np.float32)


def fit_one_class(
    X: np.ndarray,
    y_all: np.ndarray,
    name: str,
    recipe: Mapping[str, Any],
    mu: np.ndarray,
    sigma: np.ndarray,
) -> ClassFit:
    """Train, calibrate and threshold one class on its labeled rows (y_all: 1 / 0 / -1)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score

    t0 = time.perf_counter()
    rows = np.flatnonzero(y_all >= 0)
    y = (y_all[rows] == 1).astype(np.int8)
    npos, nneg = int(y.sum()), int(len(y) - y.sum())
    d = X.shape[1]
    base = {"n_pos": npos, "n_neg": nneg}
    if npos < max(2, recipe["min_positives"]) or nneg < 2:
        # Not trainable: a head that never fires, kept so the class list stays stable.
        return ClassFit(
            np.zeros(d, np.float32),
            -np.float32(0.0),  # b = 0
            np.float32(0.0),
            np.float32(-20.0),
            np.float32(1.0),
            {**base, "status": "skipped: too few labeled examples", "threshold_rule": "never"},
        )
    seed = class_seed(recipe["seed"], name)
    tr, va = split_rows(y, recipe["val_fraction"], seed)
    Xtr = np.asarray(X[rows[tr]], dtype=np.float32)  # a copy: standardize it in place
    Xtr -= mu
    Xtr /= sigma
    clf = LogisticRegression(
        C=recipe["C"],
        class_weight="balanced",
        max_iter=recipe["max_iter"],
        tol=recipe["tol"],
        random_state=seed,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(Xtr, y[tr])
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    del Xtr
    coef = clf.coef_[0].astype(np.float64)
    w = (coef / sigma).astype(np.float32)
    b = np.float32(float(np.dot(coef, mu / sigma) - clf.intercept_[0]))
    # Validate with exactly what the bolt will compute: float32 z = W.x - b, then the bundle's
    # float32 sigmoid, so the chosen threshold sits on the same side of every validation score.
    zva = np.asarray(X[rows[va]], dtype=np.float32) @ w - b
    a, c = (np.float32(v) for v in platt(zva.astype(np.float64), y[va]))
    pva = calibrated_sigmoid(zva, a, c)
    thr, tinfo = choose_threshold(y[va], pva, recipe["target_precision"])
    metrics = {
        **base,
        "status": "trained",
        "n_train": int(len(tr)),
        "n_val": int(len(va)),
        "val_pos": int(y[va].sum()),
        "val_ap": float(average_precision_score(y[va], pva)) if y[va].any() else 0.0,
        **tinfo,
        "converged": bool(converged),
        "n_iter": int(np.max(clf.n_iter_)),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return ClassFit(w, -b, a, c, np.float32(thr), metrics)


def _fit_named(
    X: np.ndarray,
    y_all: np.ndarray,
    name: str,
    recipe: Mapping[str, Any],
    mu: np.ndarray,
    sigma: np.ndarray,
) -> tuple[str, ClassFit]:
    """fit_one_class for joblib, whose results arrive in any order: tagged with the name."""
    return name, fit_one_class(X, y_all, name, recipe, mu, sigma)
