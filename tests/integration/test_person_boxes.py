"""Person boxes per photo on real Postgres: the tagger's boxes of opencv-doc's pedestrians
(vtest.avi) are stored by the DB writer with the photo (migration 0013) and listed by
`autotag show --json` as ``people``, and `autotag search person` finds the photo."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import pytest

from autotag.config import Settings
from autotag.contract import PhotoResult, Tag
from autotag.storage import database
from autotag.storage.writer import write_results
from autotag.vision.person_detector import PersonDetector
from tests.cli import autotag

pytestmark = pytest.mark.services

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def test_person_boxes_are_stored_and_shown(services: Settings) -> None:
    cap = cv2.VideoCapture(str(VTEST))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 300)
    ok, frame = cap.read()
    cap.release()
    assert ok
    people = PersonDetector.load(services.model_dirs).detect(frame)
    assert len(people) >= 2
    boxes = json.dumps([[*p.box, p.score] for p in people])
    pid = hashlib.sha256(frame.tobytes()).hexdigest()
    result = PhotoResult(
        pid,
        "tagged",
        "person-boxes-test",
        tags=[Tag("person", people[0].score, "detector")],
        width=frame.shape[1],
        height=frame.shape[0],
        person_boxes=boxes,
    )
    with database.connect(services.services) as conn:
        assert write_results(conn, [result]) == 1
    out = autotag(services, "show", pid, "--json")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert [b["box"] for b in shown["people"]] == [list(p.box) for p in people]
    assert [b["score"] for b in shown["people"]] == pytest.approx([p.score for p in people])
    text = autotag(services, "show", pid)
    assert text.returncode == 0 and text.stdout.count("person    ") == len(people)
    found = autotag(services, "search", "person", "--json", "--limit", "500")
    assert found.returncode == 0, found.stderr
    assert pid in {h.get("photo_id") for h in json.loads(found.stdout)}
