"""Faces in video segments are people like photos' faces, on real Postgres (the video bolt's
analysis and the video writer's batch, not through Storm): a person named once from a photo
(tests/data/faces) is named in the segment of a video whose frames show them, and not in a
segment of someone else; faces first seen in a video are stored (one per face track), grouped
by `autotag people cluster`, named with `autotag people name --face`, and `autotag search
NAME` lists the segments with their times; renaming, merging, removing a face and forgetting
change what search finds at once; a trashed video's faces leave their people and come back
with it (under the names they have then); deleting the video removes its faces."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from autotag.config import Settings
from autotag.contract import FaceFound, PhotoResult, Tag
from autotag.pipeline.tag_step import load_tagger, people_matcher
from autotag.pipeline.video_contract import DONE, SegmentJob, SegmentResult
from autotag.pipeline.video_step import SamplingOptions, VideoAnalyser
from autotag.storage import database, videos
from autotag.storage import people as store
from autotag.storage.blobs import BlobStore
from autotag.storage.video_writer import write_segment_results
from autotag.storage.writer import write_results
from autotag.vision.face_identity import FaceDescriber
from autotag.vision.faces import FaceDetector
from autotag.vision.feature_sets import FeatureOptions, get_feature_set
from autotag.vision.people_index import PeopleIndex
from tests.cli import autotag
from tests.integration.library_client import own_streams, token_clients
from tests.integration.test_deletion import traces

pytestmark = pytest.mark.services

DATA = Path(__file__).resolve().parents[1] / "data" / "faces"
NAME = "Vera Video"
FPS = 2.0
SCENE_FRAMES = 6  # one segment per scene: 3 s each


@pytest.fixture(scope="module")
def web(services: Settings) -> Iterator[TestClient]:
    """The web app (HTTP API and pages) with the token, on Redis streams of this module's own."""
    with own_streams(services) as s, token_clients(s) as (authed, _bare, _token):
        yield authed


def _frame(photo: str, mirrored: bool = False) -> np.ndarray:
    """One photo letterboxed to 640×480 (mirrored: as a selfie camera shows it)."""
    img = cv2.imread(str(DATA / photo), cv2.IMREAD_COLOR)
    assert img is not None
    if mirrored:
        img = np.ascontiguousarray(img[:, ::-1])
    k = min(640 / img.shape[1], 480 / img.shape[0])
    small = cv2.resize(img, (round(img.shape[1] * k), round(img.shape[0] * k)))
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[: small.shape[0], : small.shape[1]] = small
    return frame


