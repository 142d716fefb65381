"""The JSON endpoints behind the library's pages (people, places, timeline, learned tags,
face crops) over real Redis and Postgres with FastAPI's TestClient, and the OpenAPI schema
listing them; each refuses without the token."""

from __future__ import annotations

import uuid
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from autotag.config import Settings
from autotag.contract import FaceFound, PhotoResult, Tag
from autotag.learning import samples
from autotag.storage import database, learned, writer
from tests.integration.test_http_api import api_settings, app_client, bare, client  # noqa: F401

pytestmark = pytest.mark.services


def _photo(http: TestClient) -> str:
    src = next(p for p in samples.package_photos() if p.name == "astronaut.png")
    img = cv2.imread(str(src), cv2.IMREAD_COLOR)
    img[0, 0] = np.frombuffer(uuid.uuid4().bytes[:3], np.uint8)
    data = cv2.imencode(".jpg", img)[1].tobytes()
    r = http.post("/photos", content=data, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 202, r.text
    return str(r.json()["photo_id"])


def _store(s: Settings, pid: str, **extra: Any) -> None:
    with database.connect(s.services) as conn:
        writer.write_results(
            conn, [PhotoResult(pid, "tagged", "v1", "cnn@1", extra.pop("tags", []), None, **extra)]
        )


def test_people_endpoints_and_face_crop(client: TestClient, api_settings: Settings) -> None:  # noqa: F811
    pid = _photo(client)
    emb = np.random.default_rng(7).normal(size=128).astype(np.float32)
    face = FaceFound((180, 60, 120, 150), 0.97, 0.8, emb / np.linalg.norm(emb))
    _store(api_settings, pid, faces=[face], width=512, height=512)
    faces = client.get(f"/photos/{pid}/faces").json()["faces"]
    assert [f["box"] for f in faces] == [[180, 60, 120, 150]] and faces[0]["person"] is None
    fid = faces[0]["face_id"]

    crop = client.get(f"/faces/{fid}/crop")
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(crop.content, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and max(img.shape[:2]) <= 160 and img.shape[0] > img.shape[1]
    assert client.get("/faces/999999999/crop").status_code == 404

    name = f"Grace {uuid.uuid4().hex[:5]}"
    r = client.post(f"/faces/{fid}/name", json={"name": name})
    assert r.status_code == 200 and r.json()["name"] == name
    person = r.json()["person_id"]
    listed = {p["person_id"]: p for p in client.get("/api/people").json()}
    assert listed[person]["name"] == name and listed[person]["faces"] == 1
    assert client.get(f"/api/people/{person}").json()["photo_ids"] == [pid]
    found = client.get("/search", params={"q": name.lower()}).json()["results"]
    assert [h["photo_id"] for h in found] == [pid]
    assert client.post(f"/api/people/{person}/name", json={"name": "  "}).status_code == 400
    assert client.post("/api/people/999999999/name", json={"name": "x"}).status_code == 404
    r = client.post(f"/api/people/{person}/merge", json={"other": 999999999})
    assert r.status_code == 404 and "999999999" in r.json()["error"]
    assert client.post("/api/people/999999999/forget", json={}).status_code == 404
    assert client.post("/faces/999999999/remove", json={}).status_code == 404
    assert listed[person]["name"] == client.get(f"/api/people/{person}").json()["name"]

    r = client.post(f"/faces/{fid}/remove", json={})
    assert r.status_code == 200 and r.json()["removed_from"] == person
    assert client.get("/search", params={"q": name.lower()}).json()["results"] == []
    assert client.post(f"/api/people/{person}/forget", json={}).status_code == 200
    assert client.get(f"/api/people/{person}").status_code == 404


def test_places_timeline_and_order_taken(client: TestClient, api_settings: Settings) -> None:  # noqa: F811
    word = f"t{uuid.uuid4().hex[:8]}"
    old, new = _photo(client), _photo(client)
    place = {"place": "Reykjavik, Capital Region, Iceland", "latitude": 64.14, "longitude": -21.9}
    _store(api_settings, old, tags=[Tag(word, 0.9)], taken_local="2098-01-02T03:04:05", **place)
    _store(api_settings, new, tags=[Tag(word, 0.5)], taken_local="2098-03-02T03:04:05")
    iceland = [c for c in client.get("/api/places").json() if c["country"] == "Iceland"]
    assert iceland and iceland[0]["tag"] == "iceland" and iceland[0]["photos"] >= 1
    assert {"city": "Reykjavik", "tag": "reykjavik", "photos": iceland[0]["photos"]} in iceland[0][
        "cities"
    ]
    hits = client.get("/api/timeline", params={"limit": 500}).json()["results"]
    taken = [h["taken_local"] for h in hits]
    assert taken == sorted(taken, reverse=True)
    assert [h["photo_id"] for h in hits if h["photo_id"] in (old, new)] == [new, old]
    by_score = client.get("/search", params={"q": word}).json()["results"]
    by_taken = client.get("/search", params={"q": word, "order": "taken"}).json()["results"]
    assert [h["photo_id"] for h in by_score] == [old, new]
    assert [h["photo_id"] for h in by_taken] == [new, old]


def test_learned_endpoints(client: TestClient, api_settings: Settings) -> None:  # noqa: F811
    tag = f"l{uuid.uuid4().hex[:8]}"
    pid = _photo(client)
    with database.connect(api_settings.services) as conn:
        learned.save_state(
            conn, tag, "learned", "", bundle_id=None, n_pos=5, n_neg=3, precision=0.9,
            recall=0.6, threshold=0.5, labels_seen="x",
        )  # fmt: skip
        conn.execute(
            "INSERT INTO labels (photo_id, tag, positive) VALUES (%s, %s, true)", (pid, tag)
        )
    [item] = [t for t in client.get("/api/learned").json() if t["tag"] == tag]
    assert item["example_ids"] == [pid] and item["precision"] == 0.9
    assert item["examples"] == {"positive": 5, "negative": 3}
    # Not in the active bundle (no bundle here, or one without the tag): no guesses to offer.
    r = client.get(f"/api/learned/{tag}/doubtful")
    assert r.status_code == 404 and r.json()["error"]
    assert client.post("/api/learned/no-such-tag/forget", json={}).status_code == 404
    # A tag asking before it is published: its unanswered questions, in the order asked; a
    # label on a photo answers it, a photo deleted since is not waited for.
    asking = f"q{uuid.uuid4().hex[:8]}"
    other = _photo(client)
    with database.connect(api_settings.services) as conn:
        learned.save_state(
            conn, asking, "asking", "asking", bundle_id=None, n_pos=5, n_neg=0,
            precision=0.9, recall=0.6, threshold=0.5, labels_seen="x", phase="near",
            questions=[other, "f" * 64, pid],
        )  # fmt: skip
    r = client.get(f"/api/learned/{asking}/questions")
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["photos"] == [other, pid] and got["phase"] == "near" and got["asked"] == 3
    [item] = [t for t in client.get("/api/learned").json() if t["tag"] == asking]
    assert item["questions"] == [other, pid] and item["status"] == "asking"
    with database.connect(api_settings.services) as conn:
        conn.execute(
            "INSERT INTO labels (photo_id, tag, positive) VALUES (%s, %s, false)", (pid, asking)
        )
    assert client.get(f"/api/learned/{asking}/questions").json()["photos"] == [other]
    # A tag not asking (learned) has nothing to answer; an unknown tag is a 404.
    assert client.get(f"/api/learned/{tag}/questions").json()["photos"] == []
    assert client.get("/api/learned/no-such-tag/questions").status_code == 404


def test_openapi_lists_the_library_endpoints(client: TestClient, bare: TestClient) -> None:  # noqa: F811
    paths = client.get("/openapi.json").json()["paths"]
    mine = [
        "/api/people",
        "/api/people/{person_id}",
        "/api/people/{person_id}/name",
        "/api/people/{person_id}/merge",
        "/api/people/{person_id}/forget",
        "/photos/{photo_id}/faces",
        "/faces/{face_id}/name",
        "/faces/{face_id}/remove",
        "/faces/{face_id}/crop",
        "/api/timeline",
        "/api/places",
        "/api/learned",
        "/api/learned/{tag}/forget",
        "/api/learned/{tag}/doubtful",
        "/api/learned/{tag}/questions",
        "/photos/{photo_id}",
        "/trash",
        "/trash/{item_id}/restore",
        "/trash/empty",
    ]
    for p in mine:
        assert p in paths, p
    assert "taken" in str(paths["/search"]["get"]["parameters"])
    for p in [*mine, "/deleted", "/people", "/places", "/learned", "/people/1", "/ui/timeline"]:
        url = p.replace("{person_id}", "1").replace("{face_id}", "1").replace("{tag}", "x")
        url = url.replace("{photo_id}", "0" * 64).replace("{item_id}", "0" * 64)
        for method in ("GET", "POST", "DELETE"):
            r = bare.request(
                method, url, content=b"{}", headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 401, (method, url)
