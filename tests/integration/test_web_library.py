"""The library's pages in a real headless browser (Debian's chromium, driven by Playwright)
over real Redis and Postgres: the web app under uvicorn on a socket, photos uploaded through
its API and their results stored the way the DB writer stores them (tags, date taken, place,
camera, faces), so each page is checked against what a person would see.

Trash (issue 29): deleting from the grid's multi-select removes the photos from the results
and lists them in Trash; restoring brings one back; the photo page's Delete does the same.
People (issue 25): naming an unnamed group on the People page makes search by the name find
their photos; merging adds the other group's photos; "not this person" takes one away; face
boxes with names on the photo page; face crops are cut from the blob. Where and when (issue
26): the landing page shows month headings in date-taken order; the photo page shows where,
when and which camera; search orders by date taken; Places counts a GPS photo's country and
city and links to their search. Learned tags (issue 27): listed with examples and figures,
marked on photos, forgotten by the button. Screenshots go under the test run directory.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import cv2
import httpx2 as httpx
import numpy as np
import pytest

from autotag.config import Settings
from autotag.contract import FaceFound, PhotoResult, Tag
from autotag.learning import samples
from autotag.ops.web_token import read_token
from autotag.storage import database, learned, writer
from autotag.storage import people as people_store
from tests.cli import autotag
from tests.integration.library_client import chromium, on_socket, own_streams

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def lib_settings(services: Settings, default_bundle: str) -> Iterator[Settings]:
    with own_streams(services) as s:
        yield s


@pytest.fixture(scope="module")
def server(lib_settings: Settings) -> Iterator[tuple[str, str]]:
    with on_socket(lib_settings) as (base, _app):
        yield base, read_token(lib_settings.run_dir)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def _jpeg(name: str) -> bytes:
    """A package sample photo made new to this database by one changed pixel."""
    src = next(p for p in samples.package_photos() if p.name == name)
    img = cv2.imread(str(src), cv2.IMREAD_COLOR)
    img[0, 0] = np.frombuffer(uuid.uuid4().bytes[:3], np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def _descriptor(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def library(server: tuple[str, str], lib_settings: Settings) -> dict[str, Any]:
    """Five photos uploaded over HTTP, then stored as the DB writer stores their results:
    one word they all share, dates taken (one without), a place, a camera, faces in three
    unnamed groups, a learned tag."""
    base, token = server
    word = f"w{uuid.uuid4().hex[:8]}"
    learned_word = f"l{uuid.uuid4().hex[:8]}"
    names = ["astronaut.png", "chelsea.png", "coffee.png", "camera.png", "rocket.jpg"]
    ids = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
        for i, name in enumerate(names):
            r = http.post(
                "/photos",
                content=_jpeg(name),
                params={"name": f"{i}-{name}"},
                headers={"Content-Type": "image/jpeg"},
            )
            assert r.status_code == 202, r.text
            ids.append(r.json()["photo_id"])
    a, b, c, d, e = ids
    # Far-future dates: these are the newest photos by date taken on the landing page.
    taken = {a: "2099-07-04T10:00:00", b: "2099-06-25T18:30:00", c: "2099-07-20T08:15:00"}
    taken[e] = "2099-05-01T12:00:00"
    paris = [Tag("paris", 1.0, "place"), Tag("france", 1.0, "place")]
    results = []
    for pid in ids:
        extra: dict[str, Any] = {"width": 512, "height": 512}
        tags = [Tag(word, 0.8)]
        faces = []
        if pid in taken:
            extra["taken_local"] = taken[pid]
            extra["taken_source"] = "exif"
        if pid == a:
            extra |= {
                "latitude": 48.85837,
                "longitude": 2.294481,
                "place": "Paris, Île-de-France, France",
                "camera": "Canon EOS 5D Mark IV",
                "lens": "EF24-70mm f/2.8L",
            }
            tags += paris
        if pid == c:
            tags.append(Tag(learned_word, 0.91, "learned"))
        if pid in (a, b, c):  # a face each: a and b one person, c another, at first
            faces = [FaceFound((180, 60, 120, 150), 0.98, 0.9, _descriptor(ids.index(pid)))]
        results.append(PhotoResult(pid, "tagged", "v1", "cnn@1", tags, None, faces=faces, **extra))
    with database.connect(lib_settings.services) as conn:
        learned.save_state(
            conn, learned_word, "learned", "", bundle_id=None, n_pos=5, n_neg=12,
            precision=0.92, recall=0.71, threshold=0.5, labels_seen="x",
        )  # fmt: skip
        writer.write_results(conn, results)
        face_ids = {
            f["photo_id"]: f["face_id"]
            for p in (a, b, c)
            for f in people_store.photo_faces(conn, p)
        }
        people_store.assign(conn, [], [[face_ids[a], face_ids[b]], [face_ids[c]]])
        for pid in (b, c):
            conn.execute(
                "INSERT INTO labels (photo_id, tag, positive) VALUES (%s, %s, true)",
                (pid, learned_word),
            )
    return {"ids": ids, "word": word, "learned": learned_word, "faces": face_ids, "base": base}


@pytest.fixture()
def page(browser: Any, server: tuple[str, str], lib_settings: Settings) -> Iterator[Any]:
    base, token = server
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.on("dialog", lambda dialog: dialog.accept())  # a person says yes to "are you sure?"
    assert p.goto(f"{base}/?token={token}").status == 200
    yield p
    context.close()


def shot(page: Any, settings: Settings, name: str) -> None:
    """Screenshots stay in the test's run directory, never in the checkout."""
    folder = settings.run_dir / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def cards(page: Any, where: str = "#results") -> list[str]:
    return [
        (c.get_attribute("href") or "").removeprefix("/photo/")
        for c in page.query_selector_all(f"{where} a.card")
    ]


