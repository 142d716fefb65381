"""The HTTP API over real Redis and Postgres, driven with FastAPI's TestClient.

Every endpoint with good and bad input: a wrong or missing token, a foreign Host header, a
non-image, an oversized body, malformed JSON. A last test runs the app under uvicorn on a
real socket for what only a server shows: the live feed's events and a refused big body.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import stat
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from autotag.cli import cli
from autotag.config import Settings
from autotag.contract import PhotoResult
from autotag.learning import samples
from autotag.learning.datasets import read_labels, resolve_photos
from autotag.ops.web_token import read_token, token_file
from autotag.storage import database, item_stream, tag_search, writer
from autotag.storage.item_stream import ItemStream
from tests.cli import autotag
from tests.integration.library_client import on_socket, own_streams, token_clients

pytestmark = pytest.mark.services

LIMIT = 400_000  # big enough for a sample photo, small enough to exceed cheaply
VIDEO_LIMIT = 9_000_000  # vtest.avi (8.1 MB) fits
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


@pytest.fixture(scope="module")
def api_settings(services: Settings) -> Iterator[Settings]:
    with own_streams(services, max_file_bytes=LIMIT, max_video_bytes=VIDEO_LIMIT) as s:
        yield s


@pytest.fixture(scope="module")
def app_client(api_settings: Settings) -> Iterator[tuple[TestClient, TestClient, str]]:
    """An authenticated and a bare client of one app, and the run directory's real token."""
    with token_clients(api_settings) as clients:
        yield clients


@pytest.fixture()
def client(app_client: tuple[TestClient, TestClient, str]) -> TestClient:
    return app_client[0]


@pytest.fixture()
def bare(app_client: tuple[TestClient, TestClient, str]) -> TestClient:
    """The same app with no credentials at all."""
    app_client[1].cookies.clear()
    return app_client[1]


