"""Automatic clustering on real Postgres: faces stored by the DB writer with nobody assigned are
clustered by themselves once ``after_faces`` new ones have come (pipeline.auto_cluster), one
run at a time across processes (an advisory lock), into the people a user would see."""

from __future__ import annotations

import hashlib
import uuid

import numpy as np
import pytest

from autotag.config import Settings
from autotag.contract import FaceFound, PhotoResult, Tag
from autotag.pipeline.auto_cluster import AutoClusterer
from autotag.storage import database
from autotag.storage import people as store
from autotag.storage.writer import write_results

pytestmark = pytest.mark.services


def _faces(rng: np.random.Generator, people: int, each: int) -> list[tuple[int, np.ndarray]]:
    """(who, descriptor): ``each`` descriptors around each of ``people`` random centres, about
    0.3 apart (one person), the centres about 1.4 apart (different people); who -1: a lone
    face of someone seen once."""
    centres = rng.normal(0, 1, (people, 128))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = [
        (p, (centres[p] + rng.normal(0, 0.02, 128)).astype(np.float32))
        for p in range(people)
        for _ in range(each)
    ]
    lone = rng.normal(0, 1, (3, 128))
    lone /= np.linalg.norm(lone, axis=1, keepdims=True)
    out += [(-1, v.astype(np.float32)) for v in lone]
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def _store(s: Settings, auto: AutoClusterer, faces: list[tuple[int, np.ndarray]]) -> list[str]:
    results, ids = [], []
    for _, emb in faces:
        pid = hashlib.sha256(uuid.uuid4().bytes).hexdigest()  # a photo id is a sha256
        found = [FaceFound((10, 10, 80, 80), 0.9, 0.5, emb, "synthetic")]
        auto.saw(found)
        ids.append(pid)
        results.append(
            PhotoResult(
                pid,
                "tagged",
                "auto-cluster-test",
                tags=[Tag("face", 0.9, "detector")],
                width=200,
                height=200,
                faces=found,
            )
        )
    with database.connect(s.services) as conn:
        assert write_results(conn, results) == len(results)
    return ids


def _owner(s: Settings, photo_id: str) -> int | None:
    with database.connect(s.services) as conn:
        faces = store.photo_faces(conn, photo_id)
    assert len(faces) == 1
    return faces[0]["person_id"]


def _auto(s: Settings, after: int) -> AutoClusterer:
    t = s.tagging
    return AutoClusterer(
        lambda: database.connect(s.services),
        after,
        match_distance=t.face_match_distance,
        cluster_distance=t.face_cluster_distance,
        min_faces=t.face_cluster_min_faces,
        background=False,
    )


def test_unassigned_faces_become_people_after_enough_new_ones(services: Settings) -> None:
    rng = np.random.default_rng(25)
    faces = _faces(rng, 3, 4)  # 12 faces of three people, 3 lone faces
    auto = _auto(services, 10)
    first = _store(services, auto, faces[:6])
    assert not auto.maybe_run()  # 6 new faces: not enough
    assert all(_owner(services, p) is None for p in first)
    rest = _store(services, auto, faces[6:])
    assert auto.maybe_run()
    assert auto.runs == 1 and auto.new_faces == 0
    owners = [_owner(services, p) for p in first + rest]
    by_person: dict[int, set[int | None]] = {}
    for (who, _), owner in zip(faces, owners, strict=True):
        if who < 0:
            assert owner is None, "a face seen once must stay unassigned"
        else:
            by_person.setdefault(who, set()).add(owner)
    # Each person's four faces are one new person, three different people in all.
    assert all(len(o) == 1 and None not in o for o in by_person.values())
    assert len({next(iter(o)) for o in by_person.values()}) == 3
    assert auto.last is not None and auto.last["new_people"] >= 3

    # A later face of one of them joins that person at the next run (nearest known person).
    who, emb = next(f for f in faces if f[0] >= 0)
    later = _store(services, auto, [(who, emb + np.float32(0.01))])
    auto.after_faces = 1
    assert auto.maybe_run()
    assert _owner(services, later[0]) == next(iter(by_person[who]))


def test_one_clustering_at_a_time_and_off_at_zero(services: Settings) -> None:
    rng = np.random.default_rng(26)
    auto = _auto(services, 3)
    ids = _store(services, auto, _faces(rng, 1, 3)[:3])
    with database.connect(services.services) as other, store.cluster_lock(other) as held:
        assert held
        assert auto.maybe_run()  # started, found the lock held: nothing done, count kept
        assert auto.runs == 0 and auto.new_faces == 3
    assert auto.maybe_run() and auto.runs == 1 and auto.new_faces == 0
    off = _auto(services, 0)
    _store(services, off, _faces(rng, 1, 3))
    assert off.new_faces == 0 and not off.maybe_run()
    assert len(ids) == 3
