"""Deleting photos (issue 29) on the real Postgres and Redis: the trash and restoring, removal
for good leaving no trace, the DB writer dropping results of deleted photos, the HTTP paths
behind the token, and the CLI."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from autotag.config import Settings
from autotag.contract import FaceFound, PhotoResult
from autotag.ops.web_token import read_token
from autotag.similarity.service import SimilarityService
from autotag.storage import (
    database,
    deletion,
    labels,
    lookups,
    people,
    registry,
    tag_search,
    writer,
)
from autotag.storage.item_stream import ItemStream
from autotag.web.app import create_app
from tests.cli import autotag
from tests.integration.library_client import BASE, own_streams, token_clients, upload

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def del_settings(services: Settings) -> Iterator[Settings]:
    with own_streams(services) as s:
        yield s


@pytest.fixture(scope="module")
def clients(del_settings: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    with token_clients(del_settings) as (authed, bare, _token):
        yield authed, bare


@pytest.fixture
def conn(del_settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    with database.connect(del_settings.services) as c:
        yield c


def tag(s: Settings, rows: dict[str, str], seed: int = 0, faces: bool = False) -> None:
    """Store tagged results as the DB writer does: each photo its tag, and a vector; with
    ``faces`` each photo also one face with a descriptor (as the autotag bolt sends)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=1280).astype(np.float32)
    results = []
    for i, (pid, name) in enumerate(rows.items()):
        v = base + 0.01 * i
        found = []
        if faces:
            e = rng.normal(size=128).astype(np.float32)
            found = [FaceFound((10 + i, 20, 64, 64), 0.93, 0.7, e / np.linalg.norm(e), "dlib@1")]
        results.append(
            PhotoResult(
                pid, "tagged", "v1", "cnn@1", [(name, 0.9)], v / np.linalg.norm(v), faces=found
            )
        )
    with database.connect(s.services) as c:
        assert writer.write_results(c, results) == len(results)


JSON = {"Content-Type": "application/json"}  # what the token guard wants of a write


def found(client: TestClient, word: str) -> list[str]:
    r = client.get(f"/tags/{word}")
    assert r.status_code == 200, r.text
    payload = r.json()
    hits = payload["results"]
    return [h["photo_id"] for h in hits if "photo_id" in h]


def traces(conn: psycopg.Connection[Any], item_id: str) -> list[str]:
    """Every table of the schema holding a row that mentions the id anywhere."""
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    ]
    out = []
    for t in tables:
        # (an alias no table has as a column: faces has an `x`)
        q = psycopg.sql.SQL(
            "SELECT count(*) FROM {t} whole_row WHERE whole_row::text LIKE %s"
        ).format(t=psycopg.sql.Identifier(t))
        row = conn.execute(q, (f"%{item_id}%",)).fetchone()
        if row and row[0]:
            out.append(t)
    return out


