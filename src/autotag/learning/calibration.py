"""From raw scores to decisions: Platt calibration and the per-class threshold.

A linear head's score ``z`` has no fixed scale, so each class gets a Platt sigmoid
``σ(a·z + c)`` fitted on its validation split, and a threshold on that probability: the
lowest one whose validation precision reaches the target (the most recall at that precision),
else the best-F1 one. The bolt applies both through ``vision.bundle.calibrated_sigmoid``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically safe logistic function in float64 (for fitting; the bolt uses float32)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def platt(z: np.ndarray, y: np.ndarray, max_iter: int = 100) -> tuple[float, float]:
    """Fit (a, c) so sigmoid(a.z + c) is calibrated; Platt's smoothed targets avoid a = inf.

    Newton's method with backtracking on the 2-parameter cross-entropy (Platt 1999,
    Lin et al. 2007), z rescaled first for conditioning.
    """
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y) == 1
    npos, nneg = int(y.sum()), int((~y).sum())
    t = np.where(y, (npos + 1.0) / (npos + 2.0), 1.0 / (nneg + 2.0))
    scale = float(z.std()) or 1.0
    zs = z / scale
    a, c = 0.0, float(np.log((npos + 1.0) / (nneg + 1.0)))

    def loss(a: float, c: float) -> float:
        f = a * zs + c
        # -[t log p + (1-t) log(1-p)] with p = sigmoid(f), stably
        return float(np.sum(np.logaddexp(0.0, f) - t * f))

    cur = loss(a, c)
    for _ in range(max_iter):
        p = sigmoid(a * zs + c)
        d = p - t
        g = np.array([np.dot(d, zs), d.sum()])
        wgt = p * (1 - p)
        H = np.array([[np.dot(wgt, zs * zs), np.dot(wgt, zs)], [np.dot(wgt, zs), wgt.sum()]])
        step = np.linalg.solve(H + 1e-12 * np.eye(2), g)
        decrease = float(g @ step)
        lr = 1.0
        while True:  # Armijo backtracking
            na, nc = a - lr * step[0], c - lr * step[1]
            new = loss(na, nc)
            if new <= cur - 1e-4 * lr * decrease:
                break
            lr /= 2
            if lr < 1e-10:
                return a / scale, c
        a, c = na, nc
        if cur - new < 1e-12 * max(1.0, abs(cur)):
            break
        cur = new
    return a / scale, c


def choose_threshold(
    y: np.ndarray, p: np.ndarray, target_precision: float
) -> tuple[float, dict[str, Any]]:
    """Lowest threshold with precision >= target (max recall); else the best-F1 threshold.

    Prediction rule everywhere is ``score >= threshold``.
    """
    from sklearn.metrics import precision_recall_curve

    y = np.asarray(y) == 1
    if y.sum() == 0:
        return 1.0, {"threshold_rule": "no-positives", "val_precision": 0.0, "val_recall": 0.0}
    prec, rec, thr = precision_recall_curve(y, p)
    prec, rec = prec[:-1], rec[:-1]  # the last point has no threshold
    ok = np.flatnonzero(prec >= target_precision)
    if ok.size:
        i = ok[np.lexsort((-prec[ok], -rec[ok]))[0]]
        rule = f"precision>={target_precision:g}"
    else:
        f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)
        i = int(np.argmax(f1))
        rule = "best-f1"
    return float(thr[i]), {
        "threshold_rule": rule,
        "val_precision": float(prec[i]),
        "val_recall": float(rec[i]),
    }
