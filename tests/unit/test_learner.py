"""The learner on clustered vectors: five examples of a kind learn a tag, five unrelated
ones do not; the learned head in a bundle scores raw vectors as the re-scoring pass scores
the stored (normalized) ones; the shadow check refuses a candidate that gets an existing
tag's labels wrong."""

from __future__ import annotations

import numpy as np

from autotag.learning.learned_bundle import compose, fit_row, learned_rows
from autotag.learning.learner import LearnOptions, fit_tag, l2, shadow_check
from autotag.learning.teach import score_chunk, stack_rows
from autotag.vision.bundle import LEARNED_GROUP, HeadGroup, ModelBundle

D = 64


def _clusters(n_clusters: int = 8, per: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, D))
    X = np.concatenate([c + 0.35 * rng.normal(size=(per, D)) for c in centres])
    y = np.repeat(np.arange(n_clusters), per)
    # Stored vectors are L2-normalized; raw ones are not: scale rows at random.
    return (X * rng.uniform(0.5, 3.0, size=(len(X), 1))).astype(np.float32), y


def _base() -> ModelBundle:
    rng = np.random.default_rng(1)
    return ModelBundle.create(
        name="base",
        feature_set={"name": "synthetic", "version": "1", "dim": D},
        classes=["a", "b", "c"],
        heads=[HeadGroup("imagenet", "softmax", 0, 3)],
        W=rng.normal(size=(3, D)),
        b=np.zeros(3),
    )


def test_five_examples_of_a_kind_are_learned_five_unrelated_are_not() -> None:
    X, y = _clusters()
    rng = np.random.default_rng(2)
    pos = rng.choice(np.flatnonzero(y == 3), 5, replace=False)
    library = np.setdiff1d(np.arange(len(X)), pos)
    fit = fit_tag("kind3", X[pos], X[:0], X[library], LearnOptions())
    assert fit.ok, fit.message
    assert fit.precision is not None and fit.precision >= 0.75
    p = fit.decide(l2(X)) >= fit.threshold
    rest = np.setdiff1d(np.flatnonzero(y == 3), pos)
    assert p[rest].mean() >= 0.8  # the unlabelled ones of the kind
    assert p[y != 3].mean() <= 0.02  # hardly any other

    random5 = np.asarray([np.flatnonzero(y == k)[0] for k in range(5)])
    lib = np.setdiff1d(np.arange(len(X)), random5)
    junk = fit_tag("nonsense", X[random5], X[:0], X[lib], LearnOptions())
    assert not junk.ok
    assert junk.message.startswith("cannot learn yet"), junk.message

    few = fit_tag("few", X[pos[:3]], X[:0], X[library], LearnOptions())
    assert not few.ok and "3 of 5" in few.message


def test_bundle_scores_raw_vectors_as_rescoring_scores_stored_ones() -> None:
    X, y = _clusters()
    pos = np.flatnonzero(y == 1)[:6]
    fit = fit_tag("kind1", X[pos], X[:0], X[np.flatnonzero(y != 1)], LearnOptions())
    assert fit.ok
    bundle = compose(_base(), {"kind1": fit_row(fit)}, {"kind1": fit.metrics()})
    assert [h.group for h in bundle.heads] == ["imagenet", LEARNED_GROUP]
    assert bundle.learned_classes() == ["kind1"]
    col = bundle.classes.index("kind1")
    from_bundle = bundle.score(X)[:, col]  # what the bolt computes from raw features
    tags, arrays = stack_rows(learned_rows(bundle))
    i, j, s = score_chunk(*arrays, l2(X))  # the re-scoring pass, on stored vectors
    hit = np.zeros(len(X), bool)
    hit[i] = True
    np.testing.assert_array_equal(hit, from_bundle >= bundle.thresholds[col])
    np.testing.assert_allclose(s, from_bundle[i], rtol=1e-5, atol=1e-6)
    assert tags == ["kind1"]


def test_shadow_check_refuses_a_candidate_worse_on_an_existing_tag() -> None:
    X, y = _clusters()
    Xn = l2(X)
    labelled = np.concatenate([np.flatnonzero(y == 2)[:10], np.flatnonzero(y == 5)[:10]])
    truth = (y[labelled] == 2).astype(np.int8)
    good = fit_tag("kind2", X[labelled[:5]], X[labelled[10:15]], X[y > 5], LearnOptions())
    assert good.ok
    active = compose(_base(), {"kind2": fit_row(good)}, {})
    # New labels that say kind 5 is "kind2": a head fitted on them gets the old labels wrong.
    bad = fit_tag(
        "kind2", X[np.flatnonzero(y == 5)[10:20]], X[labelled[:5]], X[y > 5], LearnOptions()
    )
    assert bad.w is not None
    candidate = compose(active, {"kind2": fit_row(bad)}, {})

    def decisions(bundle: ModelBundle) -> np.ndarray:
        col = bundle.classes.index("kind2")
        return bundle.score(X[labelled])[:, col] >= bundle.thresholds[col]

    worse = shadow_check({"kind2": (truth, decisions(active), decisions(candidate))})
    assert "kind2" in worse and worse["kind2"][1] > worse["kind2"][0]
    assert shadow_check({"kind2": (truth, decisions(active), decisions(active))}) == {}
    del Xn


def test_removals_of_a_model_tag_raise_its_threshold_in_a_new_bundle() -> None:
    from autotag.learning.learned_bundle import with_thresholds
    from autotag.learning.learner import recalibrated_threshold

    base = _base()
    old = float(base.thresholds[1])
    # The user removed "b" from three photos the model tagged at 0.55-0.62 and kept it on
    # (labelled) photos at 0.7 and 0.9: the new threshold sits just above the removals.
    neg = np.asarray([old + 0.05, old + 0.08, old + 0.12])
    pos = np.asarray([old + 0.2, old + 0.4])
    thr = recalibrated_threshold(old, pos, neg)
    assert thr is not None and neg.max() < thr <= pos.min()
    candidate = with_thresholds(base, {"b": thr})
    assert candidate.id != base.id
    assert float(candidate.thresholds[1]) == np.float32(thr)
    assert float(base.thresholds[1]) == old  # the active bundle is untouched
    np.testing.assert_array_equal(candidate.thresholds[[0, 2]], base.thresholds[[0, 2]])
    assert candidate.metrics["recalibrated"] == {"b": thr}
    y = np.asarray([1, 1, 0, 0, 0], np.int8)
    z = np.concatenate([pos, neg])
    assert shadow_check({"b": (y, z >= old, z >= thr)}) == {}

    # A removal scored above the photos the user says have the tag: raising the threshold
    # past it would lose more positives than it drops negatives, so nothing changes.
    assert recalibrated_threshold(old, np.asarray([old + 0.1, old + 0.15]), [old + 0.3]) is None
    # Removals the model did not tag (below the threshold) change nothing either.
    assert recalibrated_threshold(old, pos, [old - 0.1]) is None
