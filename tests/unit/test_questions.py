"""The questions a new learned tag asks before it is published (learning.questions)."""

from __future__ import annotations

import numpy as np

from autotag.learning import questions


def test_nearest_asks_the_photos_nearest_the_threshold_first() -> None:
    p = np.array([0.9, 0.52, 0.1, 0.47, 0.6, 0.5])
    assert questions.nearest(p, 0.5, 3).tolist() == [5, 1, 3]
    assert questions.nearest(p, 0.5, 0).tolist() == []
    assert len(questions.nearest(p, 0.5, 100)) == len(p)


def test_spot_sample_draws_only_photos_the_tag_would_get() -> None:
    p = np.linspace(0.0, 1.0, 101)
    got = questions.spot_sample(p, 0.8, 5, np.random.default_rng(0))
    assert len(got) == 5 and len(set(got.tolist())) == 5
    assert (p[got] >= 0.8).all()
    assert questions.spot_sample(p, 1.5, 5, np.random.default_rng(0)).tolist() == []
    few = questions.spot_sample(p, 0.98, 5, np.random.default_rng(0))
    assert sorted(few.tolist()) == [98, 99, 100]


def test_the_same_tag_and_labels_show_the_same_spot_check() -> None:
    p = np.linspace(0.0, 1.0, 1001)
    a = questions.spot_sample(p, 0.5, 5, questions.seeded_rng("rose", "sig1"))
    b = questions.spot_sample(p, 0.5, 5, questions.seeded_rng("rose", "sig1"))
    c = questions.spot_sample(p, 0.5, 5, questions.seeded_rng("rose", "sig2"))
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


def test_spot_passed_needs_enough_right_answers() -> None:
    assert questions.spot_passed(4, 5, 5, 4)
    assert questions.spot_passed(5, 5, 5, 4)
    assert not questions.spot_passed(3, 5, 5, 4)
    # a tag that would get only 3 photos: still at most one wrong answer
    assert questions.spot_passed(3, 3, 5, 4)
    assert questions.spot_passed(2, 3, 5, 4)
    assert not questions.spot_passed(1, 3, 5, 4)
    # min_yes above n: all must be right
    assert questions.spot_passed(5, 5, 5, 9)
    assert not questions.spot_passed(4, 5, 5, 9)
    # nothing to ask: not published
    assert not questions.spot_passed(0, 0, 5, 4)
    # one photo to ask: it must be right
    assert questions.spot_passed(1, 1, 5, 4)
    assert not questions.spot_passed(0, 1, 5, 4)


def test_near_copies_are_asked_about_once() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((4, 32))
    # photos 0-2 are one scene shot three times, 3-5 three other scenes, 6 a copy of 4
    X = np.stack([base[0], base[0] + 0.01, base[0] - 0.01, base[1], base[2], base[3], base[2]])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    order = np.arange(len(X))
    assert questions.diverse(order, X, 10).tolist() == [0, 3, 4, 5]
    assert questions.diverse(order, X, 2).tolist() == [0, 3]
    assert questions.diverse(order[::-1], X, 3).tolist() == [6, 5, 3]
    assert questions.diverse(order, X, 10, max_cos=1.01).tolist() == list(range(7))


def test_all_of_them_in_order() -> None:
    p = np.array([0.9, 0.52, 0.1, 0.47])
    assert questions.nearest(p, 0.5, -1).tolist() == [1, 3, 0, 2]
    everyone = questions.spot_sample(p, 0.5, -1, np.random.default_rng(0))
    assert sorted(everyone.tolist()) == [0, 1]
