"""The web page in a real headless browser (Debian's chromium, driven by Playwright) on the
real cluster: the autotagger topology, Redis, Postgres and the web service as `autotag
cluster up` starts it.

What a person does: open the token URL; drop two real photos on the Upload page and watch
them arrive tagged in the live feed; search one of their tags; open a photo and see its tags
and similar photos; remove a tag and see the correction stored; look at Status, Topology and
Models. Without the token every page and endpoint is refused. Each page's screenshot is saved
in the test run directory, or under $AUTOTAG_SCREENSHOTS_DIR: `make screenshots` refreshes
docs/screenshots/ (the README shows them), so a test run leaves the checkout as it was.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from autotag.config import Settings
from autotag.learning import samples
from autotag.ops import cluster
from autotag.ops.daemons.base import wait_for
from autotag.ops.nimbus import NimbusClient
from autotag.ops.web_token import read_token
from tests.integration.library_client import chromium

pytestmark = pytest.mark.cluster

SHOTS_ENV = "AUTOTAG_SCREENSHOTS_DIR"  # `make screenshots`: the checkout's docs/screenshots
TAG_TIMEOUT_MS = 180_000
# Storm counts every tuple in this module's topology (its default samples 5%, so counts move
# in steps of 20), so the Topology page's figures for two photos are exact enough to check.
TOPOLOGY_OPTIONS = ["topology.stats.sample.rate=1.0"]
STATS_TIMEOUT_S = 60  # workers write their figures to ZooKeeper every 10 s (ops/daemons/storm)


@pytest.fixture(scope="module")
def web(autotagger: Settings) -> Iterator[tuple[str, str]]:
    """The web service started the way `autotag cluster up` starts it: (base url, token)."""
    cluster.up(autotagger, cluster.WEB_DAEMONS, progress=lambda _m: None)
    yield (
        f"http://{autotagger.services.host}:"
        f"{autotagger.services.port(autotagger.services.http_port)}",
        read_token(autotagger.run_dir),
    )
    cluster.down(autotagger, cluster.WEB_DAEMONS, progress=lambda _m: None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two real photos (scikit-image's cat and coffee), made new to this database by one
    changed pixel, so they are queued and tagged now rather than found already tagged."""
    out = tmp_path_factory.mktemp("web-photos")
    made = []
    for name in ("chelsea.png", "coffee.png"):
        src = next(p for p in samples.package_photos() if p.name == name)
        img = cv2.imread(str(src), cv2.IMREAD_COLOR)
        img[0, 0] = np.frombuffer(uuid.uuid4().bytes[:3], np.uint8)
        path = out / f"{src.stem}-{uuid.uuid4().hex[:6]}.jpg"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        made.append(path)
    return made


