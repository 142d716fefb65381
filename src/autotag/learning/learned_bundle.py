"""Learned tags as a bundle: the active bundle's own heads, then one sigmoid head group
``learned`` whose rows read the L2-normalized vector (``HeadGroup.input = "l2"``, the form
stored in ``photo_vectors``), so the bolts and the re-scoring of stored vectors compute the
same probabilities.

A new bundle is made for every change (a tag learned again, learned for the first time, or
forgotten): the base heads copied bit for bit, the learned rows of unchanged tags too. A
learned tag named like one of the base's classes replaces it (one meaning per tag); the base
class comes back, as the bundle the learner started from had it, once that learned tag is
forgotten (``origin``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from autotag.errors import ModelError
from autotag.learning.bundle_edit import drop_classes, sub_bundle
from autotag.learning.learner import TagFit
from autotag.vision.bundle import (
    LEARNED_GROUP,
    HeadGroup,
    ModelBundle,
    list_bundles,
    load_bundle,
    safe_bundle_name,
)

Row = dict[str, Any]  # W (d,), b, calib_a, calib_c, thresholds as float32 values


def learned_rows(bundle: ModelBundle) -> dict[str, Row]:
    """The learned group's rows of a bundle, by tag."""
    out: dict[str, Row] = {}
    for h in bundle.heads:
        if h.group == LEARNED_GROUP:
            for i in range(h.start, h.stop):
                out[bundle.classes[i]] = {
                    "W": bundle.W[i].copy(),
                    "b": np.float32(bundle.b[i]),
                    "calib_a": np.float32(bundle.calib_a[i]),
                    "calib_c": np.float32(bundle.calib_c[i]),
                    "thresholds": np.float32(bundle.thresholds[i]),
                }
    return out


def fit_row(fit: TagFit) -> Row:
    assert fit.w is not None
    return {
        "W": np.asarray(fit.w, np.float32),
        "b": np.float32(fit.b),
        "calib_a": np.float32(fit.calib_a),
        "calib_c": np.float32(fit.calib_c),
        "thresholds": np.float32(fit.threshold),
    }


def row_probabilities(row: Row, X: np.ndarray) -> np.ndarray:
    """A learned row's probabilities for rows X (normalized here, as the bundle does)."""
    from autotag.learning.learner import l2
    from autotag.vision.bundle import calibrated_sigmoid

    z = l2(X) @ row["W"] - row["b"]
    return calibrated_sigmoid(z, row["calib_a"], row["calib_c"])


def base_of(bundle: ModelBundle) -> ModelBundle:
    """The bundle without its learned head group."""
    groups = [h.group for h in bundle.heads if h.group != LEARNED_GROUP]
    if len(groups) == len(bundle.heads):
        return bundle
    return sub_bundle(bundle, groups)


def origin(models_dir: Path, bundle: ModelBundle) -> ModelBundle:
    """The bundle the learner's chain of published bundles started from (through each
    one's ``based_on``), or ``bundle`` itself if the learner did not publish it. A bundle
    of the chain no longer installed ends the walk there."""
    seen: set[str] = set()
    while bundle.id not in seen:
        seen.add(bundle.id)
        made = bundle.provenance or {}
        if not made.get("learned_from_labels") or not made.get("based_on"):
            break
        try:
            bundle = load_bundle(models_dir, str(made["based_on"]))
        except (ModelError, OSError):
            break
    return bundle


def _restored(base: ModelBundle, first: ModelBundle, keep_out: set[str]) -> ModelBundle:
    """``base`` with the classes the chain's first bundle had and a learned tag replaced
    since (not in ``keep_out``, the learned tags kept): ``first``'s base heads, with
    ``base``'s thresholds (recalibrations) for the classes both have."""
    first_base = base_of(first)
    missing = set(first_base.classes) - set(base.classes) - keep_out
    if not missing or first_base.feature_key != base.feature_key:
        return base
    out = drop_classes(sub_bundle(first_base, [h.group for h in first_base.heads]), keep_out)
    out.thresholds = np.array(out.thresholds, np.float32, copy=True)
    for i, name in enumerate(out.classes):
        if name in base.classes:
            out.thresholds[i] = base.thresholds[base.classes.index(name)]
    if out.concept_thresholds is not None and base.concept_thresholds is not None:
        if [c.tag for c in out.concepts] == [c.tag for c in base.concepts]:
            out.concept_thresholds = np.array(base.concept_thresholds, np.float32, copy=True)
    out.metrics = dict(base.metrics)
    return out


def versions_learning(models_dir: Path, tag: str) -> list[str]:
    """The installed bundles whose learned group has ``tag`` (read from their manifests):
    the model versions under which a stored tag of that name is a learned one."""
    out = []
    for m in list_bundles(models_dir):
        classes = m.get("classes") or []
        for h in m.get("heads") or []:
            if h.get("group") == LEARNED_GROUP and tag in classes[h["start"] : h["stop"]]:
                out.append(str(m["id"]))
    return out


