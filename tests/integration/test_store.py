"""Postgres store against a real server: migrations, idempotent batches, lookups."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql

from autotag.config import Settings
from autotag.contract import PhotoResult, stored
from autotag.storage import database, lookups, registry, tag_search, vectors, writer

pytestmark = pytest.mark.services


def new_id() -> str:
    return hashlib.sha256(uuid.uuid4().bytes).hexdigest()


@pytest.fixture
def conn(postgres_service: Settings) -> Iterator[psycopg.Connection[Any]]:
    with database.connect(postgres_service.services) as c:
        yield c


def counts(conn: psycopg.Connection[Any], ids: list[str]) -> tuple[int, int, int]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM photos WHERE photo_id = ANY(%(i)s)),"
        " (SELECT count(*) FROM tags WHERE photo_id = ANY(%(i)s)),"
        " (SELECT count(*) FROM photo_vectors WHERE photo_id = ANY(%(i)s))",
        {"i": ids},
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def unit(d: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(d).astype(np.float32)
    return v / np.linalg.norm(v)


def find(
    conn: psycopg.Connection[Any],
    text: str,
    vocabulary: dict[str, list[str]] | None = None,
    **query: Any,
) -> list[dict[str, Any]]:
    """``autotag search TEXT``'s hits (the one tag query the CLI, API and web page share)."""
    request = tag_search.TagQuery(text, limit=query.pop("limit", 50), **query)
    return tag_search.search(conn, request, vocabulary).hits


def test_migrate_is_idempotent(conn: psycopg.Connection[Any]) -> None:
    assert database.migrate(conn) == []
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [v for v, _ in database.migration_files()]
    assert "0001" in versions


def test_concurrent_migrations_apply_once(postgres_service: Settings) -> None:
    """Several bolts starting at once on an empty database: each migration runs once."""
    s = postgres_service
    db = f"autotag_mig_{uuid.uuid4().hex[:8]}"
    admin = database.connect(s.services, role="owner", migrate_schema=False, dbname="postgres")
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    try:
        s2 = s.override(postgres_db=db)
        errors: list[BaseException] = []
        applied: list[list[str]] = []

        def run() -> None:
            try:
                with database.connect(s2.services, role="owner", migrate_schema=False) as c:
                    applied.append(database.migrate(c))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sorted(len(a) for a in applied) == [0, 0, 0, len(database.migration_files())]
        with database.connect(s2.services, role="owner") as c:
            n = c.execute("SELECT count(*) FROM schema_migrations").fetchone()
            assert n is not None and n[0] == len(database.migration_files())
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        admin.close()


def test_write_results_idempotent_under_replay(conn: psycopg.Connection[Any]) -> None:
    a, b, c = new_id(), new_id(), new_id()
    for pid in (a, b, c):
        assert registry.register_photo(conn, pid, f"{pid[:6]}.jpg", 123)
    batch = [
        PhotoResult(a, "tagged", "m1", "cnn", [("dog", 0.9), ("grass", 0.4)], unit(8, 1), 640, 480),
        PhotoResult(b, "tagged", "m1", "cnn", [("cat", 0.8)], unit(8, 2), 100, 50),
        PhotoResult(c, "failed", reason="cannot decode image"),
    ]
    assert writer.write_results(conn, batch) == 3
    first = counts(conn, [a, b, c])
    assert first == (3, 3, 2)
    seqs = dict(
        conn.execute(
            "SELECT photo_id, seq FROM photo_vectors WHERE photo_id = ANY(%s)", ([a, b],)
        ).fetchall()
    )
    # Replay the same batch, and a batch holding the same photo twice.
    writer.write_results(conn, batch)
    writer.write_results(conn, batch + batch[:1])
    assert counts(conn, [a, b, c]) == first
    seqs2 = dict(
        conn.execute(
            "SELECT photo_id, seq FROM photo_vectors WHERE photo_id = ANY(%s)", ([a, b],)
        ).fetchall()
    )
    assert seqs2 == seqs  # unchanged vectors do not bump seq (no index churn)
    info = lookups.show(conn, a)
    assert info is not None and info.status == "tagged" and info.model_version == "m1"
    assert info.tags == [("dog", pytest.approx(0.9)), ("grass", pytest.approx(0.4))]
    assert info.vectors == {"cnn": 8} and info.has_vector
    assert (info.width, info.height) == (640, 480)
    failed_info = lookups.show(conn, c)
    assert failed_info is not None and failed_info.status == "failed"
    assert failed_info.reason == "cannot decode image"


