"""The feature-set registry: a name (``cnn``, ``hog``, ``cnn+hog``, ``net:<bundle id>`` …) →
its loaded FeatureSet, built once per process and shared.

Kept apart from the feature sets themselves so that a trained network whose vectors start
from another set (``vision/network_features.py``) is handed that set by the registry rather
than importing it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from autotag.errors import ModelError
from autotag.vision.features import (
    BACKBONES,
    FEATURE_SPECS,
    NETWORK_PREFIX,
    CnnFeatures,
    ConcatFeatures,
    FeatureSet,
    HogFeatures,
    feature_set_spec,
    onnx_model_path,
)
from autotag.vision.network_features import NetworkFeatures


@dataclass(frozen=True)
class FeatureOptions:
    """How this process loads feature sets: the directories searched, in order, for the
    CNN's ONNX file, and the threads ONNX Runtime may use (per tagging process)."""

    model_dirs: tuple[Path, ...]
    threads: int


_CACHE: dict[tuple[str, str, int], FeatureSet] = {}
_LOCK = threading.Lock()


def _build(name: str, options: FeatureOptions) -> FeatureSet:
    if name in BACKBONES:
        backbone = BACKBONES[name]
        path = onnx_model_path(options.model_dirs, backbone)
        return CnnFeatures(path, threads=options.threads, backbone=backbone)
    if name == "hog":
        return HogFeatures()
    if name == "cnn+hog":
        parts = [get_feature_set("cnn", options), get_feature_set("hog", options)]
        return ConcatFeatures("cnn+hog", parts)
    if name.startswith(NETWORK_PREFIX):
        return NetworkFeatures(
            name,
            options.model_dirs,
            threads=options.threads,
            base_sets=lambda base: get_feature_set(base, options),
        )
    raise ModelError(f"unknown feature set {name!r} (known: {', '.join(FEATURE_SPECS)})")


def get_feature_set(name: str, options: FeatureOptions) -> FeatureSet:
    """The named feature set, loaded once per process (models are shared, thread-safe)."""
    if name.startswith(NETWORK_PREFIX):
        model_key = "|".join(str(d) for d in options.model_dirs)
    else:
        feature_set_spec(name)  # unknown names fail fast with the list of known ones
        parts = name.split("+")
        model_key = ";".join(
            str(onnx_model_path(options.model_dirs, BACKBONES[p])) for p in parts if p in BACKBONES
        )
    key = (name, model_key, options.threads)
    with _LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    fs = _build(name, options)
    with _LOCK:
        return _CACHE.setdefault(key, fs)


def available_feature_sets() -> list[str]:
    return list(FEATURE_SPECS)