def search(page: Any, base: str, word: str, order: str = "score") -> list[str]:
    page.goto(f"{base}/?q={word}&order={order}")
    page.wait_for_selector("#result-count")
    return cards(page)


# -- issue 29: delete and trash ---------------------------------------------------------------


def test_delete_from_the_grid_and_restore_from_the_trash(
    page: Any, library: dict[str, Any], lib_settings: Settings
) -> None:
    base, word = library["base"], library["word"]
    a, b, c, d, e = library["ids"]
    assert sorted(search(page, base, word)) == sorted(library["ids"])

    # Tick two photos, delete them: gone from the grid at once, and from a new search.
    page.check(f'#results .cell[data-photo="{d}"] input.pick')
    page.check(f'#results .cell[data-photo="{e}"] input.pick')
    assert page.inner_text("#selection .n") == "2"
    shot(page, lib_settings, "search-selected")
    page.click("#delete-selected")
    page.wait_for_function(
        "(ids) => ids.every(id => !document.querySelector(`#results a[href='/photo/${id}']`))",
        arg=[d, e],
    )
    assert sorted(cards(page)) == sorted([a, b, c])
    assert sorted(search(page, base, word)) == sorted([a, b, c])

    # Both are in the Trash view; restoring one brings it back to search.
    page.goto(f"{base}/deleted")
    # (the test database is shared: other tests' trashed items may be listed too)
    mine = set(library["ids"])
    listed = [r.get_attribute("data-item") for r in page.query_selector_all("#trash tr[data-item]")]
    assert sorted(i for i in listed if i in mine) == sorted([d, e])
    trashed = [t["id"] for t in page.request.get(f"{base}/trash").json()]
    assert sorted(i for i in trashed if i in mine) == sorted([d, e])
    shot(page, lib_settings, "trash")
    page.click(f'#trash tr[data-item="{d}"] button.restore')
    page.wait_for_selector(f'#trash tr[data-item="{d}"]', state="detached")
    assert sorted(search(page, base, word)) == sorted([a, b, c, d])

    # The photo page's Delete: to the trash, and the Trash view lists it.
    page.goto(f"{base}/photo/{d}")
    page.click("#delete-photo")
    page.wait_for_url(f"{base}/deleted")
    page.wait_for_selector(f'#trash tr[data-item="{d}"]')
    assert d not in search(page, base, word)

    # Emptying the trash removes them for good: nothing to restore, not found.
    page.goto(f"{base}/deleted")
    page.click("#empty-trash")
    page.wait_for_selector("#trash-empty")
    assert page.request.get(f"{base}/photos/{d}").status == 404
    assert page.request.get(f"{base}/trash").json() == []
    assert sorted(search(page, base, word)) == sorted([a, b, c])


# -- issue 25: people -------------------------------------------------------------------------


