"""Videos end to end on the real cluster, Redis and Postgres: upload → segments → the
topology's video branch → detections, tags and vectors in Postgres → search, timeline, reid.

The clip is Debian opencv-doc's vtest.avi (pedestrians on a campus, 768x576, 10 fps, 79.5 s,
8 segments of 10 s). The walkers below were checked by eye on the frames (boxes x, y, w, h
in frame pixels): a person re-identified from segment 5 (50-60 s) must be found in
segment 6 (60-70 s) on that walker's own path, ahead of the other walkers.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from autotag.config import Settings
from autotag.pipeline import intake
from autotag.storage import database, videos
from autotag.vision.people import Box
from tests.cli import autotag, new_intake
from tests.hostile_video import make_hostile_videos, write_clip

pytestmark = pytest.mark.cluster

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
SETTLE_SECS = 480

# The man in black who stands still on the right in segment 5 and then walks up the road.
MAN_IN_BLACK_SEG5 = (56.0, (620, 292, 71, 142))
MAN_IN_BLACK_SEG6 = [
    (60.0, (620, 292, 71, 142)),
    (61.5, (620, 292, 71, 142)),
    (63.0, (541, 248, 71, 142)),
    (64.0, (487, 236, 59, 118)),
    (65.0, (458, 214, 59, 118)),
    (66.0, (449, 197, 49, 98)),
    (67.0, (455, 172, 49, 98)),
    (68.0, (474, 160, 49, 98)),
]
# The fair-haired woman in a long black coat crossing the grass towards the camera.
WOMAN_IN_COAT_SEG5 = (55.0, (212, 361, 85, 170))
WOMAN_IN_COAT_SEG6 = [
    (63.0, (332, 370, 102, 204)),
    (64.0, (319, 372, 85, 170)),
    (65.0, (306, 345, 102, 204)),
    (66.5, (245, 330, 85, 170)),
    (67.5, (186, 337, 71, 142)),
    (68.0, (142, 319, 71, 142)),
    (69.0, (96, 287, 85, 170)),
]
# The man in the red-and-black jacket who walks beside her, then up the road.
MAN_IN_JACKET_SEG6 = [
    (61.0, (523, 275, 71, 142)),
    (63.0, (603, 213, 71, 142)),
    (64.0, (635, 199, 59, 118)),
    (65.0, (628, 177, 59, 118)),
    (66.0, (609, 166, 49, 98)),
]


def _on_path(hit: dict, path: list[tuple[float, tuple[int, int, int, int]]]) -> bool:
    """The hit's box overlaps the walker's box at the nearest recorded time (within 1 s)."""
    t, box = min(path, key=lambda p: abs(p[0] - hit["at_secs"]))
    if abs(t - hit["at_secs"]) > 1.0:
        return False
    return Box(hit["x"], hit["y"], hit["w"], hit["h"], 0).iou(Box(*box, 0)) >= 0.3


def _wait_videos(s: Settings, ids: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    with database.connect(s.services) as conn:
        while True:
            status = dict(
                conn.execute(
                    "SELECT video_id, status FROM videos WHERE video_id = ANY(%s)", (ids,)
                ).fetchall()
            )
            if len(status) == len(ids) and not {"queued", "recording"} & set(status.values()):
                return status
            if time.monotonic() > deadline:
                pytest.fail(f"videos still queued after {timeout}s: {status}")
            time.sleep(2)


@pytest.fixture(scope="module")
def uploaded(autotagger: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """vtest.avi and the hostile corpus, uploaded together and settled."""
    if not VTEST.is_file():
        pytest.fail("vtest.avi missing: install Debian's opencv-doc (scripts/install-deps.sh)")
    folder = tmp_path_factory.mktemp("videos")
    expected = make_hostile_videos(folder / "hostile")
    records = intake.upload(
        [str(VTEST), str(folder / "hostile")], new_intake(autotagger), force=True
    )
    by_name = {Path(r.path).name: r for r in records}
    queued = [r.photo_id for r in records if r.status == "queued"]
    status = _wait_videos(autotagger, queued, SETTLE_SECS)
    return {"records": by_name, "expected": expected, "status": status}


def test_vtest_people_are_found_in_every_segment(autotagger: Settings, uploaded: dict) -> None:
    rec = uploaded["records"]["vtest.avi"]
    assert rec.status == "queued" and rec.segments == 8, rec
    with database.connect(autotagger.services) as conn:
        info = videos.show_video(conn, rec.video_id)
    assert info is not None and info.video["status"] == "done", info.video
    assert [s["segment"] for s in info.segments] == list(range(8))
    for seg in info.segments:
        assert seg["status"] == "done", seg
        people = seg["detections"].get("person", {})
        assert people.get("tracks", 0) >= 3, seg  # several walkers in every 10 s
        assert any(t["tag"] == "person" for t in seg["tags"]), seg["tags"]
        assert seg["frames_analysed"] <= seg["frames_decoded"] // 4, seg  # sampled, not all
    end = info.segments[-1]
    assert end["start_secs"] == pytest.approx(70.0) and end["end_secs"] == pytest.approx(79.5)


def test_search_person_lists_segments_with_time_ranges(
    autotagger: Settings, uploaded: dict
) -> None:
    vid = uploaded["records"]["vtest.avi"].video_id
    out = autotag(autotagger, "search", "person", "--json")
    assert out.returncode == 0, out.stderr
    spans = sorted(
        (h["start_secs"], h["end_secs"])
        for h in json.loads(out.stdout)
        if h.get("kind") == "video_segment" and h["video_id"] == vid
    )
    assert spans == [(10.0 * i, min(10.0 * (i + 1), 79.5)) for i in range(8)]
    text = autotag(autotagger, "search", "person")
    assert f"video {vid[:12]} #6 1:00.0-1:10.0" in text.stdout, text.stdout
    shown = autotag(autotagger, "video", "show", vid[:10])
    assert shown.returncode == 0 and "#7" in shown.stdout and "person boxes in" in shown.stdout
    failed = autotag(autotagger, "video", "list", "--status", "failed")
    assert "video frames are 4096x2304" in failed.stdout, failed.stdout


def test_reid_finds_the_man_in_black_in_the_next_segment(
    autotagger: Settings, uploaded: dict
) -> None:
    vid = uploaded["records"]["vtest.avi"].video_id
    t, box = MAN_IN_BLACK_SEG5
    with database.connect(autotagger.services) as conn:
        dets = videos.detections(conn, vid, segment=5, kind="person")
    query = [
        d
        for d in dets
        if d["has_vector"]
        and abs(d["at_secs"] - t) <= 2.0
        and Box(d["x"], d["y"], d["w"], d["h"], 0).iou(Box(*box, 0)) >= 0.5
    ]
    assert query, "the man in black was not detected with a vector around 56 s"
    out = autotag(autotagger, "reid", str(query[0]["detection_id"]), "--json", "--top", "20")
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)["results"]
    assert all((h["video_id"], h["segment"]) != (vid, 5) for h in hits)  # own segment left out
    (seg6,) = [h for h in hits if h["video_id"] == vid and h["segment"] == 6]
    assert _on_path(seg6, MAN_IN_BLACK_SEG6), seg6
    assert not _on_path(seg6, MAN_IN_JACKET_SEG6) and not _on_path(seg6, WOMAN_IN_COAT_SEG6)


def test_reid_by_image_finds_the_woman_in_the_coat_in_the_next_segment(
    autotagger: Settings, uploaded: dict, tmp_path: Path
) -> None:
    vid = uploaded["records"]["vtest.avi"].video_id
    t, (x, y, w, h) = WOMAN_IN_COAT_SEG5
    cap = cv2.VideoCapture(str(VTEST))
    cap.set(cv2.CAP_PROP_POS_FRAMES, round(t * 10))
    ok, frame = cap.read()
    cap.release()
    assert ok
    crop = tmp_path / "woman.png"
    cv2.imwrite(str(crop), frame[y : y + h, x : x + w])
    out = autotag(autotagger, "reid", str(crop), "--json", "--top", "20")
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)["results"]
    (seg6,) = [r for r in hits if r["video_id"] == vid and r["segment"] == 6]
    assert _on_path(seg6, WOMAN_IN_COAT_SEG6), seg6
    assert not _on_path(seg6, MAN_IN_BLACK_SEG6) and not _on_path(seg6, MAN_IN_JACKET_SEG6)


def test_hostile_videos_end_with_reasons(autotagger: Settings, uploaded: dict) -> None:
    records, expected = uploaded["records"], uploaded["expected"]
    with database.connect(autotagger.services) as conn:
        for name, (outcome, why) in expected.items():
            rec = records[name]
            if outcome == "rejected":
                assert rec.status == "rejected" and why in (rec.reason or ""), (name, rec)
                if rec.video_id:  # stored bytes: the failure is kept with its reason
                    assert videos.video_status(conn, rec.video_id) == "failed", name
                continue
            info = videos.show_video(conn, rec.video_id)
            assert info is not None and info.video["status"] == "done", (name, info.video)
            if outcome == "partial":
                assert why in (info.video["reason"] or ""), (name, info.video)
                failed = [s for s in info.segments if s["status"] == "failed"]
                assert failed and all("no frames decoded" in s["reason"] for s in failed)
            for seg in info.segments:
                assert seg["attempts"] <= 1, (name, seg)  # never replayed
    with database.connect(autotagger.services) as conn:
        still = videos.show_video(conn, records["still.avi"].video_id)
    # Still footage costs little: one frame per 5 s plus each segment's first.
    assert sum(s["frames_analysed"] for s in still.segments) <= 9, still.segments


def test_camera_plays_a_file_and_an_empty_fifo_fails(
    autotagger: Settings, uploaded: dict, tmp_path: Path
) -> None:
    clip = write_clip(tmp_path / "walk.avi", 3.0, seed=7)
    out = autotag(
        autotagger, "camera", str(clip), "--name", "gate", "--segment-secs", "1.5", "--json"
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    run = lines[-1]
    assert run["status"] == "queued" and run["segments"] == 2 and run["frames"] == 30, run
    assert [(s["start_secs"], s["end_secs"]) for s in lines[:-1]] == [(0.0, 1.5), (1.5, 3.0)]
    status = _wait_videos(autotagger, [run["video_id"]], 120)
    assert status[run["video_id"]] == "done"
    with database.connect(autotagger.services) as conn:
        info = videos.show_video(conn, run["video_id"])
    assert info.video["camera"] == "gate" and info.video["kind"] == "camera"

    fifo = tmp_path / "nothing.fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    empty = autotag(autotagger, "camera", str(fifo), "--name", "dead", "--stall-secs", "2")
    assert empty.returncode == 1
    assert "no frame from the source for 2 s" in empty.stderr, empty.stderr
    assert time.monotonic() - started < 60

    # The topology is alive after all of that: a fresh clip is analysed.
    fresh = write_clip(tmp_path / "after.avi", 2.0, seed=int(time.time()) % 1000)
    (rec,) = intake.upload([str(fresh)], new_intake(autotagger))
    assert _wait_videos(autotagger, [rec.photo_id], 120)[rec.photo_id] == "done"


def test_http_api_serves_segments_timeline_and_reid(autotagger: Settings, uploaded: dict) -> None:
    from fastapi.testclient import TestClient

    from autotag.web.app import create_app

    vid = uploaded["records"]["vtest.avi"].video_id
    with TestClient(create_app(autotagger, token="video-test"), base_url="http://127.0.0.1") as c:
        assert c.get(f"/videos/{vid}").status_code == 401  # the same token guard as photos
        c.headers["Authorization"] = "Bearer video-test"

        def get(path: str) -> dict:
            resp = c.get(path)
            assert resp.status_code == 200, resp.text
            return resp.json()

        tagged = get("/tags/person")
        assert {(g["video_id"], g["segment"]) for g in tagged["segments"]} >= {
            (vid, i) for i in range(8)
        }
        timeline = get(f"/videos/{vid}")
        assert timeline["status"] == "done" and len(timeline["segments"]) == 8
        with database.connect(autotagger.services) as conn:
            det = next(d for d in videos.detections(conn, vid, 5, "person") if d["has_vector"])
        found = get(f"/reid/{det['detection_id']}?top=3")
        assert found["query"]["detection_id"] == det["detection_id"]
        assert len(found["results"]) == 3
        assert c.get("/reid/999999999").status_code == 404
        assert c.get("/videos/nosuchvideo").status_code == 404


def test_a_face_first_seen_in_a_video_is_stored_named_and_searched(
    autotagger: Settings, uploaded: dict, tmp_path: Path
) -> None:
    """Through the topology: a video of someone nobody knows (person F of tests/data/faces,
    in no other test) gets their face stored with its descriptor, segment and time; naming
    that face makes `autotag search NAME` list the segment; forgetting them undoes it."""
    img = cv2.imread(str(Path(__file__).resolve().parents[1] / "data" / "faces" / "img22.jpg"))
    assert img is not None
    k = min(640 / img.shape[1], 480 / img.shape[0])
    small = cv2.resize(img, (round(img.shape[1] * k), round(img.shape[0] * k)))
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[: small.shape[0], : small.shape[1]] = small
    path = tmp_path / "f.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 2.0, (640, 480))
    for _ in range(8):  # 4 s: one segment
        out.write(frame)
    out.release()
    (rec,) = intake.upload([str(path)], new_intake(autotagger), force=True)
    assert rec.status == "queued", rec
    vid = rec.photo_id
    assert _wait_videos(autotagger, [vid], SETTLE_SECS) == {vid: "done"}
    with database.connect(autotagger.services) as conn:
        rows = conn.execute(
            "SELECT face_id, segment, person_id, at_secs, embedding IS NOT NULL FROM faces "
            "WHERE video_id = %s",
            (vid,),
        ).fetchall()
    assert len(rows) == 1, rows  # one face track
    face_id, segment, person_id, at_secs, described = rows[0]
    assert segment == 0 and person_id is None and described and 0.0 <= at_secs < 4.0

    def found(name: str) -> list[tuple[int, float, float]]:
        out = autotag(autotagger, "search", name, "--json")
        assert out.returncode == 0, out.stderr
        return [
            (h["segment"], h["start_secs"], h["end_secs"])
            for h in json.loads(out.stdout)
            if h.get("kind") == "video_segment" and h["video_id"] == vid
        ]

    name = "Fay " + uuid.uuid4().hex[:8]
    named = autotag(autotagger, "people", "name", "--face", str(face_id), name, "--json")
    assert named.returncode == 0, named.stderr
    assert found(name) == [(0, 0.0, pytest.approx(4.0))]
    person = str(json.loads(named.stdout)["person_id"])
    assert autotag(autotagger, "people", "forget", person).returncode == 0
    assert found(name) == []
