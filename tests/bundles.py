"""Model bundles the unit tests share: settings whose models folder holds the default bundle
(built from the packaged backbone, as `autotag models init` does), and a small HOG bundle
with random weights for what needs a bundle but not a good one."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from autotag.config import Settings, load_settings
from autotag.vision.bundle import HeadGroup, ModelBundle
from autotag.vision.features import feature_set_spec, onnx_model_path
from autotag.vision.imagenet import build_default_bundle


def with_default_bundle(models_dir: Path) -> Settings:
    """The environment's settings with this (empty) models folder, the default bundle built
    into it."""
    s = load_settings({**os.environ, "AUTOTAG_MODELS_DIR": str(models_dir)})
    build_default_bundle(models_dir, onnx_model_path(s.model_dirs))
    return s


def hog_bundle(bundle_id: str, name: str, seed: int) -> ModelBundle:
    """A two-class ("bright", "dark") softmax bundle on HOG features, random weights."""
    spec = feature_set_spec("hog")
    rng = np.random.default_rng(seed)
    return ModelBundle.create(
        id=bundle_id,
        name=name,
        feature_set=spec,
        classes=["bright", "dark"],
        heads=[HeadGroup("tone", "softmax", 0, 2)],
        W=rng.normal(size=(2, spec["dim"])),
        b=np.zeros(2),
        thresholds=np.zeros(2),
    )