def _json(s: Settings, *args: str) -> Any:
    out = autotag(s, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _segments_found(s: Settings, video_id: str, *words: str) -> dict[int, tuple[float, float]]:
    """`autotag search WORDS`: this video's segments found, with their time ranges."""
    hits = _json(s, "search", *words, "--limit", "500")
    return {
        h["segment"]: (h["start_secs"], h["end_secs"])
        for h in hits
        if h.get("kind") == "video_segment" and h["video_id"] == video_id
    }


def _analyse_and_store(
    s: Settings, tmp: Path, scenes: list[np.ndarray]
) -> tuple[str, list[SegmentResult]]:
    """A new video (an MJPEG AVI at 2 fps, one scene per 3 s segment) registered as an upload,
    each segment analysed as the video bolt does and the results written by the video writer.
    Returns the video's id and the results."""
    path = tmp / f"{uuid.uuid4().hex}.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (640, 480))
    for scene in scenes:
        for _ in range(SCENE_FRAMES):
            out.write(scene)
    out.release()
    blobs = BlobStore(s.blob_dir)
    blob_id, _ = blobs.put_bytes(path.read_bytes())
    video_id = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    secs = SCENE_FRAMES / FPS
    with database.connect(s.services) as conn:
        videos.register_video(
            conn,
            video_id,
            kind="upload",
            source=path.name,
            info={"fps": FPS, "width": 640, "height": 480, "duration_secs": secs * len(scenes)},
        )
        videos.add_segments(
            conn,
            video_id,
            [videos.SegmentRow(n, blob_id, n * secs, (n + 1) * secs) for n in range(len(scenes))],
        )
    tagger = load_tagger(s.tagging, s.limits)
    analyser = VideoAnalyser(
        lambda: tagger,
        get_feature_set("cnn", FeatureOptions(s.model_dirs, 1)),
        blobs,
        SamplingOptions(sample_secs=0.5, static_secs=1.0, budget_secs=120.0),
        faces=FaceDetector.load(s.model_dirs),
        matcher=people_matcher(s.tagging, s.services),
    )
    results = []
    for n in range(len(scenes)):
        job = SegmentJob(video_id, n, blob_id, FPS, n * SCENE_FRAMES, (n + 1) * SCENE_FRAMES)
        result = analyser.analyse(job)
        assert result.status == DONE, result.reason
        results.append(result)
    with database.connect(s.services) as conn:
        assert write_segment_results(conn, results) == len(results)
        assert write_segment_results(conn, results) == len(results)  # a replay changes nothing
    return video_id, results


def _video_faces(s: Settings, video_id: str) -> dict[int, dict[str, Any]]:
    """The video's stored faces by segment (each scene shows one face: one track)."""
    with database.connect(s.services) as conn:
        rows = conn.execute(
            "SELECT face_id, segment, person_id, at_secs, embedding IS NOT NULL FROM faces "
            "WHERE video_id = %s ORDER BY segment",
            (video_id,),
        ).fetchall()
    out = {}
    for face_id, segment, person_id, at_secs, described in rows:
        assert segment not in out, f"two faces stored for segment {segment}"
        out[segment] = {
            "face_id": face_id,
            "person_id": person_id,
            "at_secs": at_secs,
            "described": described,
        }
    return out


def _store_and_name(s: Settings) -> None:
    """img13 and img14 (person B) stored as the DB writer does, under photo ids of this test's
    own (test_people forgets person B's faces of these very photos); both faces named NAME."""
    detector = FaceDetector.load(s.model_dirs)
    describer = FaceDescriber.load()
    results = []
    for name in ("img13.jpg", "img14.jpg"):
        img = cv2.imread(str(DATA / name), cv2.IMREAD_COLOR)
        assert img is not None
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
    video_id, _ = _analyse_and_store(services, tmp_path, [_frame("img15.jpg"), _frame("img16.jpg")])
    # The database is shared with other tests that may have named B too (from the same
    # photos): the segment must carry the name of the person B's face in the frame belongs to
    # (NAME when this test runs alone), who is someone named from B's photos.
    frame = cv2.imread(str(DATA / "img15.jpg"), cv2.IMREAD_COLOR)
    assert frame is not None
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
    # B's face in segment 0 is stored as theirs, matched by the stream (img15 was never
    # stored as a photo); the other segment's face is not.
    faces = _video_faces(services, video_id)
    assert faces[0]["person_id"] == who["person_id"] and faces[0]["described"]
    assert faces.get(1, {}).get("person_id") != who["person_id"]
    # `autotag search NAME` lists segment 0 (0-3 s), not segment 1.
    assert _segments_found(services, video_id, who["name"]) == {0: (0.0, 3.0)}
    if who["name"] != NAME:
        assert _segments_found(services, video_id, NAME) == {}


def test_faces_first_seen_in_a_video_are_clustered_named_and_searched(
    services: Settings,
    default_bundle: str,
    tmp_path: Path,
    web: TestClient,
) -> None:
    s = services
    client = web
    # Person D (img18, img19: in no other test) in three segments, E (img24) in the fourth.
    scenes = [_frame("img18.jpg"), _frame("img19.jpg"), _frame("img18.jpg", mirrored=True)]
    video_id, results = _analyse_and_store(s, tmp_path, [*scenes, _frame("img24.jpg")])
    faces = _video_faces(s, video_id)
    assert sorted(faces) == [0, 1, 2, 3]
    for n, f in faces.items():
        assert f["described"] and f["person_id"] is None  # nobody knows D or E yet
        assert 3.0 * n <= f["at_secs"] < 3.0 * (n + 1)

    # Clustered into people: D's three faces are one new person, E's is not them.
    done = _json(s, "people", "cluster")
    assert done["faces_seen"] >= 4
    faces = _video_faces(s, video_id)
    d = faces[0]["person_id"]
    assert d is not None and faces[1]["person_id"] == d and faces[2]["person_id"] == d
    assert faces[3]["person_id"] != d
    shown = _json(s, "people", "show", str(d))
    assert shown["name"] is None and shown["photos"] == 0 and shown["video_segments"] == 3
    assert shown["segments"] == [{"video_id": video_id, "segment": n} for n in range(3)]
    assert {f["face_id"] for f in shown["face_list"]} == {faces[n]["face_id"] for n in range(3)}
    listed = [p for p in _json(s, "people") if p["person_id"] == d]
    assert listed and listed[0]["faces"] == 3 and listed[0]["video_segments"] == 3

    # Named from a face first seen in the video: search lists D's segments with their times.
    name = "Dana " + uuid.uuid4().hex[:8]
    named = _json(s, "people", "name", "--face", str(faces[0]["face_id"]), name)
    assert named["person_id"] == d
    want = {0: (0.0, 3.0), 1: (3.0, 6.0), 2: (6.0, 9.0)}
    assert _segments_found(s, video_id, name) == want
    # The HTTP API and the web page alike: the segments under the name, the person's page
    # linking their video faces, each face's picture cut from its video frame when shown.
    api = client.get(f"/tags/{name}").json()["segments"]
    assert sorted(g["segment"] for g in api if g["video_id"] == video_id) == [0, 1, 2]
    page = client.get(f"/people/{d}")
    assert page.status_code == 200 and f"/videos/{video_id}" in page.text
    crop = client.get(f"/faces/{faces[0]['face_id']}/crop")  # cut from its frame
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    pic = cv2.imdecode(np.frombuffer(crop.content, np.uint8), cv2.IMREAD_COLOR)
    assert pic is not None and max(pic.shape[:2]) <= 160
    assert FaceDetector.load(s.model_dirs).detect_scored(pic), "no face in the face's picture"

    # Renamed: the new name finds the segments at once, the old one nothing.
    new = "Dora " + uuid.uuid4().hex[:8]
    assert _json(s, "people", "name", str(d), new)["person_id"] == d
    assert _segments_found(s, video_id, new) == want
    assert _segments_found(s, video_id, name) == {}
    # A replayed segment (Storm delivers a result again) keeps whose faces they are.
    with database.connect(s.services) as conn:
        assert write_segment_results(conn, results) == len(results)
    assert _segments_found(s, video_id, new) == want

    # Trashed: out of search and off the person; renamed meanwhile, then restored: its faces
    # are D's again and its segments carry the name D has now.
    assert _json(s, "delete", video_id)
    assert _segments_found(s, video_id, new) == {}
    assert _json(s, "people", "show", str(d))["video_segments"] == 0
    newer = "Dot " + uuid.uuid4().hex[:8]
    _json(s, "people", "name", str(d), newer)
    assert _json(s, "restore", video_id)
    assert {n: f["person_id"] for n, f in _video_faces(s, video_id).items()} == {
        0: d,
        1: d,
        2: d,
        3: faces[3]["person_id"],
    }
    assert _segments_found(s, video_id, newer) == want
    assert _segments_found(s, video_id, new) == {}
    new = newer

    # E named, then merged into D (say, a wrong split): E's segment carries D's name.
    other = "Eli " + uuid.uuid4().hex[:8]
    e = _json(s, "people", "name", "--face", str(faces[3]["face_id"]), other)["person_id"]
    assert _segments_found(s, video_id, other) == {3: (9.0, 12.0)}
    assert _json(s, "people", "merge", str(d), str(e))["person_id"] == d
    assert _segments_found(s, video_id, new) == {**want, 3: (9.0, 12.0)}
    assert _segments_found(s, video_id, other) == {}

    # Not D after all: the face leaves them, and its segment loses the name.
    assert _json(s, "people", "remove-face", str(faces[3]["face_id"]))["removed_from"] == d
    assert _segments_found(s, video_id, new) == want

    # Forgotten: the name finds nothing; the faces stay, undescribed and nobody's.
    assert _json(s, "people", "forget", str(d))["video_segments"] == 3
    assert _segments_found(s, video_id, new) == {}
    faces = _video_faces(s, video_id)
    assert all(f["person_id"] is None for f in faces.values())
    assert [n for n, f in faces.items() if not f["described"]] == [0, 1, 2]

    # Deleted for good: its faces go with it (only the tombstone mentions the id).
    gone = _json(s, "delete", video_id, "--permanently")
    assert gone, gone
    assert _video_faces(s, video_id) == {}
    with database.connect(s.services) as conn:
        assert traces(conn, video_id) == ["trash"]
