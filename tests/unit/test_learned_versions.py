"""Which bundles' photos need re-tagging: publishing learned tags re-scores every stored
vector, so photos on the base a published bundle was learned from (or on an earlier learned
version of it) are current; photos on another base (another network or vocabulary) are
backlog."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autotag.learning.learned_bundle import (
    compose,
    current_versions,
    learned_rows,
    origin,
    with_thresholds,
)
from autotag.vision.bundle import HeadGroup, ModelBundle, set_active

D = 8


def _base(bundle_id: str) -> ModelBundle:
    rng = np.random.default_rng(len(bundle_id))
    return ModelBundle.create(
        id=bundle_id,
        name="base",
        feature_set={"name": "synthetic", "version": "1", "dim": D},
        classes=["a", "b", "c"],
        heads=[HeadGroup("imagenet", "softmax", 0, 3)],
        W=rng.normal(size=(3, D)),
        b=np.zeros(3),
    )


def _row() -> dict[str, object]:
    w = np.ones(D, np.float32) / D
    one = np.float32(1.0)
    return {"W": w, "b": np.float32(0), "calib_a": one, "calib_c": np.float32(0),
            "thresholds": np.float32(0.5)}  # fmt: skip


def test_photos_on_the_learned_from_base_are_current_another_base_is_backlog(
    tmp_path: Path,
) -> None:
    old_vocabulary = _base("default-v3-aaaaaaaa")
    new_vocabulary = _base("default-v3-bbbbbbbb")
    for b in (old_vocabulary, new_vocabulary):
        b.install(tmp_path)
    first = compose(new_vocabulary, {"bloomy": _row()}, {})
    first.install(tmp_path)
    second = compose(first, {"bloomy": _row(), "zork": _row()}, {})
    second.install(tmp_path)
    set_active(tmp_path, second.id)

    current = current_versions(tmp_path, second.id)
    assert set(current) == {new_vocabulary.id, first.id, second.id}
    assert old_vocabulary.id not in current
    # learned from the old vocabulary: its own family, not the active one's
    other = compose(old_vocabulary, {"bloomy": _row()}, {})
    other.install(tmp_path)
    assert other.id not in current_versions(tmp_path, second.id)
    assert set(current_versions(tmp_path, other.id)) == {old_vocabulary.id, other.id}
    # a plain bundle activated by hand: nothing re-scored the photos on the learned ones
    assert current_versions(tmp_path, new_vocabulary.id) == [new_vocabulary.id]


def test_a_base_class_replaced_by_a_learned_tag_comes_back_when_it_is_forgotten(
    tmp_path: Path,
) -> None:
    """A learned tag named like a base class replaces it; forgetting the learned tag brings
    the class back as the first bundle had it, with the recalibrations made since."""
    base = _base("base-v1")
    base.install(tmp_path)
    taught = compose(base, {"b": _row()}, {}, origin(tmp_path, base))
    taught.install(tmp_path)
    assert [c for c in taught.classes if c == "b"] == ["b"]  # one "b": the learned one
    assert learned_rows(taught).keys() == {"b"}
    raised = with_thresholds(taught, {"a": 0.75})  # a correction of "a" since
    raised.install(tmp_path)
    assert origin(tmp_path, raised).id == "base-v1"

    forgot = compose(raised, {}, {}, origin(tmp_path, raised))
    assert sorted(forgot.classes) == ["a", "b", "c"] and not learned_rows(forgot)
    i, j = forgot.classes.index("b"), base.classes.index("b")
    assert np.array_equal(forgot.W[i], base.W[j]) and forgot.b[i] == base.b[j]
    assert [(h.group, h.activation) for h in forgot.heads] == [("imagenet", "softmax")]
    assert forgot.thresholds[forgot.classes.index("a")] == np.float32(0.75)
    # Without the chain's first bundle (the old behaviour) it stays gone.
    assert "b" not in compose(raised, {}, {}).classes
