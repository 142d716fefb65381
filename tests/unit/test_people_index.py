"""PeopleIndex gives the exhaustive nearest-person decision; cluster() gives DBSCAN's labels."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import DBSCAN

from autotag.vision.face_identity import cluster, nearest_person
from autotag.vision.people_index import PeopleIndex, radius_graph


def _people(rng: np.random.Generator, n_people: int, per: int, spread: float) -> tuple:
    centres = rng.normal(0, 1, (n_people, 128)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    owners = np.repeat(np.arange(n_people) * 7 + 3, per)  # ids not 0..n-1, not sorted below
    refs = np.repeat(centres, per, axis=0) + rng.normal(0, spread, (n_people * per, 128))
    shuffle = rng.permutation(len(owners))
    return refs.astype(np.float32)[shuffle], owners[shuffle], centres


def test_index_decides_as_the_exhaustive_search() -> None:
    rng = np.random.default_rng(1)
    refs, owners, centres = _people(rng, 200, 12, 0.035)
    index = PeopleIndex(refs, owners)
    near = refs[rng.integers(0, len(refs), 150)] + rng.normal(0, 0.035, (150, 128))
    between = (centres[:60] + centres[60:120]) / 2  # ambiguous faces, far from everyone
    stranger = rng.normal(0, 0.09, (40, 128))
    probes = np.concatenate([near, between, stranger]).astype(np.float32)
    matched = unmatched = 0
    for threshold in (0.3, 0.6, 0.9):
        for p in probes:
            want = nearest_person(p, refs, owners, threshold)
            got = index.nearest(p, threshold)
            assert (want is None) == (got is None), (threshold, want, got)
            if want is None:
                unmatched += 1
                continue
            matched += 1
            assert got is not None
            assert got[0] == want[0]
            assert abs(got[1] - want[1]) < 1e-4
    assert matched > 100 and unmatched > 100  # both decisions were exercised


def test_index_skips_refused_people_like_the_exhaustive_search() -> None:
    rng = np.random.default_rng(2)
    refs, owners, _ = _people(rng, 50, 5, 0.03)
    index = PeopleIndex(refs, owners)
    for i in range(0, len(refs), 17):
        p = refs[i] + 0.001
        refused = [int(owners[i])]
        want = nearest_person(p, refs, owners, 0.6, refused=refused)
        got = index.nearest(p, 0.6, refused=refused)
        assert (want is None) == (got is None)
        if want and got:
            assert want[0] == got[0] != owners[i]


def test_empty_index_finds_nobody() -> None:
    index = PeopleIndex(np.zeros((0, 128), np.float32), np.zeros(0, np.int64))
    assert index.nearest(np.zeros(128, np.float32), 0.6) is None


def test_cluster_labels_are_dbscans_own() -> None:
    rng = np.random.default_rng(3)
    refs, _, _ = _people(rng, 60, 8, 0.03)
    noise = rng.normal(0, 0.09, (100, 128)).astype(np.float32)
    x = np.concatenate([refs, noise, refs[:5]])  # exact duplicates too
    want = DBSCAN(eps=0.5, min_samples=3, algorithm="brute").fit_predict(x)
    got = cluster(x, max_distance=0.5, min_faces=3)
    assert (got == want).all()
    assert len(set(got.tolist()) - {-1}) == 60
    assert (got[len(refs) : len(refs) + 100] == -1).all()


def test_radius_graph_holds_exactly_the_close_pairs() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(0, 0.05, (300, 128)).astype(np.float32)
    g = radius_graph(x, 0.7, block=64).toarray()
    d = np.linalg.norm(x[:, None].astype(np.float64) - x[None].astype(np.float64), axis=2)
    assert ((g > 0) == (d <= 0.7)).all()
    assert 0 < (d <= 0.7).sum() < 300 * 300
