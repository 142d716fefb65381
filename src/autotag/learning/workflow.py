"""From labeled photos to an installed bundle: the steps behind ``autotag train``.

1. With ``update``, read the old bundle: its per-class fingerprints, head group and recipe.
2. Resolve and featurize the labeled photos through the feature cache.
3. Fingerprint every class; classes whose fingerprint matches the old bundle are reused.
4. Fit a ``LinearHead`` on the classes to (re)train, in parallel.
5. Assemble the bundle (new rows, reused rows bit for bit, kept classes), measure it on the
   held-out test set if one is given, merge the old bundle's other head groups or the
   pretrained default beside it.
6. Install it under ``models_dir`` and, if asked, make it the active bundle.

A class's fingerprint is the sha256 of its sorted (photo sha256, label) pairs plus the feature
set and the recipe: content hashes, not file names, so moving or renaming photos changes
nothing, and a changed recipe retrains every class.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotag.checksums import bytes_sha256
from autotag.errors import AutotagError
from autotag.learning import bundle_edit
from autotag.learning.datasets import LabelSet, dataset_name
from autotag.learning.evaluation import evaluate_bundle
from autotag.learning.head import LinearHead
from autotag.learning.labeled_features import (
    LabeledFeatures,
    bundle_feature_set,
    load_labeled_features,
)
from autotag.learning.progress import Progress, note
from autotag.vision import bundle as bundles
from autotag.vision.bundle import HeadGroup, ModelBundle
from autotag.vision.decode import DecodeLimits
from autotag.vision.feature_sets import FeatureOptions, get_feature_set
from autotag.vision.features import onnx_model_path
from autotag.vision.imagenet import build_default_bundle

TRAINER = "autotag.learning.workflow.train_bundle"


@dataclass(frozen=True)
class TrainRequest:
    """What ``autotag train`` was asked for.

    ``recipe`` overrides ``LinearHead`` hyper-parameters (``C``, ``target_precision``...): the
    defaults, or with ``update`` the old bundle's recipe. ``update`` is a bundle id, directory
    or ``active``; ``test`` = (images dir, labels) adds held-out test metrics to the manifest.
    """

    labels: LabelSet
    images_dir: Path
    features: str | None = None  # default: cnn, or the updated bundle's
    recipe: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    merge_default: bool = False
    update: str | None = None
    activate: bool = False
    jobs: int = -1
    allow_missing: bool = False
    test: tuple[Path, LabelSet] | None = None


@dataclass
class TrainResult:
    """What ``train_bundle`` did: the saved bundle and which classes it (re)trained."""

    bundle: ModelBundle
    path: Path
    classes: list[str]  # the trained head group's classes: retrained + reused + kept
    retrained: list[str]
    reused: list[str]
    kept: list[str]
    features: dict[str, Any]
    seconds: float
    test: dict[str, Any] | None = None


@dataclass
class _Previous:
    """The bundle an update starts from, and what ``autotag train`` recorded in it."""

    bundle: ModelBundle
    fingerprints: dict[str, str]
    group: str
    features: str
    recipe: dict[str, Any]


@dataclass
class _Plan:
    """Which classes an update retrains, reuses bit for bit, or keeps though not relabeled."""

    fingerprints: dict[str, str]  # every class of the trained head group, in bundle order
    retrain: list[str]
    reuse: list[str]
    keep: list[str]


def train_bundle(
    request: TrainRequest,
    models_dir: Path,
    cache_root: Path,
    *,
    limits: DecodeLimits,
    feature_options: FeatureOptions,
    progress: Progress | None = None,
) -> TrainResult:
    """Labels + images -> a new versioned bundle under models_dir/bundles/ (see module doc).

    With ``update``, classes whose fingerprint matches the old bundle are copied bit for bit,
    classes absent from these labels are kept as they were, and the rest are retrained.
    The caller passes the tagging bolt's ``limits`` and ``feature_options`` (from settings), so
    photos are decoded and featurized as tagging will.
    """
    t0 = time.perf_counter()
    old = _previous(request.update, models_dir) if request.update is not None else None
    features = _feature_name(request, old)
    head = LinearHead(**{**(old.recipe if old else {}), **request.recipe}, n_jobs=request.jobs)
    fs = get_feature_set(features, feature_options)
    if old is not None:
        bundle_feature_set(
            old.bundle, feature_options
        )  # same version and dim, or retrain from scratch

    data = load_labeled_features(
        request.labels,
        request.images_dir,
        fs,
        cache_root,
        limits=limits,
        allow_missing=request.allow_missing,
        progress=progress,
    )
    labels = data.labels
    plan = _plan(labels, class_fingerprints(labels, data.shas, fs.key, head.recipe()), old)
    if old is not None:
        note(
            progress,
            f"update {old.bundle.id}: retrain {len(plan.retrain)}, reuse {len(plan.reuse)}, "
            f"keep {len(plan.keep)} classes",
        )
    fresh = labels.select_classes(plan.retrain)
    head.fit(data.X, fresh.Y, fresh.classes, progress=progress)
    rows, per_class = _assemble(list(plan.fingerprints), head, old)

    name = bundles.safe_bundle_name(
        request.name or (old.bundle.name if old else f"{dataset_name(labels)}-{features}")
    )
    group = old.group if old else name
    bundle_id = _unique_id(models_dir, name)
    trained = ModelBundle.create(
        id=bundle_id,
        name=name,
        feature_set=fs.spec(),
        classes=list(plan.fingerprints),
        heads=[HeadGroup(group, "sigmoid", 0, len(per_class), f"autotag train ({bundle_id})")],
        dataset=_dataset(request, data, fs.key, group, head, plan.fingerprints),
        provenance=_provenance(head, old.bundle.id if old else None),
        W=rows["W"],
        b=rows["b"],
        thresholds=rows["thresholds"],
        calib_a=rows["calib_a"],
        calib_c=rows["calib_c"],
    )
    test_report = None
    if request.test is not None:
        test_images, test_labels = request.test
        test_report = evaluate_bundle(
            trained,
            Path(test_images),
            test_labels,
            cache_root,
            limits=limits,
            feature_options=feature_options,
            allow_missing=request.allow_missing,
            progress=progress,
        )
    trained.metrics = _metrics(
        per_class,
        test_report,
        {
            "seconds": round(time.perf_counter() - t0, 1),
            "jobs": request.jobs,
            "retrained": len(plan.retrain),
            "reused": len(plan.reuse),
            "kept": len(plan.keep),
            "features": data.info["features"],
        },
    )
    final = _merged(trained, old, request.merge_default, models_dir, feature_options)
    path = final.install(models_dir)
    if request.activate:
        bundles.set_active(models_dir, final.id)
    return TrainResult(
        bundle=final,
        path=path,
        classes=list(plan.fingerprints),
        retrained=plan.retrain,
        reused=plan.reuse,
        kept=plan.keep,
        features=data.info["features"],
        seconds=time.perf_counter() - t0,
        test=test_report,
    )


def _previous(ref: str, models_dir: Path) -> _Previous:
    bundle = bundles.load_bundle_ref(models_dir, ref)
    ds = bundle.dataset if isinstance(bundle.dataset, dict) else {}
    fingerprints = ds.get("fingerprints") or {}
    group = ds.get("head_group")
    if not fingerprints or group is None:
        raise AutotagError(f"bundle {bundle.id} was not made by `autotag train`: nothing to update")
    return _Previous(
        bundle, fingerprints, group, str(bundle.feature_set["name"]), ds.get("recipe", {})
    )


def _feature_name(request: TrainRequest, old: _Previous | None) -> str:
    """``--features``, else the updated bundle's, else cnn; refuse a contradiction."""
    features = request.features
    if old is not None:
        if features is not None and features != old.features:
            raise AutotagError(
                f"--update {old.bundle.id} uses {old.features} features, not {features}"
            )
        features = old.features
    features = features or "cnn"
    if request.merge_default and features != "cnn":
        raise AutotagError("--merge-default needs --features cnn (the ImageNet heads read cnn)")
    return features


