"""Tagger: bundle + feature set + detectors → tags and a vector for each photo.

One Tagger is built per process (the daemonized autotag bolt holds one) because loading the
CNN and the bundle is the expensive part; tagging is then a batch of feature extraction,
one matrix product, and face detection (``autotag.vision.faces``).

Everything it needs arrives as values (decode limits, feature options, tag cut-offs), so
two Taggers with different limits in one process each keep their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autotag.errors import ModelError
from autotag.vision.bundle import ModelBundle, load_active, load_bundle
from autotag.vision.decode import DecodedImage, DecodeLimits, decode, decode_file
from autotag.vision.faces import FaceDetector, single_threaded_blas
from autotag.vision.features import (
    FeatureOptions,
    FeatureSet,
    as_bgr,
    get_feature_set,
    l2_normalize,
)

KNOWN_DETECTORS = ("face",)


@dataclass
class TagResult:
    """What the autotag bolt emits for a photo (see the tuple contract)."""

    tags: list[tuple[str, float]]
    vector: np.ndarray
    model_version: str
    feature_set: str
    width: int
    height: int

    def tags_json(self) -> list[list[object]]:
        return [[t, float(s)] for t, s in self.tags]


class Tagger:
    """Holds a bundle, its feature set and its detectors; tags photos in batches."""

    def __init__(
        self,
        bundle: ModelBundle,
        feature_set: FeatureSet,
        limits: DecodeLimits,
        *,
        min_score: float,
        max_tags: int,
        face: FaceDetector | None = None,
        reduced_decode: bool = True,
    ) -> None:
        self.bundle = bundle
        # JPEGs are decoded only as large as the feature set needs (0: always full size).
        self.min_side = feature_set.min_side if reduced_decode else 0
        self.features = feature_set
        self.limits = limits
        if (feature_set.name, feature_set.version, feature_set.dim) != (
            str(bundle.feature_set["name"]),
            str(bundle.feature_set["version"]),
            int(bundle.feature_set["dim"]),
        ):
            raise ModelError(
                f"bundle {bundle.id} was built for {bundle.feature_key} "
                f"(dim {bundle.feature_set['dim']}), this process has {feature_set.key} "
                f"(dim {feature_set.dim})"
            )
        unknown = [d for d in bundle.detectors if d not in KNOWN_DETECTORS]
        if unknown:
            raise ModelError(f"bundle {bundle.id} wants unknown detectors {unknown}")
        if "face" in bundle.detectors and face is None:
            raise ModelError(f"bundle {bundle.id} needs a face detector; none was given")
        self.face = face if "face" in bundle.detectors else None
        self.min_score = min_score
        self.max_tags = max_tags

    @classmethod
    def load(
        cls,
        models_dir: str | Path,
        bundle_id: str | None = None,
        *,
        feature_options: FeatureOptions,
        limits: DecodeLimits,
        min_score: float,
        max_tags: int,
        reduced_decode: bool = True,
    ) -> Tagger:
        """Bundle ``bundle_id`` of ``models_dir`` (the active one by default) with the feature
        set and detectors it needs, loaded."""
        bundle = (
            load_active(models_dir) if bundle_id is None else load_bundle(models_dir, bundle_id)
        )
        features = get_feature_set(str(bundle.feature_set["name"]), feature_options)
        face = FaceDetector.load(feature_options.model_dirs) if "face" in bundle.detectors else None
        return cls(
            bundle,
            features,
            limits,
            min_score=min_score,
            max_tags=max_tags,
            face=face,
            reduced_decode=reduced_decode,
        )

    @property
    def model_version(self) -> str:
        return self.bundle.id

    def _merge_tags(self, *lists: list[tuple[str, float]]) -> list[tuple[str, float]]:
        best: dict[str, float] = {}
        for lst in lists:
            for tag, score in lst:
                best[tag] = max(score, best.get(tag, 0.0))
        ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
        return ranked[: self.max_tags]

    def tag_images(self, images: Sequence[np.ndarray]) -> list[TagResult]:
        """Tag decoded BGR images; features are extracted in one batch."""
        images = [as_bgr(im) for im in images]
        if not images:
            return []
        with single_threaded_blas():
            return self._tag_images(images)

    def _tag_images(self, images: list[np.ndarray]) -> list[TagResult]:
        X = self.features.extract(images)
        probs = self.bundle.score(X)
        vectors = l2_normalize(X)
        out = []
        for i, img in enumerate(images):
            tags = self.bundle.tags_for(probs[i], self.min_score, self.max_tags)
            extra = self.face.tags(img) if self.face is not None else []
            out.append(
                TagResult(
                    tags=self._merge_tags(tags, extra),
                    vector=vectors[i],
                    model_version=self.bundle.id,
                    feature_set=self.features.key,
                    width=int(img.shape[1]),
                    height=int(img.shape[0]),
                )
            )
        return out

    def tag_decoded(self, decoded: DecodedImage) -> TagResult:
        result = self.tag_images([decoded.bgr])[0]
        result.width, result.height = decoded.width, decoded.height  # the photo's own size
        return result

    def tag_bytes(self, data: bytes) -> TagResult:
        """Decode (within this Tagger's limits) and tag; a bad image raises ImageError."""
        return self.tag_decoded(decode(data, self.limits, min_side=self.min_side))

    def tag_file(self, path: str | Path) -> TagResult:
        """tag_bytes() for a file; an oversized file is refused before it is read."""
        return self.tag_decoded(decode_file(path, self.limits, min_side=self.min_side))


__all__ = ["TagResult", "Tagger"]
