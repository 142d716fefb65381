"""Honest evaluation: scores on photos the model never saw, compared with their labels.

Per class (only the photos labeled for it): precision, recall and F1 at the bundle's own
threshold (``score >= threshold``, what the bolt tags) and average precision (threshold-free).
Summary: mAP and macro-F1 over classes with at least one positive, and - where classes are
exclusive (every photo exactly one positive, or the top-level classes of a hierarchy) - top-1
accuracy, macro-F1 of the arg-max and a confusion matrix. All numbers come from
``sklearn.metrics`` so they can be checked against it. Cross-validation retrains the whole
recipe (split, calibration, thresholds) inside each fold, so no fold sees its test photos.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autotag.errors import AutotagError
from autotag.learning.datasets import LabelSet
from autotag.learning.head import LinearHead
from autotag.learning.labeled_features import bundle_feature_set, load_labeled_features
from autotag.learning.progress import Progress, note
from autotag.vision.bundle import ModelBundle
from autotag.vision.decode import DecodeLimits
from autotag.vision.feature_sets import FeatureOptions


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def evaluate_scores(
    scores: np.ndarray,
    labels: LabelSet,
    thresholds: Sequence[float] | np.ndarray,
    *,
    curves: bool = False,
) -> dict[str, Any]:
    """Metrics for scores (n, k) aligned with labels.classes; thresholds (k,)."""
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        confusion_matrix,
        f1_score,
        precision_recall_curve,
        precision_score,
        recall_score,
    )

    scores = np.asarray(scores, dtype=np.float64)
    thr = np.asarray(thresholds, dtype=np.float64)
    n, k = scores.shape
    if labels.Y.shape != (n, k) or thr.shape != (k,):
        raise ValueError(f"scores {scores.shape}, labels {labels.Y.shape}, thresholds {thr.shape}")
    per_class: dict[str, dict[str, Any]] = {}
    pr: dict[str, dict[str, list[float]]] = {}
    for j, c in enumerate(labels.classes):
        m = labels.Y[:, j] >= 0
        y = labels.Y[m, j] == 1
        s = scores[m, j]
        pred = s >= thr[j]
        npos = int(y.sum())
        rec: dict[str, Any] = {
            "n_pos": npos,
            "n_neg": int((~y).sum()),
            "threshold": _r(thr[j]),
            "predicted": int(pred.sum()),
        }
        if npos:
            rec["precision"] = _r(precision_score(y, pred, zero_division=0))
            rec["recall"] = _r(recall_score(y, pred, zero_division=0))
            rec["f1"] = _r(f1_score(y, pred, zero_division=0))
            rec["ap"] = _r(average_precision_score(y, s))
            if curves:
                p, r, _ = precision_recall_curve(y, s)
                step = max(1, len(p) // 400)  # keep the JSON / plot small
                pr[c] = {"precision": p[::step].tolist(), "recall": r[::step].tolist()}
        per_class[c] = rec
    scored = [v for v in per_class.values() if v["n_pos"]]
    summary: dict[str, Any] = {
        "photos": n,
        "classes": k,
        "classes_with_positives": len(scored),
        "map": _r(np.mean([v["ap"] for v in scored])) if scored else None,
        "macro_f1": _r(np.mean([v["f1"] for v in scored])) if scored else None,
        "macro_precision": _r(np.mean([v["precision"] for v in scored])) if scored else None,
        "macro_recall": _r(np.mean([v["recall"] for v in scored])) if scored else None,
    }
    report: dict[str, Any] = {"summary": summary, "per_class": per_class}
    cols = labels.exclusive_classes()
    if cols is not None:
        sub = labels.Y[:, cols]
        rows = np.flatnonzero((sub == 1).sum(axis=1) == 1)
        y_true = np.argmax(sub[rows] == 1, axis=1)
        y_pred = np.argmax(scores[np.ix_(rows, np.asarray(cols, dtype=np.intp))], axis=1)
        names = [labels.classes[j] for j in cols]
        summary["top1_accuracy"] = _r(accuracy_score(y_true, y_pred))
        summary["top1_macro_f1"] = _r(
            f1_score(y_true, y_pred, average="macro", labels=np.arange(len(cols)), zero_division=0)
        )
        summary["top1_photos"] = int(len(rows))
        summary["top1_classes"] = names if len(names) <= 50 else f"{len(names)} classes"
        report["confusion"] = {
            "classes": names,
            "matrix": confusion_matrix(y_true, y_pred, labels=np.arange(len(cols))).tolist(),
        }
    if curves:
        report["pr_curves"] = pr
    return report


def plot_pr_curves(report: dict[str, Any], path: Path, max_classes: int = 20) -> None:
    """Precision-recall curves of the most-supported classes, with each threshold's point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = report.get("pr_curves", {})
    per = report["per_class"]
    names = sorted(curves, key=lambda c: -per[c]["n_pos"])[:max_classes]
    fig, ax = plt.subplots(figsize=(8, 6), dpi=110)
    cmap = plt.get_cmap("tab20")
    for i, c in enumerate(names):
        col = cmap(i % 20)
        ax.plot(
            curves[c]["recall"],
            curves[c]["precision"],
            color=col,
            lw=1.2,
            label=f"{c} (AP {per[c]['ap']:.2f})",
        )
        ax.plot([per[c]["recall"]], [per[c]["precision"]], "o", color=col, ms=4)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    s = report["summary"]
    extra = "" if len(curves) <= max_classes else f", {max_classes} of {len(curves)} classes shown"
    ax.set_title(f"PR curves: mAP {s['map']:.3f}{extra}; dots = bundle thresholds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower left", ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_confusion(report: dict[str, Any], path: Path) -> None:
    """Row-normalized confusion matrix of the exclusive classes (arg-max prediction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = report["confusion"]
    M = np.asarray(conf["matrix"], dtype=np.float64)
    names = conf["classes"]
    norm = M / np.maximum(M.sum(axis=1, keepdims=True), 1)
    k = len(names)
    size = min(4 + 0.45 * k, 20)
    fig, ax = plt.subplots(figsize=(size, size * 0.85), dpi=110)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if k <= 40:
        ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(k), names, fontsize=7)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if M[i, j]:
                    ax.text(
                        j,
                        i,
                        str(int(M[i, j])),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted (arg-max)")
    ax.set_ylabel("true")
    acc = report["summary"].get("top1_accuracy")
    ax.set_title(f"confusion (row-normalized), top-1 accuracy {acc:.3f}")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """report.json + pr_curves.png (+ confusion.png when classes are exclusive)."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"report": out / "report.json"}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    if report.get("pr_curves"):
        files["pr_curves"] = out / "pr_curves.png"
        plot_pr_curves(report, files["pr_curves"])
    if report.get("confusion"):
        files["confusion"] = out / "confusion.png"
        plot_confusion(report, files["confusion"])
    return files


def align_classes(
    bundle_classes: Sequence[str], labels: LabelSet
) -> tuple[LabelSet, list[int], list[str]]:
    """Restrict labels to classes the bundle knows; return (labels, bundle columns, missing)."""
    index = {c: i for i, c in enumerate(bundle_classes)}
    keep = [c for c in labels.classes if c in index]
    missing = [c for c in labels.classes if c not in index]
    if not keep:
        raise AutotagError("none of the labeled classes is in the bundle")
    return labels.select_classes(keep), [index[c] for c in keep], missing


def evaluate_bundle(
    bundle: ModelBundle,
    images_dir: Path,
    labels: LabelSet,
    cache_root: Path,
    *,
    limits: DecodeLimits,
    feature_options: FeatureOptions,
    allow_missing: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Score labeled photos with a bundle (the bolt's decode + features + bundle maths)."""
    fs = bundle_feature_set(bundle, feature_options)
    data = load_labeled_features(
        labels,
        images_dir,
        fs,
        cache_root,
        limits=limits,
        allow_missing=allow_missing,
        progress=progress,
    )
    sub, cols, missing = align_classes(bundle.classes, data.labels)
    probs = bundle.score(data.X)
    report = evaluate_scores(probs[:, cols], sub, bundle.thresholds[cols], curves=True)
    report["bundle"] = {
        "id": bundle.id,
        "feature_set": fs.name + "@" + str(fs.version),
    }
    report["data"] = {
        "images": str(images_dir),
        "labels": data.labels.source,
        "photos_missing": data.info["photos_missing"],
        "photos_undecodable": data.info["photos_undecodable"],
        "classes_not_in_bundle": missing,
        "features": data.info["features"],
    }
    return report


def cross_validate(
    X: np.ndarray,
    labels: LabelSet,
    head: LinearHead | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """K-fold CV of the full training recipe; mean +- std over folds and pooled out-of-fold.

    Each fold fits a fresh copy of ``head`` (default ``LinearHead()``). Folds are stratified
    on the exclusive class when there is one (so every fold sees every top-level class), else
    plain shuffled K-fold.
    """
    from sklearn.base import clone
    from sklearn.model_selection import KFold, StratifiedKFold

    head = head or LinearHead()
    cols = labels.exclusive_classes()
    n = labels.n_photos
    if cols is not None:
        sub = labels.Y[:, cols] == 1
        strat = np.where(sub.any(axis=1), np.argmax(sub, axis=1), -1)
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(n), strat)
    else:
        splitter = KFold(folds, shuffle=True, random_state=seed).split(np.zeros(n))
    oof = np.zeros(labels.Y.shape, dtype=np.float32)
    oof_pred = np.zeros(labels.Y.shape, dtype=bool)
    fold_reports = []
    t0 = time.perf_counter()
    for f, (tr, te) in enumerate(splitter):
        train = labels.subset(tr)
        fitted = clone(head).fit(X[tr], train.Y, train.classes, progress=progress)
        p = fitted.predict_proba(X[te])
        oof[te] = p
        oof_pred[te] = p >= fitted.threshold_
        rep = evaluate_scores(p, labels.subset(te), fitted.threshold_)
        fold_reports.append(rep["summary"])
        s = rep["summary"]
        note(progress, f"fold {f + 1}/{folds}: mAP {s['map']}, top-1 {s.get('top1_accuracy')}")
    keys = ["map", "macro_f1", "top1_accuracy", "top1_macro_f1"]
    agg = {}
    for key in keys:
        vals = [r[key] for r in fold_reports if r.get(key) is not None]
        if vals:
            agg[key] = {"mean": _r(np.mean(vals)), "std": _r(np.std(vals)), "folds": vals}
    # Pooled: each photo scored by the fold that held it out; thresholds per fold, so the
    # pooled thresholded numbers use the per-fold decisions (threshold 0.5 on a 0/1 matrix).
    pooled = evaluate_scores(oof, labels, np.full(len(labels.classes), 0.5), curves=True)
    pooled_pred = evaluate_scores(
        oof_pred.astype(np.float32), labels, np.full(len(labels.classes), 0.5)
    )
    for c, v in pooled["per_class"].items():
        for key in ("precision", "recall", "f1", "predicted"):
            if key in pooled_pred["per_class"][c]:
                v[key] = pooled_pred["per_class"][c][key]
        v["threshold"] = "per fold"
    for key in ("macro_f1", "macro_precision", "macro_recall"):
        pooled["summary"][key] = pooled_pred["summary"][key]
    return {
        "cv": {
            "folds": folds,
            "seed": seed,
            "stratified": cols is not None,
            "recipe": head.recipe(),
            "seconds": round(time.perf_counter() - t0, 1),
            **agg,
        },
        "summary": pooled["summary"],
        "per_class": pooled["per_class"],
        "confusion": pooled.get("confusion"),
        "pr_curves": pooled.get("pr_curves"),
        "folds": fold_reports,
    }