def test_result_without_registration_and_tuple_roundtrip(conn: psycopg.Connection[Any]) -> None:
    pid = new_id()
    vec = unit(512, 3)
    r = PhotoResult(pid, "tagged", "m1", "cnn", [("beach", 0.7)], vec, 10, 20)
    wire = r.to_tuple()
    import json

    back = PhotoResult.from_tuple(json.loads(json.dumps(wire)))
    assert back.vector is not None and np.array_equal(back.vector, vec)
    writer.write_results(conn, [back])
    stored = vectors.get_vector(conn, pid, "cnn")
    assert stored is not None and stored.dtype == np.float32
    assert np.array_equal(stored, vec)  # bit-exact float32 round trip
    rows = vectors.vectors_since(conn, 0, "cnn", limit=100_000)
    assert any(v.photo_id == pid for v in rows)
    last = max(v.seq for v in rows)
    assert all(v.photo_id != pid for v in vectors.vectors_since(conn, last, "cnn"))


def test_retag_moves_to_new_model_version(conn: psycopg.Connection[Any]) -> None:
    pid = new_id()
    tag_old, tag_new = f"old{uuid.uuid4().hex[:6]}", f"new{uuid.uuid4().hex[:6]}"
    registry.register_photo(conn, pid, "x.jpg", 1)
    writer.write_results(
        conn, [PhotoResult(pid, "tagged", "v1", "cnn", [(tag_old, 0.9)], unit(4, 0))]
    )
    s1 = vectors.get_vector(conn, pid)
    writer.write_results(
        conn, [PhotoResult(pid, "tagged", "v2", "cnn", [(tag_new, 0.8)], unit(4, 5))]
    )
    info = lookups.show(conn, pid)
    assert info is not None and info.model_version == "v2"
    assert [t for t, _ in info.tags] == [tag_new]
    assert info.other_model_versions == {"v1": 1}
    assert find(conn, tag_old) == []
    assert [h["photo_id"] for h in find(conn, tag_new)] == [pid]
    s2 = vectors.get_vector(conn, pid)
    assert s1 is not None and s2 is not None and not np.array_equal(s1, s2)
    # Re-tagging with the same version replaces that version's tags.
    writer.write_results(conn, [PhotoResult(pid, "tagged", "v2", "cnn", [(tag_old, 0.5)], None)])
    info = lookups.show(conn, pid)
    assert info is not None and [t for t, _ in info.tags] == [tag_old]


def test_failed_result_does_not_downgrade_tagged(conn: psycopg.Connection[Any]) -> None:
    pid = new_id()
    writer.write_results(conn, [PhotoResult(pid, "tagged", "v1", "cnn", [("x", 0.5)])])
    writer.write_results(conn, [PhotoResult(pid, "failed", reason="flaky")])
    info = lookups.show(conn, pid)
    assert info is not None and info.status == "tagged" and info.tags == [("x", 0.5)]
    registry.mark_failed(conn, pid, "dead-lettered", 3)
    info = lookups.show(conn, pid)
    assert info is not None and info.status == "tagged" and info.attempts == 3