def _plan(labels: LabelSet, fps: dict[str, str], old: _Previous | None) -> _Plan:
    """Unchanged fingerprint: reuse; not in these labels: keep as it was; else retrain."""
    old_fps = old.fingerprints if old else {}
    reuse = [c for c in labels.classes if old_fps.get(c) == fps[c]]
    keep = [c for c in old_fps if c not in fps]
    retrain = [c for c in labels.classes if c not in set(reuse)]
    fingerprints = {**fps, **{c: old_fps[c] for c in keep}}
    return _Plan(fingerprints, retrain, reuse, keep)


def class_fingerprints(
    labels: LabelSet, shas: Sequence[str], feature_key: str, recipe: Mapping[str, Any]
) -> dict[str, str]:
    """Per class: sha256 of its sorted (photo sha256, label) pairs + feature set + recipe."""
    if len(shas) != labels.n_photos:
        raise ValueError("one sha per photo")
    # 60 bits of each photo hash, shifted to make room for the label bit: sortable integers.
    h64 = np.asarray([int(s[:15], 16) for s in shas], dtype=np.int64)
    prefix = json.dumps({"features": feature_key, **recipe}, sort_keys=True).encode()
    out = {}
    for j, c in enumerate(labels.classes):
        col = labels.Y[:, j]
        m = col >= 0
        keys = np.unique(h64[m] * 2 + col[m].astype(np.int64))
        out[c] = bytes_sha256(prefix + keys.astype("<i8").tobytes())
    return out