def test_name_merge_and_correct_people_on_the_people_page(
    page: Any, library: dict[str, Any], lib_settings: Settings
) -> None:
    base = library["base"]
    a, b, c = library["ids"][:3]
    faces = library["faces"]
    name = f"Ada {uuid.uuid4().hex[:5]}"
    with database.connect(lib_settings.services) as conn:
        ab = people_store.face(conn, faces[a])["person_id"]
        pc = people_store.face(conn, faces[c])["person_id"]
    assert ab and pc and ab != pc

    page.goto(f"{base}/people")
    group = f'#unnamed .person[data-person="{ab}"]'
    assert "2 faces" in page.inner_text(group)
    # The sample face is cut from the photo when shown: a real JPEG, small. (Faces load
    # lazily: with many people in the test database the group may start below the fold.)
    sample = page.query_selector(f"{group} img")
    sample.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=sample)
    assert sample.evaluate("img => img.naturalWidth > 0 && img.naturalWidth <= 160")
    r = page.request.get(f"{base}/faces/{faces[a]}/crop")
    assert r.status == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.body()[:3] == b"\xff\xd8\xff"
    shot(page, lib_settings, "people")

    # Name the group: it moves to the named people, and search by the name finds its photos.
    page.fill(f"{group} .name-form input", name)
    page.click(f"{group} .name-form button")
    page.wait_for_selector(f'#named .person[data-person="{ab}"]:has-text("{name}")')
    found = search(page, base, name.lower())
    assert a in found and b in found and c not in found

    # Merge the other group in: their photo is found by the name too.
    page.goto(f"{base}/people")
    named = f'#named .person[data-person="{ab}"]'
    page.select_option(f"{named} .merge-form select", str(pc))
    page.click(f"{named} .merge-form button")
    page.wait_for_selector(f'.person[data-person="{pc}"]', state="detached")
    assert c in search(page, base, name.lower())

    # The photo page draws the face's box with the name.
    page.goto(f"{base}/photo/{c}")
    box = page.wait_for_selector(f'.facebox[data-face="{faces[c]}"]')
    assert name in box.inner_text() and name in page.inner_text("#face-names")
    assert box.bounding_box()["width"] > 10
    shot(page, lib_settings, "photo-faces")

    # A wrong face: "not this person" on the person's page; search no longer finds that photo.
    page.goto(f"{base}/people/{ab}")
    page.click(f'#faces .face[data-face="{faces[c]}"] button.remove-face')
    page.wait_for_selector(f'#faces .face[data-face="{faces[c]}"]', state="detached")
    assert c not in search(page, base, name.lower())
    assert sorted(search(page, base, name.lower())) == sorted([a, b])

    # Forget them (privacy): the button on their page asks, then goes back to People, where
    # they are gone; the name finds nothing on the page, over the API or from the command.
    page.goto(f"{base}/people/{ab}")
    page.click("button.forget")
    page.wait_for_url(f"{base}/people")
    page.wait_for_selector("#named", state="attached")  # (an empty grid is not visible)
    assert page.query_selector(f'.person[data-person="{ab}"]') is None
    assert name not in page.inner_text("body")
    assert page.request.get(f"{base}/api/people/{ab}").status == 404
    assert search(page, base, name.lower()) == []
    r = page.request.get(f"{base}/search", params={"q": name.lower(), "limit": 1000})
    assert r.status == 200 and r.json()["results"] == []
    out = autotag(lib_settings, "search", name.lower(), "--json", "--limit", "1000")
    assert out.returncode == 0, out.stderr
    assert [h["photo_id"] for h in json.loads(out.stdout) if "photo_id" in h] == []
    with database.connect(lib_settings.services) as conn:
        gone = [people_store.face(conn, faces[p]) for p in (a, b)]
    assert all(f is not None and f["person_id"] is None for f in gone)


# -- issue 26: where and when -----------------------------------------------------------------


def test_landing_page_by_month_photo_metadata_order_and_places(
    page: Any, library: dict[str, Any], lib_settings: Settings
) -> None:
    base, word = library["base"], library["word"]
    a, b, c, d, e = library["ids"]
    live = [p for p in library["ids"] if page.request.get(f"{base}/photos/{p}").status == 200]

    # Landing page: month headings, newest taken first, photos in date-taken order.
    page.goto(f"{base}/")
    page.wait_for_selector("#timeline .month")
    months = [m.get_attribute("data-month") for m in page.query_selector_all("#timeline .month")]
    assert months == sorted(months, reverse=True) and len(set(months)) == len(months)
    assert page.inner_text("#timeline .month") == "July 2099"
    dates = [x.get_attribute("data-taken") for x in page.query_selector_all("#timeline a.card")]
    assert dates == sorted(dates, reverse=True)
    mine = [p for p in cards(page, "#timeline") if p in library["ids"]]
    expected = [p for p in (c, a, b, e) if p in live]
    assert mine[: len(expected)] == expected and d not in mine
    shot(page, lib_settings, "timeline")

    # The photo page: where, when and with what camera.
    page.goto(f"{base}/photo/{a}")
    assert page.inner_text("#taken").startswith("2099-07-04 10:00")
    assert "Paris" in page.inner_text("#place") and "48.85837" in page.inner_text("#place")
    assert "Canon EOS 5D Mark IV" in page.inner_text("#camera")

    # Search ordered by date taken: the page and the API agree; undated photos come last.
    by_date = [p for p in search(page, base, word, "taken") if p in live]
    assert by_date == [p for p in (c, a, b, e, d) if p in live]
    api = page.request.get(f"{base}/search", params={"q": word, "order": "taken"}).json()
    assert [h["photo_id"] for h in api["results"] if h["photo_id"] in live] == by_date
    assert page.request.get(f"{base}/search", params={"q": word, "order": "x"}).status == 400

    # Places: the GPS photo's country and city, counted, each linked to its search.
    page.goto(f"{base}/places")
    france = page.wait_for_selector('#places li.country[data-country="france"]')
    assert france.query_selector(".n").inner_text() == "1"
    assert page.query_selector('#places li.city[data-city="paris"]')
    shot(page, lib_settings, "places")
    page.click('#places li.country[data-country="france"] > a')
    page.wait_for_selector("#results")
    assert cards(page) == [a]