def test_register_keeps_tagged_and_requeues_failed(conn: psycopg.Connection[Any]) -> None:
    tagged, bad = new_id(), new_id()
    reg = registry.register(conn, tagged, "a.jpg", 10)
    assert reg.new and reg.previous_status is None and reg.status == "queued"
    writer.write_results(conn, [PhotoResult(tagged, "tagged", "v1", "cnn", [("y", 0.3)])])
    reg = registry.register(conn, tagged, "again.jpg", 10)
    assert not reg.new and reg.status == "tagged"
    assert registry.register(conn, tagged, "b.jpg", 10, force=True).status == "queued"
    info = lookups.show(conn, tagged)
    assert info is not None and info.source == "a.jpg" and info.tags == [("y", pytest.approx(0.3))]

    registry.register(conn, bad, "bad.jpg", 5)
    registry.mark_failed(conn, bad, "not an image", 3)
    assert any(
        f["photo_id"] == bad and f["reason"] == "not an image" for f in lookups.failed(conn, 1000)
    )
    items = registry.requeue_info(conn, [bad])
    assert [(i.photo_id, i.status, i.attempts) for i in items] == [(bad, "failed", 3)]
    other = new_id()
    writer.write_results(conn, [PhotoResult(other, "tagged", "v1", "cnn", [("y", 0.3)])])
    assert registry.mark_queued(conn, [bad, other]) == 1  # a tagged photo is left alone
    assert bad in registry.queued_ids(conn)
    assert registry.register(conn, bad, "bad.jpg", 5).previous_status == "queued"


def test_search_exact_words_case_scores(conn: psycopg.Connection[Any]) -> None:
    w = uuid.uuid4().hex[:8]
    ids = [new_id() for _ in range(5)]
    results = [
        PhotoResult(ids[0], "tagged", "v1", "cnn", [(f"dog{w}", 0.6)]),
        PhotoResult(ids[1], "tagged", "v1", "cnn", [(f"Dog{w}", 0.9)]),
        PhotoResult(ids[2], "tagged", "v1", "cnn", [(f"hot dog{w}", 0.95), (f"dog{w} sled", 0.2)]),
        PhotoResult(ids[3], "tagged", "v1", "cnn", [(f"dog{w}", 0.1)]),
        PhotoResult(ids[4], "tagged", "v1", "cnn", [(f"dogs{w}", 0.99)]),
    ]
    writer.write_results(conn, results)
    hits = find(conn, f"DOG{w}")
    assert [(h["photo_id"], h["match"]) for h in hits] == [
        (ids[1], "exact"),
        (ids[0], "exact"),
        (ids[3], "exact"),
        (ids[2], "word"),
    ]
    assert hits[3]["tag"] == f"hot dog{w}"  # the photo's best word match
    assert [h["photo_id"] for h in find(conn, f"dog{w}", min_score=0.5)] == [
        ids[1],
        ids[0],
        ids[2],
    ]
    assert [h["photo_id"] for h in find(conn, f"dog{w}", limit=2)] == [ids[1], ids[0]]
    assert [h["photo_id"] for h in find(conn, f"dog{w}", words=False)] == [
        ids[1],
        ids[0],
        ids[3],
    ]
    assert [h["photo_id"] for h in find(conn, f"hot dog{w}")] == [ids[2]]
    assert find(conn, "  ") == []
    assert find(conn, "%") == []


def test_word_search_uses_index(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET enable_seqscan = off")
    try:
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT 1 FROM tags t WHERE "
                "array_remove(regexp_split_to_array(lower(t.tag), '[^[:alnum:]]+'), '')"
                " @> array_remove(regexp_split_to_array(lower(%s::text), '[^[:alnum:]]+'), '')",
                ("retriever",),
            )
        )
    finally:
        conn.execute("RESET enable_seqscan")
    assert "tags_words_idx" in plan


