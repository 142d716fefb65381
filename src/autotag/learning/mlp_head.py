"""A one-hidden-layer MLP head on feature vectors, in scikit-learn's style (plain NumPy).

``MLPHead(hidden=256).fit(X, y)`` learns a softmax classifier over exclusive classes
(``y`` = class index per row) through one ReLU hidden layer. The features are standardized
first; a seeded, stratified validation split of the training rows picks the epoch (early
stopping, best weights kept). Mini-batch Adam with decoupled weight decay and a cosine
learning-rate decay, dropout on the hidden layer. Written in NumPy (a few matrix products
per batch) so it needs no training framework: it is the non-linear counterpart of
``LinearHead`` on the same cached vectors, and exports to the same bundle format through
``mlp_workflow``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from autotag.learning.network_data import split_validation
from autotag.learning.progress import Progress, Stage


class MLPHead(BaseEstimator):
    """Softmax over ``relu(standardize(x) · W1_ + b1_) · W2_ + b2_``.

    Learned attributes (d features, h hidden units, k classes): ``classes_`` (k names),
    ``mean_``, ``scale_`` (d,), ``W1_`` (d, h), ``b1_`` (h,), ``W2_`` (h, k), ``b2_`` (k,) -
    all float32 - ``n_features_in_``, ``best_epoch_``, ``validation_accuracy_`` and
    ``history_`` (per epoch: loss, validation accuracy).
    """

    def __init__(
        self,
        hidden: int = 256,
        epochs: int = 30,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        dropout: float = 0.5,
        val_fraction: float = 0.1,
        patience: int = 5,
        seed: int = 0,
    ) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.val_fraction = val_fraction
        self.patience = patience
        self.seed = seed

    def recipe(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.get_params()}

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        classes: Sequence[str] | None = None,
        progress: Progress | None = None,
    ) -> MLPHead:
        X = np.asarray(X, np.float32)
        y = np.asarray(y, np.int64)
        k = int(y.max()) + 1 if classes is None else len(classes)
        if X.ndim != 2 or len(X) != len(y) or y.min() < 0 or y.max() >= k:
            raise ValueError(f"X is {X.shape}, y has {len(y)} labels in [{y.min()}, {y.max()}]")
        self.classes_ = [str(c) for c in (classes if classes is not None else range(k))]
        self.n_features_in_ = X.shape[1]
        train, val = split_validation(y, self.val_fraction, self.seed)
        self.mean_ = X[train].mean(0).astype(np.float32)
        self.scale_ = np.maximum(X[train].std(0), 1e-6).astype(np.float32)
        Z = (X - self.mean_) / self.scale_

        rng = np.random.default_rng(self.seed)
        d, h = X.shape[1], self.hidden
        params = {
            "W1": (rng.standard_normal((d, h)) * math.sqrt(2.0 / d)).astype(np.float32),
            "b1": np.zeros(h, np.float32),
            "W2": (rng.standard_normal((h, k)) * math.sqrt(1.0 / h)).astype(np.float32),
            "b2": np.zeros(k, np.float32),
        }
        adam = {n: (np.zeros_like(p), np.zeros_like(p)) for n, p in params.items()}
        steps = max(1, len(train) // self.batch_size)
        total, t = steps * self.epochs, 0
        best = (-1.0, -1, {n: p.copy() for n, p in params.items()})
        self.history_: list[dict[str, float]] = []
        bar = Stage(progress, "training", self.epochs, "epoch")
        for epoch in range(self.epochs):
            if best[1] >= 0 and epoch - best[1] > self.patience:
                break
            order = np.random.default_rng([self.seed, epoch]).permutation(train)
            losses = []
            for s in range(steps):
                rows = order[s * self.batch_size : (s + 1) * self.batch_size]
                loss, grads = self._gradients(params, Z[rows], y[rows], rng)
                lr = 0.5 * self.lr * (1 + math.cos(math.pi * t / total))
                t += 1
                _adam_step(params, grads, adam, lr, self.weight_decay, t)
                losses.append(loss)
            acc = float((_forward(params, Z[val])[1].argmax(1) == y[val]).mean()) if len(val) else 0
            self.history_.append(
                {"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 5), "val": acc}
            )
            if acc > best[0]:
                best = (acc, epoch, {n: p.copy() for n, p in params.items()})
            bar.advance()
        self.validation_accuracy_, self.best_epoch_ = best[0], best[1] + 1
        self.W1_, self.b1_, self.W2_, self.b2_ = (best[2][n] for n in ("W1", "b1", "W2", "b2"))
        return self

    def _gradients(
        self, p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, rng: np.random.Generator
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Cross-entropy of one batch (dropout on the hidden layer) and its gradients."""
        pre = x @ p["W1"] + p["b1"]
        hid = np.maximum(pre, 0)
        keep = None
        if self.dropout > 0:
            keep = (rng.random(hid.shape) >= self.dropout) / np.float32(1 - self.dropout)
            hid = hid * keep
        logits = hid @ p["W2"] + p["b2"]
        prob = _softmax(logits)
        n = len(y)
        loss = float(-np.log(prob[np.arange(n), y] + 1e-12).mean())
        dlog = prob
        dlog[np.arange(n), y] -= 1
        dlog /= n
        dhid = dlog @ p["W2"].T
        if keep is not None:
            dhid *= keep
        dpre = dhid * (pre > 0)
        grads = {"W2": hid.T @ dlog, "b2": dlog.sum(0), "W1": x.T @ dpre, "b1": dpre.sum(0)}
        return loss, grads

    def hidden_layer(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W, b)`` of the hidden layer with the standardization folded in: the hidden
        activations are ``relu(x · W + b)`` on raw features (what the bundle's graph runs)."""
        w = (self.W1_ / self.scale_[:, None]).astype(np.float32)
        b = (self.b1_ - (self.mean_ / self.scale_) @ self.W1_).astype(np.float32)
        return w, b

    def transform(self, X: np.ndarray) -> np.ndarray:
        """The hidden layer's activations (the bundle's feature vector)."""
        z = (np.asarray(X, np.float32) - self.mean_) / self.scale_
        return np.maximum(z @ self.W1_ + self.b1_, 0)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return _softmax(self.transform(X) @ self.W2_ + self.b2_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(1)


def _forward(p: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hid = np.maximum(x @ p["W1"] + p["b1"], 0)
    return hid, hid @ p["W2"] + p["b2"]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _adam_step(
    params: dict[str, np.ndarray],
    grads: dict[str, np.ndarray],
    state: dict[str, tuple[np.ndarray, np.ndarray]],
    lr: float,
    weight_decay: float,
    t: int,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> None:
    """AdamW (decoupled weight decay on the weight matrices only), in place."""
    for name, g in grads.items():
        m, v = state[name]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        update = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        if name.startswith("W"):
            update = update + weight_decay * params[name]
        params[name] -= (lr * update).astype(np.float32)
