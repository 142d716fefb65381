"""A new learned tag asks before it is published, on a real Postgres with stored vectors:
yes/no on the photos nearest its threshold, then a spot check of photos it would tag; it is
published (as it was checked) only when enough of those are right, and asks again when not.
The learner (``teach.learn``) is what `autotag learn`, `autotag labels add` and the web app
run; the topology is not needed (published bundles are only files here)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from autotag.config import Settings
from autotag.contract import PhotoResult
from autotag.learning import teach
from autotag.learning.learned_bundle import learned_rows, row_probabilities
from autotag.learning.learner import LearnOptions
from autotag.storage import database, videos, writer
from autotag.storage import labels as label_store
from autotag.storage import learned as store
from autotag.vision.bundle import active_bundle_id, load_active
from tests.bundles import with_default_bundle

pytestmark = pytest.mark.services

DIM = 1280  # the default bundle's stored vectors (cnn@1)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    with_default_bundle(folder)
    return folder


@pytest.fixture
def conn(postgres_service: Settings) -> Iterator[psycopg.Connection[Any]]:
    with database.connect(postgres_service.services) as c:
        yield c


def _library(conn: psycopg.Connection[Any], models: Path, seed: int) -> tuple[list[str], set[str]]:
    """Stored photos as the DB writer stores them: 24 of one kind (vectors around one
    direction) among 120 others; returns (ids, the kind's ids)."""
    bundle = load_active(models)
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal(DIM)
    vectors = [centre + 1.1 * rng.standard_normal(DIM) for _ in range(24)]
    vectors += [rng.standard_normal(DIM) for _ in range(120)]
    ids = [hashlib.sha256(uuid.uuid4().bytes).hexdigest() for _ in vectors]
    results = [
        PhotoResult(pid, "tagged", bundle.id, bundle.feature_key, [("thing", 0.5)],
                    (v / np.linalg.norm(v)).astype(np.float32))
        for pid, v in zip(ids, vectors, strict=True)
    ]  # fmt: skip
    writer.write_results(conn, results)
    return ids, set(ids[:24])


def _answer(conn: psycopg.Connection[Any], tag: str, truth: set[str], say_no: bool = False) -> int:
    """Answer every unanswered question of ``tag`` (from ``truth``, or no to all)."""
    state = store.states(conn)[tag]
    waiting = store.unanswered(conn, tag, state.questions)
    with conn.transaction():
        for pid in waiting:
            label_store.set_label(conn, pid, tag, pid in truth and not say_no)
    return len(waiting)


def _five_labelled(
    conn: psycopg.Connection[Any], models: Path, seed: int
) -> tuple[list[str], set[str], str, str | None]:
    """A library (``_library``) and a new tag on five photos of the kind: (ids, the kind's
    ids, the tag, the active bundle before it)."""
    ids, kind = _library(conn, models, seed)
    tag = f"t{uuid.uuid4().hex[:8]}"
    for pid in ids[:5]:
        label_store.set_label(conn, pid, tag, True)
    return ids, kind, tag, active_bundle_id(models)


def _learn(conn: psycopg.Connection[Any], models: Path, tag: str) -> teach.Report:
    report = teach.learn(conn, models, LearnOptions(), tags=[tag])
    assert not report.busy
    return report


def test_a_new_tag_asks_then_is_published_as_it_was_checked(
    conn: psycopg.Connection[Any], models: Path
) -> None:
    ids, kind, tag, base = _five_labelled(conn, models, seed=1)

    # Five labels: it asks about the 10 photos nearest its threshold, publishes nothing.
    [o] = _learn(conn, models, tag).outcomes
    assert o.status == "asking", o
    state = store.states(conn)[tag]
    assert state.phase == "near" and len(state.questions) == 10
    assert not set(state.questions) & set(ids[:5])  # not the labelled photos
    assert active_bundle_id(models) == base

    # One answer: still asking the other nine (the same photos), nothing refitted.
    first, *rest = state.questions
    label_store.set_label(conn, first, tag, first in kind)
    [o] = _learn(conn, models, tag).outcomes
    assert o.status == "asking" and "1 of 10 answered" in o.message, o
    assert store.unanswered(conn, tag, state.questions) == rest
    assert store.states(conn)[tag].questions == state.questions

    # All answered: a spot check of photos the (refitted) tag would get, its head kept.
    _answer(conn, tag, kind)
    [o] = _learn(conn, models, tag).outcomes
    assert o.status == "asking", o
    spot = store.states(conn)[tag]
    assert spot.phase == "spot" and 1 <= len(spot.questions) <= 5
    kept = store.candidate(conn, tag)
    assert kept is not None
    w, b, a, c, threshold = kept
    row = {"W": w, "b": np.float32(b), "calib_a": np.float32(a), "calib_c": np.float32(c)}
    _ids, X = store.vectors_of(conn, load_active(models).feature_key, list(spot.questions))
    assert (row_probabilities(row, X) >= threshold).all()  # photos it would tag
    assert active_bundle_id(models) == base

    # Right answers: published, with the very head that was checked, and written on the
    # stored photos of the kind.
    _answer(conn, tag, kind)
    report = _learn(conn, models, tag)
    [o] = report.outcomes
    assert o.status == "learned", o
    assert report.bundle_id and active_bundle_id(models) == report.bundle_id != base
    published = learned_rows(load_active(models))[tag]
    assert np.array_equal(published["W"], w)
    assert float(published["thresholds"]) == pytest.approx(threshold, abs=1e-6)
    published_state = store.states(conn)[tag]
    assert published_state.status == "learned"
    assert published_state.message.startswith("learned (spot check: "), published_state
    tagged = {
        r[0]
        for r in conn.execute(
            "SELECT photo_id FROM tags WHERE kind = 'learned' AND tag = %s", (tag,)
        ).fetchall()
    }
    unlabelled_kind = kind - {p for p, _t, _pos, _at in store.list_labels(conn, tag)}
    assert len(tagged & unlabelled_kind) >= 0.7 * len(unlabelled_kind), (tagged, unlabelled_kind)
    # No unrelated photo of this library gets it (the test database is shared: other tests'
    # synthetic vectors are no part of this library's truth).
    assert not (tagged & set(ids)) - kind


def test_a_failed_spot_check_publishes_nothing_and_asks_again(
    conn: psycopg.Connection[Any], models: Path
) -> None:
    _ids, kind, tag, base = _five_labelled(conn, models, seed=2)
    _learn(conn, models, tag)
    _answer(conn, tag, kind)
    [o] = _learn(conn, models, tag).outcomes
    assert o.status == "asking" and store.states(conn)[tag].phase == "spot", o
    asked = _answer(conn, tag, kind, say_no=True)  # the user says none of them has it
    report = _learn(conn, models, tag)
    [o] = report.outcomes
    assert report.bundle_id is None and active_bundle_id(models) == base
    assert o.message.startswith(f"the spot check found 0 of {asked} right"), o
    assert o.status in ("asking", "not-yet"), o  # asked again, or too few examples now
    if o.status == "asking":
        assert store.states(conn)[tag].phase == "near"
    assert store.learned_tag_count(conn, tag) == 0


def test_forget_removes_the_tag_from_photos_and_video_segments(
    conn: psycopg.Connection[Any], models: Path
) -> None:
    """`autotag learned forget` removes the learned tag everywhere: its head, its stored
    tags on photos, and on video segments the bolts tagged with a bundle that had it; a
    segment tag of the same name from a bundle without it (a base class) stays."""
    _ids, _kind, tag, base = _five_labelled(conn, models, seed=3)
    opts = LearnOptions(questions=0, spot_check=0)  # published at once: not what this tests
    report = teach.learn(conn, models, opts, tags=[tag])
    assert report.bundle_id, report.as_dict()
    video_id = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    videos.register_video(conn, video_id, kind="upload", source="clip.avi", info={"fps": 2.0})
    videos.add_segments(conn, video_id, [videos.SegmentRow(n, "0" * 64, n, n + 1) for n in (0, 1)])
    conn.execute(
        "INSERT INTO video_segment_tags (video_id, segment, tag, score, frames, model_version)"
        " VALUES (%s, 0, %s, 0.9, 3, %s), (%s, 1, %s, 0.8, 2, %s)",
        (video_id, tag, report.bundle_id, video_id, tag, base),
    )
    assert store.learned_tag_count(conn, tag) > 0

    done = teach.forget(conn, models, tag)
    assert done["was_learned"] and done["bundle_id"] == active_bundle_id(models)
    assert tag not in learned_rows(load_active(models))
    assert store.learned_tag_count(conn, tag) == 0 and tag not in store.states(conn)
    left = conn.execute(
        "SELECT segment, model_version FROM video_segment_tags WHERE video_id = %s AND tag = %s",
        (video_id, tag),
    ).fetchall()
    assert left == [(1, base)]