def test_stats(conn: psycopg.Connection[Any]) -> None:
    w = uuid.uuid4().hex[:8]
    before = lookups.stats(conn, top=1000)
    ids = [new_id() for _ in range(3)]
    registry.register_photo(conn, new_id(), "q.jpg", 1)
    writer.write_results(
        conn,
        [
            PhotoResult(
                ids[0], "tagged", "v1", "cnn", [(f"a{w}", 0.9), (f"b{w}", 0.5)], unit(4, 1)
            ),
            PhotoResult(ids[1], "tagged", "v1", "cnn", [(f"a{w}", 0.7)], unit(4, 2)),
            PhotoResult(ids[2], "failed", reason="corrupt"),
        ],
    )
    after = lookups.stats(conn, top=1000)
    assert after["photos"] == before["photos"] + 4
    assert after["by_status"]["queued"] == before["by_status"]["queued"] + 1
    assert after["by_status"]["tagged"] == before["by_status"]["tagged"] + 2
    assert after["by_status"]["failed"] == before["by_status"]["failed"] + 1
    assert after["current_tags"] == before["current_tags"] + 3
    top = {t["tag"]: t for t in after["top_tags"]}
    assert top[f"a{w}"]["photos"] == 2 and top[f"a{w}"]["avg_score"] == pytest.approx(0.8)
    assert top[f"b{w}"]["photos"] == 1
    assert after["vectors"]["cnn"] >= before["vectors"].get("cnn", 0) + 2
    assert after["tags_per_photo"] > 0


def test_bad_result_is_isolated_and_batch_is_atomic(conn: psycopg.Connection[Any]) -> None:
    good, bad = new_id(), new_id()
    poison = PhotoResult(bad, "tagged", "v1", "cnn", [("huge", 1e300)])  # out of real's range
    # One transaction: the refused tags statement undoes the photos upsert before it.
    with pytest.raises(psycopg.DataError):
        writer._send(conn, writer._columns([poison]))
    assert lookups.show(conn, bad) is None
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    batch = [
        PhotoResult(good, "tagged", "v1", "cnn", [("fine", 0.5)]),
        poison,
        PhotoResult("not-a-photo-id", "tagged", "v1", "cnn", [("x", 0.5)]),
        PhotoResult(new_id(), "tagged", "v1", "cnn", [("nul\x00byte", 0.5)]),
    ]
    assert writer.write_results(conn, batch) == 3
    g, b = lookups.show(conn, good), lookups.show(conn, bad)
    assert g is not None and g.status == "tagged" and g.tags == [("fine", 0.5)]
    assert b is not None and b.status == "failed" and "could not store result" in (b.reason or "")
    assert lookups.show(conn, batch[3].photo_id).tags == [("nulbyte", 0.5)]  # type: ignore[union-attr]


def test_permanent_errors_are_isolated_not_retried(conn: psycopg.Connection[Any]) -> None:
    """Item 10: a 3 KB tag name (past the btree row limit: SQLSTATE 54000, which psycopg
    calls an OperationalError) and a row the builder refuses (ValueError) used to escape as
    "transient" and stall every later batch; each now fails alone, with a reason."""
    import os

    good, long_tag, no_version = new_id(), new_id(), new_id()
    batch = [
        PhotoResult(good, "tagged", "v1", "cnn", [("fine", 0.5)]),
        PhotoResult(long_tag, "tagged", "v1", "cnn", [(os.urandom(1500).hex(), 0.5)]),
        PhotoResult(no_version, "tagged", None, "cnn", [("y", 0.5)]),
    ]
    assert writer.write_results(conn, batch) == 3
    g, t, v = (lookups.show(conn, pid) for pid in (good, long_tag, no_version))
    assert g is not None and g.status == "tagged" and g.tags == [("fine", 0.5)]
    assert t is not None and t.status == "failed"
    assert "could not store result" in (t.reason or "") and "index row" in (t.reason or "")
    assert v is not None and v.status == "failed" and "no model_version" in (v.reason or "")


