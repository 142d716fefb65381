"""What the HTTP and web tests share: settings with Redis streams of a module's own, the app
behind its token (as TestClients or on a real socket), an upload that must be accepted, and
Debian's chromium. Context managers, not fixtures: each test module wraps them in fixtures
of its own, since a test imports shared code from a plain module, never from a conftest."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from autotag.config import Settings
from autotag.ops.web_token import read_token
from autotag.storage import item_stream
from autotag.web.app import create_app

BASE = "http://127.0.0.1:8090"  # the TestClient's base url (its Host header passes the guard)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.contextmanager
def own_streams(services: Settings, **overrides: Any) -> Iterator[Settings]:
    """The test settings with photo and video streams and a consumer group no other module
    uses (so queued entries are this module's alone), and these settings changed; the
    streams are deleted after."""
    tag = uuid.uuid4().hex[:8]
    s = services.override(
        stream=f"test:{tag}:photos",
        dead_letter_stream=f"test:{tag}:dead",
        consumer_group=f"g{tag}",
        video_stream=f"test:{tag}:videos",
        video_dead_letter_stream=f"test:{tag}:videos:dead",
        **overrides,
    )
    yield s
    r = item_stream.client(s.services)
    r.delete(
        s.queue.stream,
        s.queue.dead_letter_stream,
        s.queue.video_stream,
        s.queue.video_dead_letter_stream,
    )
    r.close()


@contextlib.contextmanager
def token_clients(settings: Settings) -> Iterator[tuple[TestClient, TestClient, str]]:
    """An authenticated and a bare client of one app, and the run directory's real token
    (created by the app on first start)."""
    app = create_app(settings)
    token = read_token(settings.run_dir)
    with TestClient(app, base_url=BASE) as authed:
        authed.headers["Authorization"] = f"Bearer {token}"
        yield authed, TestClient(app, base_url=BASE), token


@contextlib.contextmanager
def on_socket(settings: Settings) -> Iterator[tuple[str, FastAPI]]:
    """The app under uvicorn on a free loopback port, for what only a real server shows:
    (base url, app)."""
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, timeout_graceful_shutdown=2
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", app
    srv.should_exit = True
    thread.join(timeout=10)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright (a failure, not a skip, if missing)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} missing: scripts/install-deps.sh installs Debian's chromium")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def upload(client: TestClient, data: bytes | None = None) -> str:
    """POST these bytes (by default random bytes new to the database) as a photo; the upload
    must be accepted. Returns the photo id."""
    data = data or uuid.uuid4().bytes * 20
    r = client.post("/photos", content=data, headers={"Content-Type": "image/jpeg"})
    assert r.status_code in (200, 201, 202), r.text
    return str(r.json()["photo_id"])
