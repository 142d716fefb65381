"""Faces in video segments are matched to the same people as photos, on real Postgres: a
person named once from a photo (tests/data/faces) is named in the segment of a video whose
frames show them (the segment's tags carry the name, which `autotag search NAME` lists with
the segment's times), and not in a segment of someone else."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from autotag.config import Settings
from autotag.contract import FaceFound, PhotoResult, Tag
from autotag.pipeline.tag_step import load_tagger, people_matcher
from autotag.pipeline.video_contract import DONE, SegmentJob
from autotag.pipeline.video_step import SamplingOptions, VideoAnalyser
from autotag.storage import database
from autotag.storage import people as store
from autotag.storage.blobs import BlobStore
from autotag.storage.writer import write_results
from autotag.vision.face_identity import FaceDescriber
from autotag.vision.faces import FaceDetector
from autotag.vision.feature_sets import FeatureOptions, get_feature_set
from autotag.vision.people_index import PeopleIndex

pytestmark = pytest.mark.services

DATA = Path(__file__).resolve().parents[1] / "data" / "faces"
NAME = "Vera Video"


def _video(tmp: Path, photo: str, frames: int = 6) -> bytes:
    """An MJPEG AVI at 2 fps showing one photo (letterboxed to 640×480)."""
    img = cv2.imread(str(DATA / photo), cv2.IMREAD_COLOR)
    assert img is not None
    k = min(640 / img.shape[1], 480 / img.shape[0])
    small = cv2.resize(img, (round(img.shape[1] * k), round(img.shape[0] * k)))
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[: small.shape[0], : small.shape[1]] = small
    path = tmp / f"{photo}.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 2.0, (640, 480))
    for _ in range(frames):
        out.write(frame)
    out.release()
    return path.read_bytes()


def _store_and_name(s: Settings) -> None:
    """img13 and img14 (person B) stored as the DB writer does, under photo ids of this test's
    own (test_people forgets person B's faces of these very photos); both faces named NAME."""
    detector = FaceDetector.load(s.model_dirs)
    describer = FaceDescriber.load()
    results = []
    for name in ("img13.jpg", "img14.jpg"):
        img = cv2.imread(str(DATA / name), cv2.IMREAD_COLOR)
        found = detector.detect_scored(img)
        boxes = [(f.x, f.y, f.w, f.h) for f, _ in found]
        faces = [
            FaceFound(b, sc, d.quality, d.embedding, describer.version) if d else FaceFound(b, sc)
            for b, (_, sc), d in zip(boxes, found, describer.describe(img, boxes), strict=True)
        ]
        pid = hashlib.sha256(b"video-people:" + (DATA / name).read_bytes()).hexdigest()
        results.append(
            PhotoResult(
                pid,
                "tagged",
                "video-people-test",
                tags=[Tag("face", 0.9, "detector")],
                width=img.shape[1],
                height=img.shape[0],
                faces=faces,
            )
        )
    with database.connect(s.services) as conn:
        assert write_results(conn, results) == 2
        for r in results:
            face = max(store.photo_faces(conn, r.photo_id), key=lambda f: f["box"][2])
            assert store.name_face(conn, face["face_id"], NAME) is not None


def test_a_named_person_is_named_in_video_segments(
    services: Settings, default_bundle: str, tmp_path: Path
) -> None:
    _store_and_name(services)
    blobs = BlobStore(tmp_path / "blobs")
    tagger = load_tagger(services.tagging, services.limits)
    analyser = VideoAnalyser(
        lambda: tagger,
        get_feature_set("cnn", FeatureOptions(services.model_dirs, 1)),
        blobs,
        SamplingOptions(sample_secs=0.5, static_secs=1.0, budget_secs=120.0),
        faces=FaceDetector.load(services.model_dirs),
        matcher=people_matcher(services.tagging, services.services),
    )
    tags = {}
    for segment, photo in enumerate(("img15.jpg", "img16.jpg")):
        blob_id, _ = blobs.put_bytes(_video(tmp_path, photo))
        job = SegmentJob("e" * 64, segment, blob_id, 2.0, 0, 6)
        result = analyser.analyse(job)
        assert result.status == DONE, result.reason
        tags[photo] = {t[0]: t[1] for t in result.tags}
    # The database is shared with other tests that may have named B too (from the same
    # photos): the segment must carry the name of the person B's face in the frame belongs to
    # (NAME when this test runs alone), who is someone named from B's photos.
    frame = cv2.imread(str(DATA / "img15.jpg"), cv2.IMREAD_COLOR)
    found = FaceDetector.load(services.model_dirs).detect_scored(frame)
    f = max((f for f, _ in found), key=lambda f: f.w)
    (described,) = FaceDescriber.load().describe(frame, [(f.x, f.y, f.w, f.h)])
    assert described is not None
    with database.connect(services.services) as conn:
        refs = store.references(conn)
        hit = PeopleIndex(refs.embeddings, refs.owners).nearest(
            described.embedding, services.tagging.face_match_distance
        )
        assert hit is not None
        who = store.person(conn, hit[0])
    assert who is not None and who["name"]
    b_photos = {
        hashlib.sha256(salt + (DATA / n).read_bytes()).hexdigest()
        for n in ("img13.jpg", "img14.jpg", "img15.jpg")
        for salt in (b"", b"video-people:")
    }
    assert set(who["photo_ids"]) & b_photos
    name = who["name"]
    assert name in tags["img15.jpg"], (name, tags["img15.jpg"])  # a photo of B never stored
    assert tags["img15.jpg"][name] > 0.5
    assert name not in tags["img16.jpg"], tags["img16.jpg"]
    assert NAME not in tags["img16.jpg"]