def test_trash_hides_everywhere_and_restore_brings_tags_back(
    clients: tuple[TestClient, TestClient], del_settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    client, bare = clients
    word = "trashword" + uuid.uuid4().hex[:6]
    a, b = upload(client), upload(client)
    tag(del_settings, {a: word, b: word})
    labels.set_label(conn, a, "mine", True)
    assert sorted(found(client, word)) == sorted([a, b])
    # One index kept in memory across the delete, as the web app's, saved on disk too.
    sim = SimilarityService(del_settings.services, "exact", "cnn@1", persist=True)
    sim.load()

    def similar() -> list[str]:
        return [h["photo_id"] for h in sim.similar_to_photo(b, top=5)]

    assert a in similar()
    before = lookups.stats(conn)

    assert (
        bare.request("DELETE", f"/photos/{a}", headers=JSON).status_code == 401
    )  # the token, like every write
    r = client.request("DELETE", f"/photos/{a}", headers=JSON)
    assert r.status_code == 200 and r.json()["outcome"] == "trashed", r.text
    assert (
        client.request("DELETE", f"/photos/{a}", headers=JSON).json()["outcome"]
        == "already in trash"
    )  # idempotent

    assert found(client, word) == [b]
    assert a not in similar()
    assert client.get(f"/photos/{a}").status_code == 404
    after = lookups.stats(conn)
    assert json.dumps(after, default=str) != json.dumps(before, default=str)
    assert [t["id"] for t in client.get("/trash").json()].count(a) == 1
    assert del_settings.blob_dir.joinpath(a[:2], a).exists() or any(
        a in p.name for p in del_settings.blob_dir.rglob("*")
    )  # the blob waits in the trash

    assert bare.request("POST", f"/trash/{a}/restore", headers=JSON).status_code == 401
    r = client.request("POST", f"/trash/{a}/restore", headers=JSON)
    assert r.status_code == 200 and r.json()["outcome"] == "restored", r.text
    assert sorted(found(client, word)) == sorted([a, b])
    info = lookups.show(conn, a)
    assert info is not None and info.status == "tagged" and dict(info.tags) == {word: 0.9}
    sim.refresh()  # its vector row is back (a new seq)
    assert a in similar()
    sim.close()
    assert [lb.tag for lb in labels.photo_labels(conn, a)] == ["mine"]
    assert (
        client.request("POST", f"/trash/{a}/restore", headers=JSON).status_code == 404
    )  # not in the trash now


def test_permanent_delete_leaves_no_trace(
    clients: tuple[TestClient, TestClient], del_settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    client, bare = clients
    s = del_settings
    data = uuid.uuid4().bytes * 30
    a = upload(client, data)
    tag(s, {a: "gone" + a[:6]}, faces=True)
    (face,) = people.photo_faces(conn, a)
    people.name_face(conn, face["face_id"], "Gone " + a[:6])  # a person, a person tag
    assert {"faces", "tags", "photo_vectors"} <= set(traces(conn, a))
    client.get(f"/photos/{a}/thumbnail")  # cached next to the blobs
    with SimilarityService(s.services, "exact", "cnn@1", persist=True) as sim:
        sim.load()
        sim.refresh()
        sim.save()  # saved under run/index/
    assert any(a in p.read_text() for p in s.run_dir.rglob("seq-ids.txt"))
    stream = ItemStream(s.services, s.queue)
    stream.dead_letter(a, "test dead letter", 3)
    stream.mark_working(a, 60)
    assert stream.redis.exists(f"{s.queue.stream}:working:{a}")
    assert any(a in p.name for p in s.run_dir.rglob("*"))

    assert bare.request("DELETE", f"/photos/{a}?permanently=true", headers=JSON).status_code == 401
    r = client.request("DELETE", f"/photos/{a}?permanently=true", headers=JSON)
    assert r.status_code == 200 and r.json()["outcome"] == "purged", r.text

    assert [str(p) for p in s.run_dir.rglob("*") if a in p.name] == []
    assert not any(a in p.read_text(errors="ignore") for p in s.run_dir.rglob("seq-ids.txt"))
    assert traces(conn, a) == ["trash"]  # a tombstone: the id only, for results in flight
    row = conn.execute("SELECT purged, rows FROM trash WHERE item_id = %s", (a,)).fetchone()
    assert row == (True, None)
    r2 = stream.redis
    for name in (s.queue.stream, s.queue.dead_letter_stream):
        assert not [e for e in r2.xrange(name) if a in json.dumps(e)]
    assert not r2.exists(f"{s.queue.stream}:working:{a}")
    assert (
        client.request("DELETE", f"/photos/{a}?permanently=true", headers=JSON).json()["outcome"]
        == "already purged"
    )

    deletion.forget_tombstones(conn, 0.0)  # what `autotag gc` does once they are old
    assert traces(conn, a) == []

    # The same bytes again: a new upload, queued to be tagged afresh.
    assert upload(client, data) == a
    info = lookups.show(conn, a)
    assert info is not None and info.status == "queued" and not info.tags


def test_writer_drops_results_of_photos_deleted_while_queued_or_in_flight(
    del_settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    s = del_settings
    ids = [uuid.uuid4().hex + uuid.uuid4().hex for _ in range(4)]
    for pid in ids:
        registry.register(conn, pid, "x.jpg", 10)
    d = deletion.for_settings(s, conn)
    assert [o.outcome for o in d.trash([ids[0]])] == ["trashed"]
    assert [o.outcome for o in d.purge([ids[1]])] == ["purged"]
    results = [PhotoResult(pid, "tagged", "v1", "cnn@1", [("x", 0.5)], None) for pid in ids[:3]]
    results.append(PhotoResult.failed(ids[3], "bad"))
    w = writer.ResultWriter(s.services)
    try:
        assert w.write(results) == 2  # ids[2] tagged, ids[3] failed; the deleted two dropped
        assert w.write([PhotoResult.failed(ids[1], "late failure")]) == 0
        assert w.dropped == 3
    finally:
        w.reset()
    assert lookups.show(conn, ids[0]) is None and lookups.show(conn, ids[1]) is None
    assert conn.execute(
        "SELECT count(*) FROM tags WHERE photo_id = ANY(%s)", (ids[:2],)
    ).fetchone() == (0,)
    info = lookups.show(conn, ids[2])
    assert info is not None and info.status == "tagged"
    registry.mark_failed(conn, ids[1], "dead-lettered late", 3)  # the spout's give-up
    assert lookups.show(conn, ids[1]) is None
    # Restored from the trash, the photo was queued: it is queued again.
    assert d.restore(ids[0]).outcome == "restored"
    info = lookups.show(conn, ids[0])
    assert info is not None and info.status == "queued"


def test_cli_delete_unknown_query_and_trash(
    clients: tuple[TestClient, TestClient], del_settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    client, _ = clients
    s = del_settings
    missing = uuid.uuid4().hex * 2
    r = autotag(s, "delete", missing)
    assert r.returncode != 0 and "no photo or video" in r.stderr, r.stderr

    word = "bulkword" + uuid.uuid4().hex[:6]
    ids = [upload(client) for _ in range(5)]
    tag(s, dict.fromkeys(ids, word), seed=1)
    r = autotag(s, "delete", "--query", word, "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    dry = json.loads(r.stdout)
    assert dry["count"] == 5 and sorted(dry["ids"]) == sorted(ids)
    r = autotag(s, "delete", "--query", word)  # no --yes, no terminal: refused
    assert r.returncode != 0 and lookups.show(conn, ids[0]) is not None
    r = autotag(s, "delete", "--query", word, "--yes", "--json")
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout)["items"]
    assert sorted(o["id"] for o in done if o["outcome"] == "trashed") == sorted(ids)
    assert found(client, word) == []

    r = autotag(s, "trash", "--json")
    assert set(ids) <= {t["id"] for t in json.loads(r.stdout)}
    r = autotag(s, "restore", ids[0])
    assert r.returncode == 0 and "restored" in r.stdout, r.stderr
    assert found(client, word) == [ids[0]]
    r = autotag(s, "trash", "empty", "--json")
    assert r.returncode == 0, r.stderr
    for pid in ids[1:]:
        assert traces(conn, pid) == ["trash"]
    assert {"photos", "tags", "photo_vectors"} <= set(traces(conn, ids[0]))


def _face_rows(conn: psycopg.Connection[Any], photo_id: str) -> list[tuple[Any, ...]]:
    """A photo's faces as stored: box, descriptor, whose, forgotten."""
    return conn.execute(
        "SELECT x, y, w, h, embedding, person_id, assigned_by, forgotten FROM faces "
        "WHERE photo_id = %s ORDER BY face_id",
        (photo_id,),
    ).fetchall()


def by_name(conn: psycopg.Connection[Any], name: str) -> list[str]:
    """What the one tag query (as `autotag search NAME`) finds for a person's name."""
    q = tag_search.TagQuery(name, limit=500)
    return [
        h["photo_id"] for h in tag_search.search(conn, q, None, tag_search.known_tags(conn)).hits
    ]


def test_trash_keeps_faces_and_restore_brings_them_back(
    clients: tuple[TestClient, TestClient], del_settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    client, _ = clients
    s = del_settings
    word = "facetrash" + uuid.uuid4().hex[:6]
    a, b = upload(client), upload(client)
    tag(s, {a: word, b: word}, seed=7, faces=True)
    name_a, name_b = "Ada " + a[:6], "Bob " + b[:6]
    (fa,) = people.photo_faces(conn, a)
    (fb,) = people.photo_faces(conn, b)
    pa = people.name_face(conn, fa["face_id"], name_a)["person_id"]
    pb = people.name_face(conn, fb["face_id"], name_b)["person_id"]
    stored_a, stored_b = _face_rows(conn, a), _face_rows(conn, b)
    assert stored_a[0][4] is not None and stored_a[0][5] == pa
    assert a in by_name(conn, name_a)
    version = people.version(conn)

    d = deletion.for_settings(s, conn)
    assert [o.outcome for o in d.trash([a, b])] == ["trashed", "trashed"]
    assert _face_rows(conn, a) == [] and _face_rows(conn, b) == []  # gone from people at once
    assert people.version(conn) > version  # the bolts reload the people's references
    assert a not in [f["photo_id"] for f in people.person(conn, pa)["face_list"]]
    assert a not in by_name(conn, name_a)

    # Bob asks to be forgotten while his photo is in the trash.
    assert people.forget(conn, pb) is not None

    assert d.restore(a).outcome == "restored"
    assert _face_rows(conn, a) == stored_a  # box, descriptor, person, the user's decision
    assert people.photo_faces(conn, a)[0]["person"] == name_a
    assert a in by_name(conn, name_a)  # the person tag is back

    assert d.restore(b).outcome == "restored"
    (row,) = _face_rows(conn, b)
    assert row[:4] == stored_b[0][:4]  # the box is back ...
    assert row[4] is None and row[5] is None and row[7] is True  # ... but Bob stays forgotten
    assert b not in by_name(conn, name_b)


def test_trash_expires_on_a_timer_in_the_web_service(
    del_settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    """The web service (run by `autotag cluster up`) expires the trash by itself: with a
    trash of 3 seconds, checked every second, a trashed photo is gone for good without any
    `autotag gc`, and a photo trashed just now waits."""
    s = del_settings.override(trash_days=3 / 86400, trash_expiry_secs=1.0)
    d = deletion.for_settings(s, conn)
    app = create_app(s)
    with TestClient(app, base_url=BASE) as client:
        client.headers["Authorization"] = f"Bearer {read_token(s.run_dir)}"
        old = upload(client)
        tag(s, {old: "expiring" + old[:6]}, seed=3)
        assert d.trash([old])[0].outcome == "trashed"
        deadline = time.monotonic() + 30

        def purged() -> bool:
            row = conn.execute("SELECT purged FROM trash WHERE item_id = %s", (old,)).fetchone()
            return row == (True,)

        while not purged():
            assert time.monotonic() < deadline, "not expired after 30 s"
            time.sleep(0.5)
        assert traces(conn, old) == ["trash"]  # the tombstone only
        fresh = upload(client)
        assert d.trash([fresh])[0].outcome == "trashed"
        listed = client.get("/trash").json()
        assert [t["id"] for t in listed] == [fresh], (old, listed)  # not yet expired
        assert app.state.trash_expiry.runs >= 1
    row = conn.execute("SELECT purged FROM trash WHERE item_id = %s", (old,)).fetchone()
    assert row == (True,)  # a tombstone (results in flight are dropped)
    assert not s.blob_dir.joinpath(old[:2], old).exists()
    assert d.restore(fresh).outcome == "restored"


def test_cli_delete_query_within_dates_deletes_what_the_dry_run_counted(
    clients: tuple[TestClient, TestClient], del_settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    client, _ = clients
    s = del_settings
    word = "datedword" + uuid.uuid4().hex[:6]
    ids = [upload(client) for _ in range(4)]
    taken = ["2019-05-01T10:00:00", "2019-12-31T23:30:00", "2020-01-01T00:10:00", None]
    results = [
        PhotoResult(pid, "tagged", "v1", "cnn@1", [(word, 0.8)], None, taken_local=t)
        for pid, t in zip(ids, taken, strict=True)
    ]
    assert writer.write_results(conn, results) == 4
    span = ["--from", "2019-01-01", "--to", "2019-12-31"]
    r = autotag(s, "delete", "--query", word, *span, "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    dry = json.loads(r.stdout)
    assert sorted(dry["ids"]) == sorted(ids[:2]) and dry["count"] == 2  # 2020 and no date: out
    r = autotag(s, "delete", "--query", word, *span, "--yes", "--json")
    assert r.returncode == 0, r.stderr
    done = [o["id"] for o in json.loads(r.stdout)["items"] if o["outcome"] == "trashed"]
    assert sorted(done) == sorted(dry["ids"])
    assert sorted(found(client, word)) == sorted(ids[2:])
    r = autotag(s, "delete", "--from", "2020-01-01", "--to", "2020-01-01", "--dry-run", "--json")
    assert r.returncode == 0 and ids[2] in json.loads(r.stdout)["ids"], r.stderr  # dates only
