"""Bundle surgery: rows from a trained head or an older bundle, sub-bundles, merges.

Training builds a new bundle from parts: freshly fitted rows, rows copied bit for bit from the
bundle being updated, the old bundle's other head groups, or the pretrained default bundle.
Every result is a new validated ``ModelBundle``; the inputs are never changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from autotag.learning.head import LinearHead
from autotag.vision.bundle import ARRAYS, HeadGroup, ModelBundle

Rows = dict[str, np.ndarray]  # the bundle's per-class arrays (see vision.bundle.ARRAYS)


def head_rows(head: LinearHead) -> Rows:
    """A fitted head as bundle arrays: ``W = coef_``, ``b = −intercept_``, calibration, thresholds."""
    return {
        "W": head.coef_,
        "b": -head.intercept_,
        "thresholds": head.threshold_,
        "calib_a": head.calib_a_,
        "calib_c": head.calib_c_,
    }


def bundle_rows(bundle: ModelBundle) -> Rows:
    return {key: getattr(bundle, key) for key in ARRAYS}


def gather_rows(picks: Sequence[tuple[Rows, int]], dim: int) -> Rows:
    """Bundle arrays whose row i is row ``picks[i][1]`` of ``picks[i][0]``, copied bit for bit."""
    out: Rows = {"W": np.zeros((len(picks), dim), dtype=np.float32)}
    out.update({key: np.zeros(len(picks), dtype=np.float32) for key in ARRAYS if key != "W"})
    for i, (rows, j) in enumerate(picks):
        for key in ARRAYS:
            out[key][i] = rows[key][j]
    return out


def _with_rows(bundle: ModelBundle, heads: list[HeadGroup], cols: list[int]) -> ModelBundle:
    """A copy of bundle keeping only rows ``cols`` (in order), laid out as ``heads``."""
    idx = np.asarray(cols, dtype=np.int64)
    return ModelBundle.create(
        **_concepts_over(bundle, idx),
        name=bundle.name,
        feature_set=bundle.feature_set,
        classes=[bundle.classes[i] for i in idx],
        heads=heads,
        W=bundle.W[idx],
        b=bundle.b[idx],
        thresholds=bundle.thresholds[idx],
        calib_a=bundle.calib_a[idx],
        calib_c=bundle.calib_c[idx],
        detectors=bundle.detectors,
        metrics=bundle.metrics,
        dataset=bundle.dataset,
        provenance=bundle.provenance,
        id=bundle.id,
        version=bundle.version,
        created=bundle.created,
    )


def _concepts_over(bundle: ModelBundle, idx: np.ndarray) -> dict[str, Any]:
    """The bundle's concepts over the kept columns ``idx``: a concept none of whose classes
    is kept goes (a trained head merged beside this keeps its everyday words)."""
    kept = {bundle.classes[i] for i in idx}
    out: dict[str, Any] = {
        "class_words": {c: w for c, w in bundle.class_words.items() if c in kept}
    }
    if bundle.concepts:
        matrix, thresholds = bundle.concept_arrays()
        M = matrix[:, idx]
        live = np.flatnonzero(M.any(axis=1))
        if live.size:
            out["concepts"] = [
                dataclasses.replace(bundle.concepts[i], leaves=int(np.count_nonzero(M[i])))
                for i in live
            ]
            out["concept_matrix"] = M[live]
            out["concept_thresholds"] = thresholds[live]
    return out


def sub_bundle(bundle: ModelBundle, groups: Sequence[str]) -> ModelBundle:
    """Only the named head groups of a bundle (to carry them into a new one)."""
    heads: list[HeadGroup] = []
    cols: list[int] = []
    pos = 0
    for h in bundle.heads:
        if h.group in groups:
            n = h.stop - h.start
            heads.append(dataclasses.replace(h, start=pos, stop=pos + n))
            cols.extend(range(h.start, h.stop))
            pos += n
    return _with_rows(bundle, heads, cols)


def drop_classes(bundle: ModelBundle, names: set[str]) -> ModelBundle:
    """A copy of bundle without some classes (trained tags replace same-named default ones)."""
    if not names:
        return bundle
    heads, cols, pos = [], [], 0
    for h in bundle.heads:
        keep = [i for i in range(h.start, h.stop) if bundle.classes[i] not in names]
        if keep:
            heads.append(dataclasses.replace(h, start=pos, stop=pos + len(keep)))
            cols.extend(keep)
            pos += len(keep)
    return _with_rows(bundle, heads, cols)


def merge_beside(trained: ModelBundle, other: ModelBundle) -> ModelBundle:
    """trained's heads, then other's, under trained's id, name, metrics and dataset.

    A tag has one meaning: other's classes that trained also has are dropped from other
    (the provenance lists them as ``replaced_default_tags``).
    """
    clash = set(trained.classes) & set(other.classes)
    other = drop_classes(other, clash)
    merged = trained.merge(other, id=trained.id, name=trained.name)
    merged.metrics = trained.metrics
    merged.dataset = trained.dataset
    merged.provenance = {
        **trained.provenance,
        "merged_with": other.id,
        "merged_heads": [h.group for h in other.heads],
        "replaced_default_tags": sorted(clash),
        "merged_provenance": other.provenance.get("parts", {}).get(other.id, other.provenance),
    }
    return merged
