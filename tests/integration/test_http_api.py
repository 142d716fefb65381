"""The HTTP API over real Redis and Postgres, driven with urllib."""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from autotag.config import Settings
from autotag.pipeline.contract import PhotoResult
from autotag.storage import database, photo_stream, writer
from autotag.storage.photo_stream import PhotoStream
from autotag.web import api as http_api

pytestmark = pytest.mark.services

LIMIT = 2000


@pytest.fixture(scope="module")
def api(services: Settings) -> Iterator[tuple[str, Settings]]:
    tag = uuid.uuid4().hex[:8]
    s = dataclasses.replace(
        services,
        stream=f"test:{tag}:photos",
        dead_letter_stream=f"test:{tag}:dead",
        consumer_group=f"g{tag}",
        max_file_bytes=LIMIT,
    )
    server = http_api.make_server(s, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}", s
    server.shutdown()
    server.server_close()
    server.app.close()
    r = photo_stream.client(s)
    r.delete(s.stream, s.dead_letter_stream)
    r.close()


def call(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, method: str = ""
) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method or None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        assert exc.headers["Content-Type"] == "application/json"
        return exc.code, json.loads(body)


def body(n: int = 300) -> bytes:
    return (uuid.uuid4().bytes * (n // 16 + 1))[:n]


def multipart(filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f"--{boundary}\r\n".encode(),
        b'Content-Disposition: form-data; name="note"\r\n\r\nhello\r\n',
        f"--{boundary}\r\n".encode(),
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'.encode(),
        b"Content-Type: image/jpeg\r\n\r\n",
        content,
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def test_upload_raw_then_duplicate(api: tuple[str, Settings]) -> None:
    base, s = api
    data = body()
    code, out = call(f"{base}/photos?name=beach.jpg", data)
    assert code == 202
    assert out["photo_id"] == hashlib.sha256(data).hexdigest()
    assert (out["status"], out["source"], out["bytes"]) == ("queued", "beach.jpg", len(data))
    code, out = call(f"{base}/photos", data)
    assert code == 200 and out["status"] == "duplicate"
    stream = PhotoStream(s)
    entries = stream.read("t", count=100, block_ms=50)
    stream.redis.close()
    assert [e.photo_id for e in entries] == [hashlib.sha256(data).hexdigest()]


def test_upload_multipart_binary_safe(api: tuple[str, Settings]) -> None:
    base, _ = api
    data = body(200) + b"\r\n--\r\n\r\n" + bytes(range(256))  # CRLFs and dashes inside
    payload, ctype = multipart("../../etc/cat.png", data)
    code, out = call(f"{base}/photos", payload, {"Content-Type": ctype})
    assert code == 202, out
    assert out["photo_id"] == hashlib.sha256(data).hexdigest()
    assert out["source"] == "cat.png"  # no directories from the client


def test_upload_too_large_and_length_required(api: tuple[str, Settings]) -> None:
    base, _ = api
    code, out = call(f"{base}/photos", body(LIMIT + 1))
    assert code == 413 and "limit" in out["error"]
    payload, ctype = multipart("big.jpg", body(LIMIT + 1))
    code, out = call(f"{base}/photos", payload, {"Content-Type": ctype})
    assert code == 413
    host, port = urllib.parse.urlsplit(base).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", "/photos")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"5\r\nhello\r\n0\r\n\r\n")
    resp = conn.getresponse()
    assert resp.status == 411 and "Content-Length" in json.loads(resp.read())["error"]
    conn.close()


def test_photo_tags_stats(api: tuple[str, Settings]) -> None:
    base, s = api
    data = body()
    _, out = call(f"{base}/photos?name=dog.jpg", data)
    pid = out["photo_id"]
    code, info = call(f"{base}/photos/{pid}")
    assert code == 200 and info["status"] == "queued" and info["tags"] == []
    word = f"golden retriever {uuid.uuid4().hex[:6]}"
    with database.connect(s) as conn:
        writer.write_results(conn, [PhotoResult(pid, "tagged", "v1", "cnn", [(word, 0.75)])])
    code, info = call(f"{base}/photos/{pid.upper()}")
    assert code == 200 and info["status"] == "tagged" and info["model_version"] == "v1"
    assert info["tags"] == [{"tag": word, "score": 0.75, "kind": "leaf", "via": None}]
    assert info["has_vector"] is False
    code, found = call(f"{base}/tags/{urllib.parse.quote(word.upper())}?min_score=0.5&limit=5")
    assert code == 200 and [h["photo_id"] for h in found["results"]] == [pid]
    code, found = call(f"{base}/tags/{urllib.parse.quote(word)}?min_score=0.8")
    assert code == 200 and found["results"] == []
    code, st = call(f"{base}/stats")
    assert code == 200 and st["by_status"]["tagged"] >= 1 and "top_tags" in st


def test_errors_are_json(api: tuple[str, Settings]) -> None:
    base, _ = api
    assert call(f"{base}/photos/not-an-id")[0] == 400
    code, out = call(f"{base}/photos/{'0' * 64}")
    assert code == 404 and "no photo" in out["error"]
    assert call(f"{base}/tags/x?limit=abc")[0] == 400
    assert call(f"{base}/tags/x?limit=0")[0] == 400
    assert call(f"{base}/nope")[0] == 404
    assert call(f"{base}/photos/{'0' * 64}", method="DELETE")[0] == 405


def test_healthz(api: tuple[str, Settings]) -> None:
    code, out = call(f"{api[0]}/healthz")
    assert code == 200 and out == {"ok": True, "postgres": "ok", "redis": "ok"}


def test_similar(api: tuple[str, Settings]) -> None:
    base, s = api
    code, out = call(f"{base}/similar/{'0' * 64}?top=3")
    assert code == 404 and "no photo" in out["error"]
    _, up = call(f"{base}/photos", body())
    code, out = call(f"{base}/similar/{up['photo_id']}")
    assert code == 404 and "no feature vector yet" in out["error"]
    a, b = up["photo_id"], call(f"{base}/photos", body())[1]["photo_id"]
    vec = np.ones(1280, dtype=np.float32) / np.sqrt(1280)  # the default feature set, cnn@1
    with database.connect(s) as conn:
        writer.write_results(
            conn, [PhotoResult(pid, "tagged", "v1", "cnn@1", [("sim", 0.5)], vec) for pid in (a, b)]
        )
    code, out = call(f"{base}/similar/{a}?top=3")
    assert code == 200, out
    assert out["photo_id"] == a and isinstance(out["results"], list)