def body(n: int = 300) -> bytes:
    return (uuid.uuid4().bytes * (n // 16 + 1))[:n]


def upload(client: TestClient, data: bytes, **params: Any) -> tuple[int, dict[str, Any]]:
    r = client.post("/photos", content=data, params=params, headers={"Content-Type": "image/jpeg"})
    return r.status_code, r.json()


def tag_photos(s: Settings, rows: dict[str, list[tuple[Any, ...]]], vec: bool = False) -> None:
    """Store results the way the DB writer does: (tag, score) or (tag, score, kind, via)."""
    v = np.ones(1280, dtype=np.float32) / np.sqrt(1280) if vec else None
    with database.connect(s.services) as conn:
        writer.write_results(
            conn,
            [PhotoResult(pid, "tagged", "v1", "cnn@1", tags, v) for pid, tags in rows.items()],
        )


# -- uploads -----------------------------------------------------------------------------------


def test_upload_raw_then_duplicate(client: TestClient, api_settings: Settings) -> None:
    data = body()
    code, out = upload(client, data, name="beach.jpg")
    assert code == 202
    assert out["photo_id"] == hashlib.sha256(data).hexdigest()
    assert (out["status"], out["source"], out["bytes"]) == ("queued", "beach.jpg", len(data))
    code, out = upload(client, data)
    assert code == 200 and out["status"] == "duplicate"
    stream = ItemStream(api_settings.services, api_settings.queue)
    entries = stream.read("t", count=100, block_ms=50)
    stream.redis.close()
    assert [e.item_id for e in entries] == [hashlib.sha256(data).hexdigest()]


def test_upload_binary_safe_and_no_directories(client: TestClient) -> None:
    data = body(200) + b"\r\n--\r\n\r\n" + bytes(range(256))
    r = client.post(
        "/photos",
        content=data,
        headers={"Content-Type": "image/png", "X-Filename": "..\\..\\etc/cat.png"},
    )
    assert r.status_code == 202, r.text
    assert r.json()["photo_id"] == hashlib.sha256(data).hexdigest()
    assert r.json()["source"] == "cat.png"  # no directories from the client


def test_upload_refuses_what_is_not_an_image(client: TestClient) -> None:
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"):
        r = client.post("/photos", content=body(), headers={"Content-Type": ctype})
        assert r.status_code == 415, ctype
        assert "image" in r.json()["error"]
    r = client.post("/photos", content=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 415 and "image/" in r.json()["error"]


def test_upload_too_large_and_length_required(client: TestClient) -> None:
    code, out = upload(client, body(LIMIT + 1))
    assert code == 413 and "limit" in out["error"]

    def chunks() -> Iterator[bytes]:
        yield b"hello"

    r = client.post("/photos", content=chunks(), headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 411 and "Content-Length" in r.json()["error"]


def post_video(client: TestClient, data: bytes, name: str, **params: Any) -> Any:
    return client.post(
        "/videos",
        content=data,
        params={"name": name, **params},
        headers={"Content-Type": "video/x-msvideo"},
    )


def test_upload_a_video_splits_it_into_queued_segments(
    client: TestClient, api_settings: Settings
) -> None:
    """vtest.avi (79.5 s at 10 fps) over HTTP: stored, probed, 8 segments of 10 s queued on
    the segment stream, as `autotag upload` does; the same bytes again are a duplicate."""
    if not VTEST.exists():
        pytest.fail("vtest.avi missing: install Debian's opencv-doc (scripts/install-deps.sh)")
    data = VTEST.read_bytes()
    r = post_video(client, data, "campus/vtest.avi")
    assert r.status_code == 202, r.text
    out = r.json()
    vid = hashlib.sha256(data).hexdigest()
    assert (out["video_id"], out["status"], out["source"]) == (vid, "queued", "vtest.avi")
    assert out["segments"] == 8 and out["duration_secs"] == pytest.approx(79.5, abs=0.2)
    segments = item_stream.segment_stream(api_settings.services, api_settings.queue)
    entries = segments.read("t", count=100, block_ms=50)
    segments.redis.close()
    assert len(entries) == 8
    timeline = client.get(f"/videos/{vid}").json()
    assert timeline["status"] == "queued" and len(timeline["segments"]) == 8
    assert post_video(client, data, "again.avi").json()["status"] == "duplicate"
    assert not list((api_settings.run_dir / "uploads").iterdir())  # no temporary file left


def test_upload_video_refuses_hostile_and_oversized_files(
    client: TestClient, api_settings: Settings, tmp_path: Path
) -> None:
    from tests.hostile_video import _patch_frame_count, write_clip

    # A header promising 10^8 frames: refused with the limit named, kept as a failed video.
    one = write_clip(tmp_path / "one.avi", 0.1, seed=7).read_bytes()
    endless = _patch_frame_count(one, 10**8)
    r = post_video(client, endless, "endless.avi")
    assert r.status_code == 422 and "long, limit" in r.json()["error"], r.text
    vid = r.json()["video_id"]
    assert client.get(f"/videos/{vid}").json()["status"] == "failed"
    # Not a video by its bytes, whatever the name and type say.
    r = post_video(client, b"this is not a video\n" * 20, "notes.mp4")
    assert r.status_code == 415 and "not a video by its bytes" in r.json()["error"]
    ok, png = cv2.imencode(".png", np.full((48, 64, 3), 90, np.uint8))
    r = post_video(client, png.tobytes(), "picture.avi")
    assert r.status_code == 415 and "89 50 4e 47" in r.json()["error"]
    assert post_video(client, b"", "empty.avi").status_code == 400
    # Limits before a byte is stored: size, length required, a video content type.
    r = post_video(client, b"\0" * (VIDEO_LIMIT + 1), "big.avi")
    assert r.status_code == 413 and "video limit" in r.json()["error"]

    def chunks() -> Iterator[bytes]:
        yield one

    r = client.post("/videos", content=chunks(), headers={"Content-Type": "video/x-msvideo"})
    assert r.status_code == 411
    r = client.post("/videos", content=one, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 415 and "video/" in r.json()["error"]
    assert not list((api_settings.run_dir / "uploads").iterdir())


# -- reading -----------------------------------------------------------------------------------


def test_photo_tags_stats(client: TestClient, api_settings: Settings) -> None:
    _, out = upload(client, body(), name="dog.jpg")
    pid = out["photo_id"]
    info = client.get(f"/photos/{pid}").json()
    assert info["status"] == "queued" and info["tags"] == []
    word = f"golden retriever {uuid.uuid4().hex[:6]}"
    tag_photos(api_settings, {pid: [(word, 0.75)]})
    r = client.get(f"/photos/{pid.upper()}")
    info = r.json()
    assert r.status_code == 200 and info["status"] == "tagged" and info["model_version"] == "v1"
    assert info["tags"] == [{"tag": word, "score": 0.75, "kind": "leaf", "via": None}]
    assert info["has_vector"] is False
    r = client.get(f"/tags/{urllib.parse.quote(word.upper())}?min_score=0.5&limit=5")
    assert r.status_code == 200 and [h["photo_id"] for h in r.json()["results"]] == [pid]
    r = client.get(f"/tags/{urllib.parse.quote(word)}?min_score=0.8")
    assert r.status_code == 200 and r.json()["results"] == []
    st = client.get("/stats").json()
    assert st["by_status"]["tagged"] >= 1 and "top_tags" in st


def test_errors_are_json(client: TestClient) -> None:
    def check(r: Any, code: int, words: str) -> None:
        assert r.status_code == code, r.text
        assert r.headers["content-type"] == "application/json"
        assert words in r.json()["error"], r.json()

    check(client.get("/photos/not-an-id"), 400, "64 hex")
    check(client.get(f"/photos/{'0' * 64}"), 404, "no photo")
    check(client.get("/tags/x?limit=abc"), 400, "limit")
    check(client.get("/tags/x?limit=0"), 400, "limit")
    check(client.get("/search?tag=x&order=sideways"), 400, "order")
    check(client.get("/nope"), 404, "no such endpoint: /nope")
    r = client.delete(f"/photos/{'0' * 64}", headers={"Content-Type": "application/json"})
    check(r, 404, "no photo")  # deleting exists (the trash); an unknown photo says so
    r = client.put(f"/photos/{'0' * 64}", headers={"Content-Type": "application/json"})
    check(r, 405, "PUT is not supported")


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"ok": True, "postgres": "ok", "redis": "ok"}


def test_similar(client: TestClient, api_settings: Settings) -> None:
    r = client.get(f"/similar/{'0' * 64}?top=3")
    assert r.status_code == 404 and "no photo" in r.json()["error"]
    a = upload(client, body())[1]["photo_id"]
    r = client.get(f"/similar/{a}")
    assert r.status_code == 404 and "no feature vector yet" in r.json()["error"]
    b = upload(client, body())[1]["photo_id"]
    tag_photos(api_settings, {a: [("sim", 0.5)], b: [("sim", 0.5)]}, vec=True)
    r = client.get(f"/similar/{a}?top=3")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["photo_id"] == a and b in [h["photo_id"] for h in out["results"]]
    assert a not in [h["photo_id"] for h in out["results"]]


def test_search_and_tags_autocomplete_cloud(
    client: TestClient, api_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    word = f"zz{uuid.uuid4().hex[:6]}"
    dog, cat, grass = f"{word} dog", f"{word} cat", f"{word} grass"
    ids = [upload(client, body())[1]["photo_id"] for _ in range(4)]
    tag_photos(
        api_settings,
        {
            ids[0]: [(dog, 0.9), (grass, 0.6)],
            ids[1]: [(dog, 0.7), (grass, 0.2)],
            ids[2]: [(cat, 0.8), (grass, 0.9)],
            ids[3]: [(dog, 0.4)],
        },
    )

    def found(**params: Any) -> list[str]:
        r = client.get("/search", params=params)
        assert r.status_code == 200, r.text
        return [h["photo_id"] for h in r.json()["results"]]

    assert found(tag=[dog.upper()]) == [ids[0], ids[1], ids[3]]  # any case, best first
    assert found(tag=[dog, grass]) == [ids[0], ids[1]]  # AND; scored by the weaker tag
    assert found(tag=[dog, grass], min_score=0.5) == [ids[0]]
    assert found(tag=[dog], order="newest") == [ids[3], ids[1], ids[0]]
    page = client.get("/search", params={"tag": dog, "limit": 2, "offset": 2}).json()
    assert page["total"] == 3 and page["more"] is False and len(page["results"]) == 1
    assert page["total_capped"] is False
    assert client.get("/search", params={"tag": dog, "limit": 2}).json()["more"] is True
    # Corrections feed search: a removed tag stops matching, an added one starts.
    assert client.post(f"/photos/{ids[0]}/labels", json={"tag": dog, "positive": False}).is_success
    assert client.post(f"/photos/{ids[2]}/labels", json={"tag": dog, "positive": True}).is_success
    assert found(tag=[dog]) == [ids[2], ids[1], ids[3]]
    assert found(tag=[dog], order="newest") == [ids[3], ids[2], ids[1]]
    monkeypatch.setattr(tag_search, "DENSE_TAG", 0)  # the walk for tags on many photos
    assert found(tag=[dog], order="newest") == [ids[3], ids[2], ids[1]]
    assert found(tag=[dog], order="newest", min_score=0.5) == [ids[2], ids[1]]
    # Typed words (the page's box): two words, each naming the tags that contain it, AND;
    # corrections count as they do for whole tags. Words are looked up in the tag counts,
    # cached for 30 s: drop the cache so these new tags are in it.
    client.app.state.web.cache.pop("tag_counts", None)  # type: ignore[attr-defined]
    assert found(q=f"{word} dog") == [ids[2], ids[1], ids[3]]
    assert found(q=f"{word.upper()}  DOG", order="newest") == [ids[3], ids[2], ids[1]]
    assert found(q=f"{word} grass", min_score=0.5) == [ids[2], ids[0]]
    page = client.get("/search", params={"q": f"{word} dog"}).json()
    assert [t["text"] for t in page["terms"]] == [word, "dog"]
    assert page["terms"][0]["tags"][grass] == "word" and page["total"] == 3

    sugg = client.get("/autocomplete", params={"q": word.upper()}).json()["suggestions"]
    assert [s["tag"] for s in sugg] == [dog, grass, cat] and sugg[0]["photos"] == 3
    sugg = client.get("/autocomplete", params={"q": "gras"}).json()["suggestions"]
    assert grass in [s["tag"] for s in sugg]  # a word inside a longer tag
    assert client.get("/autocomplete", params={"q": "%"}).json()["suggestions"] == []
    cloud = {t["tag"]: t["photos"] for t in client.get("/tagcloud?top=500").json()["tags"]}
    assert cloud.get(grass) == 3 or len(cloud) == 500


def test_typed_words_find_concepts_plurals_and_synonyms(
    client: TestClient, api_settings: Settings, default_bundle: str
) -> None:
    """One box of words (``q``) reads as ``autotag search`` does, with the active bundle's
    vocabulary: "dogs" finds a dog concept, "automobile" a car."""
    client.app.state.web.cache.pop("vocabulary", None)  # type: ignore[attr-defined]
    dog, car, cat = (upload(client, body())[1]["photo_id"] for _ in range(3))
    tag_photos(
        api_settings,
        {
            dog: [("dog", 0.97, "concept", "malamute"), ("malamute", 0.6)],
            car: [("car", 0.96, "concept", "cab")],
            cat: [("cat", 0.95, "concept", "tabby")],
        },
    )

    def found(q: str) -> dict[str, Any]:
        r = client.get("/search", params={"q": q, "limit": 1000})
        assert r.status_code == 200, r.text
        return {h["photo_id"]: h for h in r.json()["results"]}

    for q in ("dog", "dogs", "Dogs"):
        hits = found(q)
        assert dog in hits and car not in hits and cat not in hits, q
    assert (hits[dog]["kind"], hits[dog]["via"], hits[dog]["match"]) == (
        "concept",
        "malamute",
        "plural",
    )
    hits = found("automobile")
    assert car in hits and dog not in hits and hits[car]["match"] == "synonym"
    both = found("dog automobile")  # AND: no photo is tagged both
    assert dog not in both and car not in both
    r = client.get("/tags/dogs", params={"limit": 1000})
    assert dog in [h["photo_id"] for h in r.json()["results"]]
    r = client.get("/search", params={"q": "dogs", "order": "newest", "limit": 1000})
    assert r.status_code == 200 and dog in [h["photo_id"] for h in r.json()["results"]]


def test_cli_and_api_find_the_same_photos_in_the_same_order(
    client: TestClient, api_settings: Settings, default_bundle: str
) -> None:
    """``autotag search`` and ``/search?q=`` are one query: the same words give the same
    photos in the same order (synonyms, plurals, AND, min score, newest first, words)."""
    w = "zq" + uuid.uuid4().hex[:6]
    ids = [upload(client, body())[1]["photo_id"] for _ in range(5)]
    tag_photos(
        api_settings,
        {
            ids[0]: [("dog", 0.91, "concept", "malamute"), (f"{w} sand", 0.4)],
            ids[1]: [("dog", 0.62, "concept", "pug"), (f"{w} sand", 0.8)],
            ids[2]: [("car", 0.88, "concept", "cab"), (f"{w} sand", 0.7)],
            ids[3]: [("dog", 0.35, "concept", "pug")],
            ids[4]: [(f"{w} sand", 0.95), ("malamute", 0.5)],
        },
    )
    for key in ("vocabulary", "tag_counts"):
        client.app.state.web.cache.pop(key, None)  # type: ignore[attr-defined]

    def api(q: str, **params: Any) -> list[str]:
        r = client.get("/search", params={"q": q, "limit": 1000, **params})
        assert r.status_code == 200, r.text
        return [h["photo_id"] for h in r.json()["results"]]

    def cli(q: str, *args: str) -> list[str]:
        r = autotag(api_settings, "search", q, "--limit", "1000", "--json", *args)
        assert r.returncode == 0, r.stderr
        return [h["photo_id"] for h in json.loads(r.stdout) if "photo_id" in h]

    cases = [
        ("dogs", (), {}),  # a plural of a concept
        ("automobile", (), {}),  # a synonym
        (f"dog {w}", (), {}),  # AND, the second a word of a longer tag
        (f"dogs {w}", ("--min-score", "0.5"), {"min_score": 0.5}),
        (f"{w}", ("--order", "newest"), {"order": "newest"}),
        (f"{w} sand malamute", (), {}),
    ]
    for q, args, params in cases:
        assert cli(q, *args) == api(q, **params), q
    assert cli(f"dog {w}") == [ids[1], ids[0]]  # best first, by the weaker term
    assert cli(f"dogs {w}", "--min-score", "0.5") == [ids[1]]
    assert cli(w, "--order", "newest") == [ids[4], ids[2], ids[1], ids[0]]
    assert ids[2] in cli("automobile") and ids[0] not in cli("automobile")


def test_labels_export_as_training_data(
    client: TestClient, api_settings: Settings, tmp_path: Path
) -> None:
    a, b = (upload(client, body())[1]["photo_id"] for _ in range(2))
    r = client.post(f"/photos/{a}/labels", json={"tag": "sunset", "positive": True})
    assert r.status_code == 201 and r.json()["positive"] is True
    client.post(f"/photos/{a}/labels", json={"tag": "dog", "positive": True})
    client.post(f"/photos/{a}/labels", json={"tag": "dog", "positive": False})  # changed mind
    client.post(f"/photos/{b}/labels", json={"tag": "sunset", "positive": False})
    got = client.get(f"/photos/{a}/labels").json()["labels"]
    assert {(x["tag"], x["positive"]) for x in got} == {("sunset", True), ("dog", False)}

    r = client.get("/labels.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    path = tmp_path / "labels.csv"
    path.write_text(r.text)
    ls = read_labels(path)  # the reader `autotag train --labels` uses
    y = {
        (c, p): int(ls.Y[ls.photo_ids.index(p), ls.classes.index(c)])
        for c in ls.classes
        for p in ls.photo_ids
        if ls.Y[ls.photo_ids.index(p), ls.classes.index(c)] >= 0
    }
    assert y[("sunset", a)] == 1 and y[("sunset", b)] == 0 and y[("dog", a)] == 0

    r = client.delete(f"/photos/{a}/labels/dog", headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(client.get("/labels.csv").text)))
    assert ["dog", a, "FALSE"] not in rows and ["sunset", a, "TRUE"] in rows
    r = client.delete(f"/photos/{a}/labels/dog", headers={"Content-Type": "application/json"})
    assert r.status_code == 404

    bad = [
        ({"tag": "a,b", "positive": True}, 400, "comma"),
        ({"tag": "", "positive": True}, 400, "tag"),
        ({"positive": True}, 400, "tag"),
        ({"tag": "x", "positive": "maybe"}, 400, "positive"),
    ]
    for payload, code, words in bad:
        r = client.post(f"/photos/{a}/labels", json=payload)
        assert r.status_code == code and words in r.json()["error"], (payload, r.text)
    r = client.post(f"/photos/{'1' * 64}/labels", json={"tag": "x", "positive": True})
    assert r.status_code == 404 and "no photo" in r.json()["error"]
    r = client.post(
        f"/photos/{a}/labels",
        content=b'{"tag": "x", ',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]


def test_image_and_thumbnails(client: TestClient, api_settings: Settings) -> None:

    photo = next(p for p in samples.package_photos() if p.name == "chelsea.png")
    data = photo.read_bytes()
    pid = upload(client, data, name="chelsea.png")[1]["photo_id"]
    r = client.get(f"/photos/{pid}/image")
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "image/png" and r.headers["x-content-type-options"]
    r = client.get(f"/photos/{pid}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    thumb = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert max(thumb.shape[:2]) == 320 and len(r.content) < len(data) / 4
    cached = api_settings.data_dir / "thumbnails" / pid[:2] / f"{pid}.jpg"
    assert cached.read_bytes() == r.content  # made once, kept next to the blobs

    junk = b"this is not a picture at all" * 10
    pid = upload(client, junk, name="notes.jpg")[1]["photo_id"]
    r = client.get(f"/photos/{pid}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
    assert "not an image" in r.headers["x-thumbnail-error"]
    assert b"not an image" in r.content and b"<script" not in r.content
    r = client.get(f"/photos/{pid}/image")
    assert r.status_code == 415 and "not an image" in r.json()["error"]
    assert client.get(f"/photos/{'2' * 64}/image").status_code == 404


def test_status_and_models_api(client: TestClient, api_settings: Settings) -> None:
    # Nothing takes photos off this module's stream (no cluster runs): each new photo queued
    # here waits in it, so the backlog the Status page shows grows by exactly one per new
    # upload, and not for a duplicate.
    earlier = client.get("/api/status").json()
    before, queued = earlier["queue"]["backlog"], earlier["photos"]["queued"]
    new = [body() for _ in range(3)]
    assert [upload(client, data)[0] for data in new] == [202, 202, 202]
    assert upload(client, new[0])[1]["status"] == "duplicate"
    st = client.get("/api/status").json()
    names = {s["name"] for s in st["services"]}
    assert {"redis", "postgres", "nimbus", "web"} <= names
    assert {s["name"]: s["healthy"] for s in st["services"]}["redis"] is True
    assert st["queue"]["backlog"] == before + 3
    assert st["photos"]["queued"] == queued + 3 and "tagged" in st["photos"]
    assert (
        len(st["tagged_per_minute"]) == 15
        and sum(m["photos"] for m in st["tagged_per_minute"]) >= 1
    )
    models = client.get("/api/models").json()
    assert isinstance(models["models"], list)
    r = client.post("/api/models/no-such-model/activate", json={})
    assert r.status_code == 404 and "no bundle" in r.json()["error"]
    r = client.post("/api/models/../../etc/activate", json={})
    assert r.status_code in (400, 404)
    r = client.post(f"/photos/{'3' * 64}/retry", json={})
    assert r.status_code == 409


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for p in (
        "/photos",
        "/photos/{photo_id}",
        "/videos",
        "/tags/{tag}",
        "/similar/{photo_id}",
        "/stats",
        "/healthz",
        "/search",
        "/autocomplete",
        "/tagcloud",
        "/live",
        "/labels.csv",
        "/api/status",
        "/api/v1/topology/{topology}",
        "/api/v1/topology/{topology}/component/{component}",
    ):
        assert p in paths, p
    assert "swagger" in client.get("/docs").text.lower()


# -- login -------------------------------------------------------------------------------------


def test_token_file_is_private(api_settings: Settings) -> None:
    path = token_file(api_settings.run_dir)
    assert (
        stat.S_IMODE(path.stat().st_mode) == 0o600 and len(read_token(api_settings.run_dir)) >= 32
    )


def test_every_endpoint_refuses_without_token(client: TestClient, bare: TestClient) -> None:
    paths = list(client.get("/openapi.json").json()["paths"])
    pages = [
        "/",
        "/upload",
        "/status",
        "/topology",
        "/models",
        "/photo/" + "0" * 64,
        "/docs",
        "/openapi.json",
        "/static/app.css",
        "/static/htmx-2.0.11.min.js",
    ]
    pid = "0" * 64
    for path in paths + pages:
        url = (
            path.replace("{photo_id}", pid)
            .replace("{tag}", "x")
            .replace("{topology}", "t")
            .replace("{component}", "c")
            .replace("{bundle_id}", "b")
            .replace("{name}", "n")
            .replace("{action}", "activate")
        )
        for method in ("GET", "POST"):
            r = bare.request(
                method, url, content=b"{}", headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 401, (method, url, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
        r = bare.get(url, headers={"Authorization": "Bearer " + "x" * 43})
        assert r.status_code == 401 and "wrong token" in r.json()["error"], url
    r = bare.get("/", headers={"Accept": "text/html"})
    assert (
        r.status_code == 401
        and "autotag url" in r.text
        and "text/html" in r.headers["content-type"]
    )
    assert bare.get("/healthz?token=").status_code == 401
    assert bare.get("/healthz", headers={"Cookie": "autotag_token=nope"}).status_code == 401


def test_token_url_sets_a_strict_cookie(
    bare: TestClient, app_client: tuple[TestClient, TestClient, str]
) -> None:
    token = app_client[2]
    r = bare.get(f"/?token={token}")
    assert r.status_code == 200 and "<title>" in r.text
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"autotag_token={token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    r = bare.get("/stats")  # the cookie alone now
    assert r.status_code == 200 and "set-cookie" not in r.headers


def test_foreign_host_and_content_types(client: TestClient) -> None:
    for host in ("evil.example", "127.0.0.1.evil.example:8090", "attacker.test"):
        r = client.get("/stats", headers={"Host": host})
        assert r.status_code == 400 and "not allowed" in r.json()["error"], host
    assert client.get("/stats", headers={"Host": "localhost:8090"}).status_code == 200
    # State changes take only images or JSON: what a foreign page cannot send unpreflighted.
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""):
        r = client.post(
            f"/photos/{'0' * 64}/labels",
            content=b'{"tag":"x","positive":true}',
            headers={"Content-Type": ctype},
        )
        assert r.status_code == 415, ctype
        r = client.post("/api/topologies/autotagger/deactivate", headers={"Content-Type": ctype})
        assert r.status_code == 415, ctype


def test_autotag_url_prints_the_token(api_settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["url", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    token = read_token(api_settings.run_dir)
    port = api_settings.services.port(api_settings.services.http_port)
    assert out["url"] == f"http://127.0.0.1:{port}/?token={token}"
    assert out["token_file"] == str(token_file(api_settings.run_dir))


# -- on a real socket --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(api_settings: Settings) -> Iterator[tuple[str, Any]]:
    with on_socket(api_settings) as served:
        yield served


def test_live_feed_and_big_body_over_a_socket(
    server: tuple[str, Any], api_settings: Settings
) -> None:
    import httpx2 as httpx

    base, app = server
    token = read_token(api_settings.run_dir)
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=auth, timeout=20) as http:
        r = http.post("/photos", content=body(LIMIT + 10), headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 413 and "limit" in r.json()["error"]
        pid = http.post("/photos", content=body(), headers={"Content-Type": "image/jpeg"}).json()[
            "photo_id"
        ]
        word = f"live {uuid.uuid4().hex[:6]}"
        events: list[dict[str, Any]] = []
        with http.stream("GET", "/live") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            assert app.state.web.live.listening.wait(10)  # LISTEN has run
            deadline = time.monotonic() + 10
            tag_photos(api_settings, {pid: [(word, 0.66)]})
            for line in lines:
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if any(e["photo_id"] == pid for e in events) or time.monotonic() > deadline:
                        break
        mine = [e for e in events if e["photo_id"] == pid]
        assert mine and mine[0]["status"] == "tagged"
        assert mine[0]["tags"] == [{"tag": word, "score": 0.66}]


def test_labels_export_command_makes_a_training_folder(
    client: TestClient, api_settings: Settings, tmp_path: Path
) -> None:
    photo = next(p for p in samples.package_photos() if p.name == "rocket.jpg")
    pid = upload(client, photo.read_bytes(), name="rocket.jpg")[1]["photo_id"]
    junk = upload(client, body())[1]["photo_id"]
    for target in (pid, junk):
        r = client.post(f"/photos/{target}/labels", json={"tag": "rocket", "positive": True})
        assert r.status_code == 201
    result = CliRunner().invoke(cli, ["labels", "export", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "not an image" in result.stderr
    ls = read_labels(tmp_path / "out" / "labels.csv")
    assert pid in ls.photo_ids and junk not in ls.photo_ids
    paths, missing = resolve_photos(tmp_path / "out" / "images", ls.photo_ids)
    assert not missing and (tmp_path / "out" / "images" / f"{pid}.jpg") in paths
    assert (tmp_path / "out" / "images" / f"{pid}.jpg").read_bytes() == photo.read_bytes()
