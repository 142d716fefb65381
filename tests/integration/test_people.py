"""People on real Postgres: faces found and described in real photos of three people
(tests/data/faces, see its README) are stored by the DB writer; naming one face of each with
`autotag people name --face` finds that person's other photos (group photos included) with
`autotag search NAME`, and not the others; renaming, merging, removing a face and forgetting
change what search finds at once. Hostile faces (200 tiny ones, a 1-pixel box, an all-black
frame) cost a bounded time and lose nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from autotag.config import Settings
from autotag.contract import FaceFound, PhotoResult, Tag
from autotag.storage import database
from autotag.storage import people as store
from autotag.storage.writer import write_results
from autotag.vision.face_identity import FaceDescriber
from autotag.vision.faces import FaceDetector
from tests.cli import autotag_json, search_ids

pytestmark = pytest.mark.services

DATA = Path(__file__).resolve().parents[1] / "data" / "faces"
A = ["img1.jpg", "img2.jpg", "img4.jpg", "couple.jpg", "selfie-many-people.jpg"]
B = ["img13.jpg", "img14.jpg"]
C = ["img8.jpg", "img9.jpg"]
OTHERS = ["img16.jpg", "img20.jpg"]
MODEL = "people-test-model"


def pid_of(name: str) -> str:
    return hashlib.sha256((DATA / name).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def stored(services: Settings) -> dict[str, str]:
    """Every test photo's faces, found and described as the tagger does, written by the DB
    writer as a tagged result (no person known yet)."""
    detector = FaceDetector.load(services.model_dirs)
    describer = FaceDescriber.load()
    results = []
    ids = {}
    for name in A + B + C + OTHERS:
        img = cv2.imread(str(DATA / name), cv2.IMREAD_COLOR)
        found = detector.detect_scored(img)
        boxes = [(f.x, f.y, f.w, f.h) for f, _ in found]
        described = describer.describe(img, boxes)
        faces = [
            FaceFound(b, s, d.quality, d.embedding, describer.version) if d else FaceFound(b, s)
            for b, (_, s), d in zip(boxes, found, described, strict=True)
        ]
        ids[name] = pid_of(name)
        results.append(
            PhotoResult(
                ids[name],
                "tagged",
                MODEL,
                tags=[Tag("face", 0.9, "detector")],
                width=img.shape[1],
                height=img.shape[0],
                faces=faces,
            )
        )
    with database.connect(services.services) as conn:
        assert write_results(conn, results) == len(results)
        assert write_results(conn, results) == len(results)  # a replay changes nothing
    return ids


def _biggest_face(s: Settings, photo_id: str) -> dict:
    shown = autotag_json(s, "show", photo_id)
    assert isinstance(shown, dict)
    faces = shown["faces"]
    assert faces, f"no faces stored for {photo_id}"
    assert set(faces[0]) >= {"face_id", "person_id", "person", "box", "score"}
    return max(faces, key=lambda f: f["box"][2] * f["box"][3])


def test_name_once_then_search_by_name(services: Settings, stored: dict[str, str]) -> None:
    s = services
    with database.connect(s.services) as conn:
        n = conn.execute(
            "SELECT count(*) FROM faces WHERE photo_id = ANY(%s)", (list(stored.values()),)
        ).fetchone()
    assert n and n[0] >= len(stored) + 3  # the group photos have several faces

    names = {"Ada Lovelace": A, "Grace Hopper": B, "Alan Turing": C}
    for name, photos in names.items():
        face = _biggest_face(s, stored[photos[0]])
        done = autotag_json(s, "people", "name", "--face", str(face["face_id"]), name)
        assert isinstance(done, dict) and done["name"] == name

    everyone = set(stored.values())
    for name, photos in names.items():
        mine = {stored[p] for p in photos}
        found = search_ids(s, name)
        assert found == mine, (name, sorted(p for p, i in stored.items() if i in found))
        # one word of the name, and a name combined with another tag (the test database is
        # shared: other tests' people may share a first name, so only these photos count)
        assert search_ids(s, name.split()[0].lower()) & everyone == mine
        assert search_ids(s, name.split()[1], "face") & everyone == mine
        assert not found & (everyone - mine)

    listed = autotag_json(s, "people", "--named")
    assert isinstance(listed, list)
    by_name = {p["name"]: p for p in listed}
    assert by_name["Ada Lovelace"]["photos"] == len(A)
    shown = autotag_json(s, "people", "show", str(by_name["Grace Hopper"]["person_id"]))
    assert isinstance(shown, dict) and set(shown["photo_ids"]) == {stored[p] for p in B}

    # Renaming: the new name finds them at once, the old one nothing.
    grace = by_name["Grace Hopper"]["person_id"]
    autotag_json(s, "people", "name", str(grace), "Rear Admiral Hopper")
    assert search_ids(s, "Grace Hopper") == set()
    assert search_ids(s, "admiral") == {stored[p] for p in B}

    # Merging C into B: B's name now finds C's photos too.
    turing = by_name["Alan Turing"]["person_id"]
    autotag_json(s, "people", "merge", str(grace), str(turing))
    assert search_ids(s, "admiral") == {stored[p] for p in B + C}
    assert search_ids(s, "turing") == set()

    # A wrong face removed: that photo leaves the person, and is never given back.
    wrong = _biggest_face(s, stored["img9.jpg"])
    autotag_json(s, "people", "remove-face", str(wrong["face_id"]))
    assert stored["img9.jpg"] not in search_ids(s, "admiral")
    with database.connect(s.services) as conn:
        row = conn.execute(
            "SELECT not_people FROM faces WHERE face_id = %s", (wrong["face_id"],)
        ).fetchone()
    assert row and grace in row[0]

    # Forget: name, tags and descriptors gone.
    autotag_json(s, "people", "forget", str(grace))
    assert search_ids(s, "admiral") == set()
    with database.connect(s.services) as conn:
        left = conn.execute(
            "SELECT count(*) FROM faces WHERE photo_id = ANY(%s) AND embedding IS NOT NULL "
            "AND photo_id <> %s",
            ([stored[p] for p in B + C], stored["img9.jpg"]),
        ).fetchone()
    assert left and left[0] == 0


def test_hostile_faces_cost_bounded_work(services: Settings) -> None:
    """200 tiny faces, a 1-pixel box, a box outside the photo and an all-black frame: no
    error, and no more descriptors computed than the describer's cap (the bounded cost)."""
    describer = FaceDescriber.load()
    detector = FaceDetector.load(services.model_dirs)
    rng = np.random.default_rng(0)
    crowd = np.full((1000, 1000, 3), 200, np.uint8)
    tile = cv2.resize(cv2.imread(str(DATA / "img2.jpg")), (30, 30))
    boxes = []
    for i in range(200):
        y, x = divmod(i, 15)
        crowd[y * 65 : y * 65 + 30, x * 65 : x * 65 + 30] = tile
        boxes.append((x * 65, y * 65, 30, 30))
    boxes += [(5, 5, 1, 1), (-500, -500, 400, 400), (990, 990, 300, 300)]
    out = describer.describe(crowd, boxes)
    assert len(out) == len(boxes) and all(d is None for d in out)  # all too small or outside
    black = np.zeros((480, 640, 3), np.uint8)
    assert detector.detect_scored(black) == []
    # A box on a black frame is described (a meaningless descriptor, but finite) or skipped.
    (d,) = describer.describe(black, [(100, 100, 200, 200)])
    assert d is None or bool(np.isfinite(d.embedding).all())
    big = [(int(b[0]), int(b[1]), 120, 120) for b in rng.integers(0, 800, (200, 2))]
    many = describer.describe(np.ascontiguousarray(crowd), big)
    assert len(many) == len(big)
    assert sum(d is not None for d in many) <= describer.max_faces  # bounded work

    pid = hashlib.sha256(b"hostile faces photo").hexdigest()
    faces = [FaceFound(b, 0.7) for b in boxes[:200]] + [
        FaceFound((5, 5, 1, 1), 0.7),
        FaceFound((0, 0, 0, 0), 0.7),  # an empty box is dropped, not an error
    ]
    with database.connect(services.services) as conn:
        r = PhotoResult(pid, "tagged", MODEL, width=1000, height=1000, faces=faces)
        assert write_results(conn, [r]) == 1
        n = conn.execute("SELECT count(*) FROM faces WHERE photo_id = %s", (pid,)).fetchone()
        assert n and n[0] == 201
        assert store.photo_faces(conn, pid)[0]["box"] == [0, 0, 30, 30]