# -- issue 27: learned tags -------------------------------------------------------------------


def test_learned_tags_listed_marked_and_forgotten(
    page: Any, library: dict[str, Any], lib_settings: Settings
) -> None:
    base, tag = library["base"], library["learned"]
    b, c = library["ids"][1], library["ids"][2]

    page.goto(f"{base}/learned")
    section = page.wait_for_selector(f'section.learned[data-tag="{tag}"]')
    text = section.inner_text()
    assert "5 examples" in text and "precision 0.92" in text and "recall 0.71" in text
    assert "on 1 photos" in text
    examples = section.query_selector_all(".examples img")
    assert len(examples) == 2
    shot(page, lib_settings, "learned")

    # Marked on the photo that has it.
    page.goto(f"{base}/photo/{c}")
    row = page.wait_for_selector(f'#tags tr[data-tag="{tag}"]')
    assert row.get_attribute("data-kind") == "learned" and "learned" in row.inner_text()

    # Forget: the tag leaves the list, the photo and search.
    page.goto(f"{base}/learned")
    page.click(f'section.learned[data-tag="{tag}"] button.forget')
    page.wait_for_selector(f'section.learned[data-tag="{tag}"]', state="detached")
    assert page.request.get(f"{base}/api/learned").json() == [
        t for t in page.request.get(f"{base}/api/learned").json() if t["tag"] != tag
    ]
    page.goto(f"{base}/photo/{c}")
    assert not page.query_selector(f'#tags tr[data-tag="{tag}"]')
    assert b not in search(page, base, tag) and c not in search(page, base, tag)


def test_a_new_tag_asks_before_it_is_published(
    page: Any, library: dict[str, Any], lib_settings: Settings
) -> None:
    """A tag the learner is asking about shows its unanswered questions on the Learned page;
    a yes or a no is a label on that photo, the card goes, and the page reloads after the
    last answer (the learner asks the next ones or publishes)."""
    base, (d, e) = library["base"], library["ids"][:2]  # (the last two are deleted above)
    tag = f"q{uuid.uuid4().hex[:8]}"
    with database.connect(lib_settings.services) as conn:
        learned.save_state(
            conn, tag, "asking", "asking before publishing", bundle_id=None, n_pos=5,
            n_neg=0, precision=0.9, recall=0.7, threshold=0.5, labels_seen="x",
            phase="spot", questions=[d, e],
        )  # fmt: skip
    page.goto(f"{base}/learned")
    section = page.wait_for_selector(f'section.learned[data-tag="{tag}"]')
    assert "asking" in section.query_selector(".status").inner_text()
    cards = section.query_selector_all(".questions .card")
    assert [c.get_attribute("data-photo") for c in cards] == [d, e]
    assert "0 of 2 answered" in section.inner_text()
    shot(page, lib_settings, "learned-questions")

    card = f'section.learned[data-tag="{tag}"] .questions .card'
    page.click(f'{card}[data-photo="{d}"] button.yes')
    page.wait_for_selector(f'{card}[data-photo="{d}"]', state="detached")
    asked = page.request.get(f"{base}/api/learned/{tag}/questions").json()
    assert asked["photos"] == [e] and asked["asked"] == 2 and asked["phase"] == "spot", asked
    page.click(f'{card}[data-photo="{e}"] button.no')
    # The last answer: the page reloads and has nothing left to ask.
    page.wait_for_selector(f'section.learned[data-tag="{tag}"] .questions', state="detached")
    page.wait_for_selector(f'section.learned[data-tag="{tag}"]')
    with database.connect(lib_settings.services) as conn:
        got = learned.answers(conn, tag, [d, e])
    assert got == {d: True, e: False}


def test_new_pages_and_endpoints_refuse_without_token(
    browser: Any, server: tuple[str, str]
) -> None:
    base, _token = server
    context = browser.new_context()
    p = context.new_page()
    for path in ("/deleted", "/people", "/people/1", "/places", "/learned", "/ui/timeline"):
        response = p.goto(base + path)
        assert response.status == 401, path
    for path in ("/api/people", "/api/places", "/api/learned", "/api/timeline", "/faces/1/crop"):
        assert p.request.get(base + path).status == 401, path
    r = p.request.post(f"{base}/api/people/1/name", data='{"name": "x"}',
                       headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status == 401
    context.close()