def current_versions(models_dir: Path, active_id: str) -> list[str]:
    """The bundle ids whose photos need no re-tagging for ``active_id``: the active bundle,
    and when the learner published it, the bundle it was learned from and every bundle
    learned from that one. Publishing learned tags re-scores every stored vector under the
    photo's own model version, so only another base (another network or vocabulary) leaves
    a photo's tags stale."""
    manifests = {str(m["id"]): m for m in list_bundles(models_dir) if "error" not in m}

    def root(bundle_id: str) -> str:
        seen: set[str] = set()
        while bundle_id in manifests and bundle_id not in seen:
            seen.add(bundle_id)
            made = manifests[bundle_id].get("provenance") or {}
            if not made.get("learned_from_labels") or not made.get("based_on"):
                break
            bundle_id = str(made["based_on"])
        return bundle_id

    made = (manifests.get(active_id) or {}).get("provenance") or {}
    if not made.get("learned_from_labels"):
        # Activated by hand, not published by the learner: nothing re-scored the photos
        # on other versions (their learned tags are not this bundle's).
        return [active_id]
    base = root(active_id)
    return sorted({active_id, base} | {b for b in manifests if root(b) == base})


def learned_bundle_id(name: str, when: datetime | None = None) -> str:
    when = when or datetime.now(UTC)
    base = safe_bundle_name(name.split("+learned")[0])[:80]
    return f"{base}+learned-{when:%Y%m%d-%H%M%S-%f}"


def compose(
    active: ModelBundle,
    rows: Mapping[str, Row],
    metrics: Mapping[str, dict[str, Any]],
    first: ModelBundle | None = None,
) -> ModelBundle:
    """A new bundle: ``active``'s base heads, then a learned group with ``rows`` (by tag).
    ``first``: the bundle the learner's chain started from (``origin``), whose classes that
    a learned tag no longer in ``rows`` had replaced come back."""
    base = base_of(active)
    if first is not None:
        base = _restored(base, first, set(rows))
    if not rows:
        out = ModelBundle.create(
            name=base.name,
            feature_set=base.feature_set,
            classes=base.classes,
            heads=base.heads,
            W=base.W,
            b=base.b,
            thresholds=base.thresholds,
            calib_a=base.calib_a,
            calib_c=base.calib_c,
            detectors=base.detectors,
            metrics=base.metrics,
            dataset=base.dataset,
            concepts=base.concepts,
            concept_matrix=base.concept_matrix,
            concept_thresholds=base.concept_thresholds,
            class_words=base.class_words,
            class_is=base.class_is,
            id=learned_bundle_id(base.name),
        )
    else:
        tags = sorted(rows)
        base = drop_classes(base, set(tags) & set(base.classes))
        part = ModelBundle.create(
            name=base.name,
            feature_set=base.feature_set,
            classes=tags,
            heads=[HeadGroup(LEARNED_GROUP, "sigmoid", 0, len(tags), "labels", input="l2")],
            W=np.stack([rows[t]["W"] for t in tags]),
            b=np.asarray([rows[t]["b"] for t in tags], np.float32),
            thresholds=np.asarray([rows[t]["thresholds"] for t in tags], np.float32),
            calib_a=np.asarray([rows[t]["calib_a"] for t in tags], np.float32),
            calib_c=np.asarray([rows[t]["calib_c"] for t in tags], np.float32),
            class_words={t: [t] for t in tags},
        )
        out = base.merge(part, id=learned_bundle_id(base.name), name=base.name)
        out.metrics = {k: v for k, v in base.metrics.items() if k != "learned"}
        out.dataset = base.dataset
    out.metrics["learned"] = {t: dict(metrics.get(t, {})) for t in sorted(rows)}
    out.provenance = {
        "learned_from_labels": True,
        "based_on": active.id,
        "base_provenance": active.provenance.get("base_provenance", active.provenance),
    }
    return out


def with_thresholds(bundle: ModelBundle, thresholds: Mapping[str, float]) -> ModelBundle:
    """A new bundle version (id, provenance) with these model tags' thresholds raised: a leaf
    class's (``thresholds``) or a concept's (``concept_thresholds``); the learned group and
    everything else unchanged. Unknown tags are an error."""
    rows = learned_rows(bundle)
    metrics = dict(bundle.metrics.get("learned") or {})
    out = compose(bundle, rows, metrics)
    out.metrics = dict(out.metrics)
    out.thresholds = np.array(out.thresholds, np.float32, copy=True)
    concepts = [c.tag for c in out.concepts]
    if out.concept_thresholds is not None:
        out.concept_thresholds = np.array(out.concept_thresholds, np.float32, copy=True)
    done = {}
    for tag, thr in thresholds.items():
        if tag in rows:
            raise ValueError(f"{tag} is a learned tag: learn it again instead")
        if tag in out.classes:
            out.thresholds[out.classes.index(tag)] = np.float32(thr)
        elif tag in concepts and out.concept_thresholds is not None:
            out.concept_thresholds[concepts.index(tag)] = np.float32(thr)
        else:
            raise ValueError(f"{tag} is not a tag of bundle {bundle.id}")
        done[tag] = float(thr)
    out.metrics["recalibrated"] = {
        **dict(bundle.metrics.get("recalibrated") or {}),
        **done,
    }
    return out