@pytest.fixture(scope="module")
def shot(autotagger: Settings) -> Callable[[Any, str], None]:
    """Save a page's screenshot as NAME.png: under $AUTOTAG_SCREENSHOTS_DIR if set, else in
    the test run directory (never into the checkout by default)."""
    folder = Path(os.environ.get(SHOTS_ENV) or autotagger.run_dir / "screenshots")

    def take(page: Any, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    return take


def drop_files(page: Any, selector: str, files: list[Path]) -> None:
    """Drag and drop files onto an element, as a person's file manager would."""
    payload = [[p.name, base64.b64encode(p.read_bytes()).decode(), "image/jpeg"] for p in files]
    transfer = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const [name, b64, type] of files) {
                const bin = atob(b64);
                const bytes = new Uint8Array(bin.length);
                for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
                dt.items.add(new File([bytes], name, { type }));
            }
            return dt;
        }""",
        payload,
    )
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_a_person_uses_the_page(
    web: tuple[str, str],
    browser: Any,
    photos: list[Path],
    autotagger: Settings,
    shot: Callable[[Any, str], None],
) -> None:
    base, token = web
    ids = [hashlib.sha256(p.read_bytes()).hexdigest() for p in photos]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()

    # The address `autotag url` prints: a cookie, and no token left in the address bar.
    response = page.goto(f"{base}/upload?token={token}")
    assert response.status == 200
    assert "token=" not in page.url
    (cookie,) = [c for c in context.cookies() if c["name"] == "autotag_token"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # Upload: drop two photos, see each one's progress finish and its tags in the live feed.
    page.wait_for_selector("#feed-state:has-text('connected')")
    drop_files(page, "#drop", photos)
    for pid in ids:
        item = page.wait_for_selector(f'#feed .item[data-photo="{pid}"]', timeout=TAG_TIMEOUT_MS)
        assert item.query_selector(".tags"), item.inner_text()  # tagged, not failed
    rows = page.query_selector_all("#uploads tr")
    assert len(rows) == 2 and all(r.query_selector(".state").inner_text() == "tagged" for r in rows)
    assert all(r.query_selector("progress").get_attribute("value") == "100" for r in rows)
    shot(page, "upload")

    cat_tags = page.request.get(f"{base}/photos/{ids[0]}").json()["tags"]
    assert cat_tags, "the cat photo got no tag"
    tag = cat_tags[0]["tag"]

    # Search: autocomplete offers the tag, the grid shows the photo.
    page.goto(f"{base}/")
    page.fill("#tag-box", tag[:3])
    page.wait_for_function(
        "(t) => [...document.querySelectorAll('#suggestions option')].some(o => o.value === t)",
        arg=tag,
    )
    page.fill("#tag-box", tag)
    page.press("#tag-box", "Enter")
    page.wait_for_selector(f'#results a[href="/photo/{ids[0]}"]')
    thumb = page.query_selector(f'#results a[href="/photo/{ids[0]}"] img')
    thumb.scroll_into_view_if_needed()  # thumbnails load lazily, and after the card appears
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb)
    assert thumb.evaluate("img => img.naturalWidth > 0 && img.naturalWidth <= 320")
    assert "photo" in page.inner_text("#result-count")
    # The box reads words as the API's q= does, through the same code: the same photos.
    cards = [c.get_attribute("href") for c in page.query_selector_all("#results a.card")]
    api = page.request.get(f"{base}/search", params={"q": tag, "limit": 48}).json()["results"]
    assert cards == [f"/photo/{h['photo_id']}" for h in api]
    shot(page, "search")

    # Photo: its tags with scores, similar photos (the dot-product ranking the API gives).
    page.click(f'#results a[href="/photo/{ids[0]}"]')
    page.wait_for_selector(f'#tags tr[data-tag="{tag}"]')
    cards = [c.get_attribute("href") for c in page.query_selector_all("#similar .card")]
    ranked = page.request.get(f"{base}/similar/{ids[0]}?top=12").json()["results"]
    assert cards and cards == [f"/photo/{r['photo_id']}" for r in ranked]
    assert f"/photo/{ids[0]}" not in cards
    shot(page, "photo")

    # A correction: remove the tag; the page shows it, and it is stored as a label.
    page.click(f'#tags tr[data-tag="{tag}"] button.remove')
    page.wait_for_selector(f'#tags tr.removed[data-tag="{tag}"]')
    assert tag in page.inner_text("#labels")
    labels = page.request.get(f"{base}/photos/{ids[0]}/labels").json()["labels"]
    assert [(x["tag"], x["positive"]) for x in labels] == [(tag, False)]
    assert f"{tag},{ids[0]},FALSE" in page.request.get(f"{base}/labels.csv").text()

    # Status: services, the topology (deactivate, activate again), queue, failures.
    page.goto(f"{base}/status")
    assert "healthy" in page.inner_text("#status")
    page.click("#topologies button:has-text('deactivate')")
    page.wait_for_selector("#topologies .topo-status:has-text('INACTIVE')")
    page.click("#topologies button:has-text('activate')")
    page.wait_for_selector("#topologies .topo-status:text-is('ACTIVE')")
    shot(page, "status")

    # Topology: Storm UI's table of spouts and bolts and its REST paths, with the figures the
    # workers report through ZooKeeper: the two photos went through every photo component.
    def figures() -> dict[str, Any]:
        return page.request.get(f"{base}/api/v1/topology/autotagger?window=600").json()

    def counted(topo: dict[str, Any]) -> bool:
        if "spouts" not in topo:  # Nimbus busy (a timeout, as JSON): ask again
            return False
        rows = {r.get("spoutId") or r.get("boltId"): r for r in topo["spouts"] + topo["bolts"]}
        return topo["statsReported"] and all(
            rows[c]["acked"] >= 2 for c in ("photos", "autotag", "db_writer")
        )

    assert wait_for(lambda: counted(figures()), STATS_TIMEOUT_S, interval=2), figures()
    topo = figures()
    assert topo["sampleRate"] == 1.0
    assert sorted(s["spoutId"] for s in topo["spouts"]) == ["photos", "videos"]
    assert sorted(b["boltId"] for b in topo["bolts"]) == [
        "autotag",
        "db_writer",
        "video",
        "video_writer",
    ]
    rows = {r.get("spoutId") or r.get("boltId"): r for r in topo["spouts"] + topo["bolts"]}
    photos_spout, tagger, writer = rows["photos"], rows["autotag"], rows["db_writer"]
    assert photos_spout["emitted"] >= photos_spout["acked"] >= 2
    assert photos_spout["failed"] == 0 and float(photos_spout["completeLatency"]) > 0
    assert tagger["executed"] >= 2 and tagger["emitted"] >= 2  # one result per photo
    assert float(tagger["processLatency"]) > 0 and float(tagger["capacity"]) >= 0
    assert writer["executed"] >= 2 and writer["failed"] == 0
    assert topo["topologyStats"]["acked"] == photos_spout["acked"] + rows["videos"]["acked"]
    comp = page.request.get(f"{base}/api/v1/topology/autotagger/component/db_writer").json()
    assert comp["componentType"] == "bolt" and comp["executors"] == 1
    assert [w["window"] for w in comp["boltStats"]] == ["600", "10800", "86400", ":all-time"]
    all_time = next(w for w in comp["boltStats"] if w["window"] == ":all-time")
    assert all_time["executed"] >= writer["executed"] and all_time["acked"] >= 2
    page.goto(f"{base}/topology/autotagger?window=:all-time")
    bolts, spouts = page.inner_text("#bolts"), page.inner_text("#spouts")
    assert "autotag" in bolts and "db_writer" in bolts and "photos" in spouts
    assert "—" not in bolts + spouts and not page.query_selector("#no-stats")
    cells = page.query_selector_all("#spouts tr:has(a:text-is('photos')) td")
    assert int(cells[6].inner_text()) >= 2  # the acked column, as Storm's UI shows it
    shot(page, "topology")

    page.goto(f"{base}/models")
    assert "active" in page.inner_text("#models")
    shot(page, "models")
    context.close()


def test_without_the_token_everything_is_refused(web: tuple[str, str], browser: Any) -> None:
    base, token = web
    context = browser.new_context()
    page = context.new_page()
    pid = "0" * 64
    for path in ("/", "/upload", "/status", "/topology", "/models", f"/photo/{pid}", "/docs"):
        response = page.goto(base + path)
        assert response.status == 401, path
        assert "autotag url" in page.inner_text("body")
    for path in (
        "/stats",
        "/healthz",
        "/live",
        f"/photos/{pid}",
        "/labels.csv",
        "/api/status",
        "/api/v1/topology/autotagger",
        "/openapi.json",
        "/static/app.js",
    ):
        assert page.request.get(base + path).status == 401, path
    r = page.request.post(
        f"{base}/photos", data=b"\xff\xd8\xff", headers={"Content-Type": "image/jpeg"}
    )
    assert r.status == 401
    r = page.request.get(f"{base}/stats", headers={"Authorization": "Bearer " + "x" * len(token)})
    assert r.status == 401
    context.close()


def _get_json(url: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _components(topo: dict[str, Any]) -> dict[str, list[str]]:
    return {
        "spouts": [r["spoutId"] for r in topo["spouts"]],
        "bolts": [r["boltId"] for r in topo["bolts"]],
    }


def test_storm_ui_port_serves_the_web_apis_topology_json(
    web: tuple[str, str], autotagger: Settings
) -> None:
    """Storm's UI REST paths for a topology answer on the Storm UI's port (no token, loopback
    only, as Storm's UI) with the JSON the web API serves behind its token: one implementation
    (ops.storm_rest), Storm's field names, the same 404s."""
    s = autotagger
    base, token = web
    ui = f"http://{s.services.local_bind_host}:{s.services.port(s.services.ui_port)}"
    tid = NimbusClient(s).topology("autotagger").id

    def both(path: str) -> tuple[tuple[int, dict[str, Any]], tuple[int, dict[str, Any]]]:
        return _get_json(ui + path), _get_json(base + path, token)

    # The web mount still wants its token; the Storm UI serves this host's users as before.
    assert _get_json(f"{base}/api/v1/topology/{tid}")[0] == 401

    for path in (f"/api/v1/topology/{tid}", "/api/v1/topology/autotagger?window=600"):
        (ui_code, from_ui), (web_code, from_web) = both(path)
        assert (ui_code, web_code) == (200, 200), (from_ui, from_web)
        assert {"spouts", "bolts", "topologyStats"} <= from_ui.keys()
        assert from_ui.keys() == from_web.keys()  # figures move between calls; shape does not
        assert from_ui.keys() & {"components", "uptime_secs"} == set()  # its own shape: gone
        for k in ("id", "name", "window", "status"):
            assert from_ui[k] == from_web[k], k
        assert (from_ui["id"], from_ui["name"]) == (tid, "autotagger")
        assert _components(from_ui) == _components(from_web)
        assert sorted(_components(from_ui)["bolts"]) == [
            "autotag",
            "db_writer",
            "video",
            "video_writer",
        ]
        assert from_ui["topologyStats"].keys() == from_web["topologyStats"].keys()
        for kind in ("spouts", "bolts"):
            for a, b in zip(from_ui[kind], from_web[kind], strict=True):
                assert a.keys() == b.keys()

    for bolt in ("autotag", "db_writer"):
        (ui_code, from_ui), (web_code, from_web) = both(f"/api/v1/topology/{tid}/component/{bolt}")
        assert (ui_code, web_code) == (200, 200), (from_ui, from_web)
        assert {"boltStats", "executorStats"} <= from_ui.keys()
        assert from_ui.keys() == from_web.keys()
        for k in ("id", "name", "topologyId", "componentType", "executors", "window"):
            assert from_ui[k] == from_web[k], k
        assert (from_ui["id"], from_ui["topologyId"], from_ui["componentType"]) == (
            bolt,
            tid,
            "bolt",
        )
        assert [w["window"] for w in from_ui["boltStats"]] == [
            w["window"] for w in from_web["boltStats"]
        ]
        assert [e["id"] for e in from_ui["executorStats"]] == [
            e["id"] for e in from_web["executorStats"]
        ]
        assert len(from_ui["executorStats"]) == from_ui["executors"] >= 1

    # Unknown topology, component or window: the same error JSON from both.
    refused = [
        ("/api/v1/topology/no-such-topology", 404),
        (f"/api/v1/topology/{tid}/component/no-such-bolt", 404),
        ("/api/v1/topology/autotagger?window=7", 400),
    ]
    for path, code in refused:
        (ui_code, from_ui), (web_code, from_web) = both(path)
        assert (ui_code, web_code) == (code, code), path
        assert from_ui == from_web and from_ui["error"], path

    # The Storm UI's page shows the topology from the same dict.
    with urllib.request.urlopen(ui + "/", timeout=30) as r:
        page = r.read().decode()
    assert f"/api/v1/topology/{tid}/component/db_writer" in page and "executeLatency" in page