def test_gc_removes_blobs_of_deleted_photos_and_stale_temp_files(
    services: Settings, conn: psycopg.Connection[Any]
) -> None:
    """Item 12: `autotag gc` (--dry-run, --json) removes what nothing refers to any more,
    and never a blob with a photo row or a file younger than --min-age."""
    import json
    import os
    import time

    from click.testing import CliRunner

    from autotag.cli import cli
    from autotag.storage.blobs import BlobStore

    blobs = BlobStore(services.blob_dir)
    kept, _ = blobs.put_bytes(uuid.uuid4().bytes)
    registry.register_photo(conn, kept, "kept.jpg", 16)
    deleted, _ = blobs.put_bytes(uuid.uuid4().bytes)
    registry.register_photo(conn, deleted, "deleted.jpg", 16)
    conn.execute("DELETE FROM photos WHERE photo_id = %s", (deleted,))
    fresh, _ = blobs.put_bytes(uuid.uuid4().bytes)  # an upload that has not registered yet
    stale_tmp = services.blob_dir / ".tmp" / f"in-{uuid.uuid4().hex}"
    stale_tmp.write_bytes(b"half an upload")
    an_hour_ago = time.time() - 3700
    for path in (blobs.path_for(kept), blobs.path_for(deleted), stale_tmp):
        os.utime(path, (an_hour_ago, an_hour_ago))

    dry = CliRunner().invoke(cli, ["gc", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    found = json.loads(dry.output)
    assert deleted in found["orphan_blobs"] and str(stale_tmp) in found["temp_files"]
    assert kept not in found["orphan_blobs"] and fresh not in found["orphan_blobs"]
    assert found["removed"] is False and blobs.exists(deleted) and stale_tmp.exists()

    done = CliRunner().invoke(cli, ["gc"])
    assert done.exit_code == 0, done.output
    assert done.output.startswith("removed ") and "stale temp files" in done.output
    assert not blobs.exists(deleted) and not stale_tmp.exists()
    assert blobs.exists(kept) and blobs.exists(fresh)


# -- tag kinds and searching by everyday words ---------------------------------------------


def test_tag_kinds_are_stored_and_concepts_listed_first(conn: psycopg.Connection[Any]) -> None:
    pid, old, bad = new_id(), new_id(), new_id()
    refused = PhotoResult(bad, "tagged", "v2", "cnn@1")
    refused.tags = [("x", 0.5, "guess", None)]  # past the contract's own check
    tags = [
        ("malamute", 0.45, "leaf", None),
        ("German shepherd", 0.26, "leaf", None),
        ("dog", 0.71, "concept", "malamute"),
        ("animal", 0.72, "concept", "malamute"),
        ("person", 0.88, "detector", None),
        ("black and white", 1.0, "property", None),
    ]
    writer.write_results(
        conn,
        [
            PhotoResult(pid, "tagged", "v2", "cnn@1", tags),
            PhotoResult(old, "tagged", "v1", "cnn@1", [("tabby", 0.5)]),  # an older bolt
            refused,
        ],
    )
    info = lookups.show(conn, pid)
    assert info is not None
    assert [t for t, _ in info.tags] == [
        "animal",
        "dog",
        "black and white",
        "person",
        "malamute",
        "German shepherd",
    ]
    assert info.kinds["dog"] == ("concept", "malamute")
    assert info.kinds["person"] == ("detector", None)
    assert info.as_dict()["tags"][0] == {
        "tag": "animal",
        "score": pytest.approx(0.72),
        "kind": "concept",
        "via": "malamute",
    }
    legacy = lookups.show(conn, old)
    assert legacy is not None and legacy.kinds == {"tabby": ("leaf", None)}
    stored = lookups.show(conn, bad)  # the tags table checks kinds: stored as failed
    assert stored is not None and stored.status == "failed" and "kind" in (stored.reason or "")


def test_search_by_concept_synonym_plural_and_several_words(
    conn: psycopg.Connection[Any],
) -> None:
    w = uuid.uuid4().hex[:6]
    dog, cat, car, beach_dog = (new_id() for _ in range(4))
    writer.write_results(
        conn,
        [
            PhotoResult(
                dog,
                "tagged",
                "v2",
                "cnn@1",
                [(f"shepherd{w}", 0.3), (f"dog{w}", 0.8, "concept", f"shepherd{w}")],
            ),
            PhotoResult(cat, "tagged", "v2", "cnn@1", [(f"cat{w}", 0.9, "concept", f"tabby{w}")]),
            PhotoResult(car, "tagged", "v2", "cnn@1", [(f"car{w}", 0.7, "concept", f"cab{w}")]),
            PhotoResult(
                beach_dog,
                "tagged",
                "v2",
                "cnn@1",
                [(f"dog{w}", 0.6, "concept", f"pug{w}"), (f"beach{w}", 0.9, "concept", "x")],
            ),
        ],
    )
    vocab = {
        f"dog{w}": [f"dog{w}"],
        f"hound{w}": [f"dog{w}"],
        f"cat{w}": [f"cat{w}"],
        f"car{w}": [f"car{w}"],
        f"automobile{w}": [f"car{w}"],
        f"beach{w}": [f"beach{w}"],
        f"shepherd{w}": [f"shepherd{w}"],
    }

    def ids(q: str) -> list[str]:
        return [h["photo_id"] for h in find(conn, q, vocab)]

    assert ids(f"dog{w}") == [dog, beach_dog]
    assert ids(f"DOG{w}s") == [dog, beach_dog]  # a plural
    assert ids(f"automobile{w}") == [car]  # a synonym
    assert ids(f"dog{w} beach{w}") == [beach_dog]  # both words
    assert ids(f"beach{w} cat{w}") == []
    (why,) = find(conn, f"hound{w}s beach{w}", vocab)
    assert why["matches"][0] == {
        "term": f"hound{w}s",
        "tag": f"dog{w}",
        "score": pytest.approx(0.6),
        "match": "synonym",
        "kind": "concept",
        "via": f"pug{w}",
    }
    assert why["matches"][1]["match"] == "exact" and why["matches"][1]["tag"] == f"beach{w}"
    assert (why["tag"], why["match"]) == (f"dog{w}", "synonym")  # the weakest term
    plural = find(conn, f"shepherd{w}s", vocab)
    assert [(h["photo_id"], h["match"], h["kind"]) for h in plural] == [(dog, "plural", "leaf")]


def test_psql_finds_concepts_by_kind(conn: psycopg.Connection[Any]) -> None:
    """The README's psql query for concepts."""
    pid, w = new_id(), uuid.uuid4().hex[:6]
    writer.write_results(
        conn, [PhotoResult(pid, "tagged", "v2", "cnn@1", [(f"dog{w}", 0.8, "concept", "pug")])]
    )
    rows = conn.execute(
        "SELECT p.photo_id, t.score, t.via FROM tags t JOIN photos p"
        " ON p.photo_id = t.photo_id AND p.model_version = t.model_version"
        " WHERE t.kind = 'concept' AND t.tag = %s ORDER BY t.score DESC",
        (f"dog{w}",),
    ).fetchall()
    assert rows == [(pid, pytest.approx(0.8), "pug")]


def test_stats_show_the_retag_backlog(conn: psycopg.Connection[Any]) -> None:
    """After a new default bundle lands: how many photos are still on another version."""
    new = f"new-{uuid.uuid4().hex[:8]}"
    before = lookups.stats(conn, active_version=new)["backlog"]
    assert before["active"] == new
    old_ids, new_ids = [new_id() for _ in range(3)], [new_id() for _ in range(2)]
    writer.write_results(
        conn,
        [PhotoResult(i, "tagged", "old-v1", "cnn", [("x", 0.5)]) for i in old_ids]
        + [PhotoResult(i, "tagged", new, "cnn", [("x", 0.5)]) for i in new_ids],
    )
    assert registry.mark_queued(conn, old_ids[:1], include_tagged=True) == 1  # being re-tagged
    after = lookups.stats(conn, active_version=new)["backlog"]
    assert after["on_other_versions"] == before["on_other_versions"] + 3
    assert after["queued_for_retag"] == before["queued_for_retag"] + 1
    writer.write_results(conn, [PhotoResult(old_ids[0], "tagged", new, "cnn", [("x", 0.6)])])
    done = lookups.stats(conn, active_version=new)["backlog"]
    assert done["on_other_versions"] == before["on_other_versions"] + 2
    assert lookups.stats(conn)["backlog"] is None


def test_photos_on_a_current_version_are_not_backlog(conn: psycopg.Connection[Any]) -> None:
    """Learned tags re-scored under a photo's own version: photos on the bundle the active
    one was learned from are neither counted as backlog nor re-tagged."""
    base, learned = f"base-{uuid.uuid4().hex[:8]}", f"base+learned-{uuid.uuid4().hex[:8]}"
    on_base, on_learned, on_other = new_id(), new_id(), new_id()
    for pid in (on_base, on_learned, on_other):
        registry.register_photo(conn, pid, "x.jpg", 1)
    writer.write_results(
        conn,
        [
            PhotoResult(on_base, "tagged", base, "cnn", [("x", 0.5)]),
            PhotoResult(on_learned, "tagged", learned, "cnn", [("x", 0.5)]),
            PhotoResult(on_other, "tagged", f"other-{uuid.uuid4().hex[:8]}", "cnn", [("x", 0.5)]),
        ],
    )
    alone = lookups.stats(conn, active_version=learned)["backlog"]["on_other_versions"]
    current = lookups.stats(conn, active_version=learned, current=[base])["backlog"]
    assert current["on_other_versions"] == alone - 1
    stale = set(registry.stale_model_ids(conn, learned, current=[base]))
    assert on_other in stale and on_base not in stale and on_learned not in stale
    assert on_base in set(registry.stale_model_ids(conn, learned))


def test_a_new_contract_field_is_stored_by_the_writer(postgres_service: Settings) -> None:
    """A field added to the contract (one declaration) travels through the tuple and is
    stored by the writer in its ``photos`` column (one migration: here, an ALTER TABLE)."""
    column = "test_note_" + uuid.uuid4().hex[:8]

    @dataclass
    class Noted(PhotoResult):
        note: str | None = stored("text", default=None, column=column)

    with database.connect(postgres_service.services, role="owner") as owner:
        owner.execute(f"ALTER TABLE photos ADD COLUMN {column} text")
    try:
        pid, failed_id = new_id(), new_id()
        sent = Noted(pid, "tagged", "v1", "cnn", [("dog", 0.5)], note="taken by a test")
        received = Noted.from_tuple(json.loads(json.dumps(sent.to_tuple())))  # multilang JSON
        with database.connect(postgres_service.services) as conn:
            assert writer.write_results(conn, [received, Noted.failed(failed_id, "bad")]) == 2
            rows = dict(
                conn.execute(
                    f"SELECT photo_id, {column} FROM photos WHERE photo_id = ANY(%s)",
                    ([pid, failed_id],),
                ).fetchall()
            )
            assert rows == {pid: "taken by a test", failed_id: None}
            # a replay without the field keeps what is stored (merge "keep")
            writer.write_results(conn, [Noted(pid, "tagged", "v1", "cnn", [("dog", 0.5)])])
            (kept,) = conn.execute(
                f"SELECT {column} FROM photos WHERE photo_id = %s", (pid,)
            ).fetchone()
            assert kept == "taken by a test"
    finally:
        with database.connect(postgres_service.services, role="owner") as owner:
            owner.execute(f"ALTER TABLE photos DROP COLUMN {column}")


def test_a_learned_tag_is_stored_only_while_it_is_learned(conn: psycopg.Connection[Any]) -> None:
    """A bolt still on a bundle that `autotag learned forget` replaced (bolts switch within
    seconds) sends a learned tag no longer learned: the writer leaves it out, and keeps the
    photo's other tags; a learned tag that is learned is stored."""
    from autotag.contract import Tag
    from autotag.storage import learned

    kept, gone = f"k{uuid.uuid4().hex[:8]}", f"g{uuid.uuid4().hex[:8]}"
    learned.save_state(
        conn, kept, "learned", "", bundle_id=None, n_pos=5, n_neg=3, precision=0.9,
        recall=0.7, threshold=0.5, labels_seen="x",
    )  # fmt: skip
    pid = new_id()
    tags = [Tag("cat", 0.8), Tag(kept, 0.9, "learned"), Tag(gone, 0.9, "learned")]
    writer.write_results(conn, [PhotoResult(pid, "tagged", "v1", "cnn@1", tags, None)])
    stored = {t: k for t, _s, k in conn.execute(
        "SELECT tag, score, kind FROM tags WHERE photo_id = %s", (pid,)
    ).fetchall()}  # fmt: skip
    assert stored == {"cat": "leaf", kept: "learned"}
