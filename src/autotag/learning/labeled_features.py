"""Labeled photos as a feature matrix: ids resolved to files, featurized through the cache.

Training, cross-validation and evaluation read photos the same way, with the bolt's own
decode and feature code: a missing file is an error unless allowed, an undecodable photo is
dropped and counted, and features already in the cache are not computed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autotag.errors import AutotagError, ModelError
from autotag.learning.datasets import LabelSet, resolve_photos
from autotag.learning.feature_cache import featurize
from autotag.learning.progress import Progress
from autotag.vision.bundle import ModelBundle
from autotag.vision.decode import DecodeLimits
from autotag.vision.feature_sets import FeatureOptions, get_feature_set
from autotag.vision.features import FeatureSet


@dataclass
class LabeledFeatures:
    """The usable photos: their labels, features (n, d) and content sha256s, in one order.

    ``info`` says what was left out: ``photos_missing``, ``photos_undecodable`` (with up to
    five ``undecodable_examples``) and the feature cache's ``features`` statistics.
    """

    labels: LabelSet
    X: np.ndarray
    shas: list[str]
    info: dict[str, Any]


def load_labeled_features(
    labels: LabelSet,
    images_dir: Path,
    feature_set: FeatureSet,
    cache_root: Path,
    *,
    limits: DecodeLimits,
    allow_missing: bool = False,
    progress: Progress | None = None,
) -> LabeledFeatures:
    """Resolve the labeled photos under images_dir and featurize them (cached)."""
    paths, missing = resolve_photos(images_dir, labels.photo_ids, allow_missing=allow_missing)
    found = [(i, p) for i, p in enumerate(paths) if p is not None]
    have = [i for i, _ in found]
    labels = labels.subset(have)
    fr = featurize([p for _, p in found], feature_set, cache_root, limits=limits, progress=progress)
    ok = np.flatnonzero(fr.ok)
    if ok.size == 0:
        raise AutotagError(f"none of the {len(have)} photos under {images_dir} could be decoded")
    info = {
        "photos_missing": len(missing),
        "photos_undecodable": int(len(have) - ok.size),
        "undecodable_examples": [
            f"{labels.photo_ids[i]}: {why}" for i, why in list(fr.reasons.items())[:5]
        ],
        "features": fr.stats(),
    }
    return LabeledFeatures(labels.subset(ok), fr.X[ok], [fr.shas[i] for i in ok], info)


def bundle_feature_set(bundle: ModelBundle, options: FeatureOptions) -> FeatureSet:
    """The feature set a bundle was trained on; refuse a version or dim mismatch."""
    fs = get_feature_set(str(bundle.feature_set["name"]), options)
    want = (str(bundle.feature_set["version"]), int(bundle.feature_set["dim"]))
    if (str(fs.version), int(fs.dim)) != want:
        raise ModelError(
            f"bundle {bundle.id} needs {bundle.feature_key} (dim {want[1]}); "
            f"this code has {fs.name}@{fs.version} (dim {fs.dim}): retrain it"
        )
    return fs