def _assemble(
    classes: list[str], head: LinearHead, old: _Previous | None
) -> tuple[bundle_edit.Rows, dict[str, dict[str, Any]]]:
    """Bundle rows and per-class metrics: fitted classes from head, the others copied from the
    old bundle bit for bit (with their old metrics, marked ``reused_from``)."""
    fitted = {c: i for i, c in enumerate(head.classes_)}
    new_rows = bundle_edit.head_rows(head)
    old_rows = bundle_edit.bundle_rows(old.bundle) if old else {}
    old_index = {c: i for i, c in enumerate(old.bundle.classes)} if old else {}
    old_per_class = (old.bundle.metrics or {}).get("per_class", {}) if old else {}
    picks, per_class = [], {}
    for c in classes:
        if c in fitted:
            rows, i = new_rows, fitted[c]
            metrics = head.class_metrics_[c]
        else:
            assert old is not None  # a class that is not refitted comes from the old bundle
            rows, i = old_rows, old_index[c]
            metrics = {
                **{k: v for k, v in old_per_class.get(c, {}).items() if k != "threshold"},
                "reused_from": old.bundle.id,
            }
        picks.append((rows, i))
        per_class[c] = {**metrics, "threshold": round(float(rows["thresholds"][i]), 6)}
    return bundle_edit.gather_rows(picks, head.n_features_in_), per_class


def _merged(
    trained: ModelBundle,
    old: _Previous | None,
    merge_default: bool,
    models_dir: Path,
    feature_options: FeatureOptions,
) -> ModelBundle:
    """trained plus the old bundle's other head groups, or plus the pretrained default (built
    from the same ONNX file the cnn features come from)."""
    if old is not None:
        extra_groups = [h.group for h in old.bundle.heads if h.group != old.group]
        if extra_groups:
            extra = bundle_edit.sub_bundle(old.bundle, extra_groups)
            return bundle_edit.merge_beside(trained, extra)
    if merge_default:
        default_id = build_default_bundle(models_dir, onnx_model_path(feature_options.model_dirs))
        default = bundles.load_bundle(models_dir, default_id)
        return bundle_edit.merge_beside(trained, default)
    return trained


def summarize(per_class: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Bundle-level training summary (what ``models list`` shows)."""
    metrics = list(per_class.values())
    trained = [m for m in metrics if m.get("status") == "trained"]
    reached = [m for m in trained if str(m.get("threshold_rule", "")).startswith("precision")]
    aps = [m["val_ap"] for m in trained if "val_ap" in m]
    return {
        "classes": len(metrics),
        "trained": len(trained),
        "skipped": len(metrics)
        - len(trained)
        - sum(1 for m in metrics if m.get("status") == "reused"),
        "val_map": round(float(np.mean(aps)), 4) if aps else None,
        "target_precision_reached": len(reached),
        "not_converged": sum(1 for m in trained if not m.get("converged", True)),
    }


def _metrics(
    per_class: dict[str, dict[str, Any]],
    test_report: dict[str, Any] | None,
    training: dict[str, Any],
) -> dict[str, Any]:
    summary = summarize(per_class)
    metrics: dict[str, Any] = {}
    if test_report is not None:
        for key in ("top1_accuracy", "map", "macro_f1"):
            if test_report["summary"].get(key) is not None:
                metrics[f"test_{key}"] = test_report["summary"][key]
    metrics["val_map"] = summary["val_map"]
    metrics["validation"] = summary
    if test_report is not None:
        metrics["test"] = {**test_report["summary"], "data": test_report["data"]}
    metrics["training"] = training
    metrics["per_class"] = per_class
    return metrics


def _dataset(
    request: TrainRequest,
    data: LabeledFeatures,
    feature_key: str,
    group: str,
    head: LinearHead,
    fingerprints: dict[str, str],
) -> dict[str, Any]:
    """The manifest's ``dataset``: what was trained on, and what ``--update`` reads back."""
    counts = data.labels.counts()
    return {
        "name": dataset_name(data.labels),
        "labels": data.labels.source,
        "images": str(request.images_dir),
        "photos": data.labels.n_photos,
        **{k: v for k, v in data.info.items() if k != "features"},
        "classes": len(fingerprints),
        "positives": int(sum(v["pos"] for v in counts.values())),
        "negatives": int(sum(v["neg"] for v in counts.values())),
        "feature_set": feature_key,
        "head_group": group,
        "recipe": head.recipe(),
        "fingerprints": fingerprints,
    }


def _provenance(head: LinearHead, updated_from: str | None) -> dict[str, Any]:
    import sklearn

    provenance = {
        "trainer": TRAINER,
        "classifier": "one-vs-rest sklearn LogisticRegression(lbfgs, class_weight='balanced') "
        "on standardized features, folded into z = W.x - b",
        "calibration": "Platt sigmoid(calib_a*z + calib_c) fitted on each class's validation split",
        "thresholds": f"calibrated probability; lowest reaching precision "
        f">= {head.target_precision:g} on validation, else best F1 (per_class threshold_rule)",
        "sklearn": sklearn.__version__,
    }
    if updated_from is not None:
        provenance["updated_from"] = updated_from
    return provenance


def _unique_id(models_dir: Path, name: str) -> str:
    base = bundles.new_bundle_id(name)
    candidate, n = base, 1
    while bundles.bundle_dir(models_dir, candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate
