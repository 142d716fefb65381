"""Redis stream queue against a real server: group, read/ack, reclaim, retries, dead letters."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator

import pytest

from autotag.config import Settings
from autotag.errors import ServiceError
from autotag.storage import item_stream
from autotag.storage.item_stream import ItemStream

pytestmark = pytest.mark.services


@pytest.fixture
def qs(redis_service: Settings) -> Iterator[Settings]:
    """Settings with a stream, group and dead-letter stream of this test's own."""
    tag = uuid.uuid4().hex[:8]
    s = redis_service.override(
        stream=f"test:{tag}:photos",
        dead_letter_stream=f"test:{tag}:dead",
        consumer_group=f"g{tag}",
        max_attempts=3,
    )
    yield s
    r = item_stream.client(s.services)
    r.delete(s.queue.stream, s.queue.dead_letter_stream)
    r.close()


@pytest.fixture
def r(qs: Settings) -> Iterator[ItemStream]:
    c = ItemStream(qs.services, qs.queue, check=True)
    yield c
    c.redis.close()


def test_enqueue_read_ack(r: ItemStream, qs: Settings) -> None:
    ids = [r.enqueue(f"{i:064x}", f"p{i}.jpg") for i in range(3)]
    assert r.backlog_len() == 3
    got = r.read("c1", count=10, block_ms=100)
    assert [e.entry_id for e in got] == ids
    assert got[0].item_id == f"{0:064x}"
    assert got[0].source == "p0.jpg" and got[0].attempt == 0
    assert got[0].as_tuple() == [f"{0:064x}", "p0.jpg", 0]
    assert r.pending_count() == 3
    assert r.read("c2", count=10, block_ms=50) == []  # nothing new
    assert r.ack(ids[:2]) == 2
    assert r.ack(ids[2]) == 1
    assert r.ack(ids[2]) == 0  # already acked: harmless
    assert r.pending_count() == 0
    assert r.backlog_len() == 0


def test_read_blocks_then_returns_empty(r: ItemStream, qs: Settings) -> None:
    t0 = time.monotonic()
    assert r.read("c1", count=5, block_ms=300) == []
    assert time.monotonic() - t0 >= 0.25


def test_group_created_before_first_enqueue_sees_everything(r: ItemStream, qs: Settings) -> None:
    # Entries added by a client that never created the group are still delivered.
    raw = item_stream.client(qs.services)
    raw.xadd(qs.queue.stream, {"photo_id": "a" * 64, "source": "s", "attempt": 0})
    got = r.read("c1", count=5, block_ms=100)
    assert [e.item_id for e in got] == ["a" * 64]
    raw.close()


def test_reclaim_from_dead_consumer(r: ItemStream, qs: Settings) -> None:
    ids = [r.enqueue(f"{i:064x}", "s") for i in range(4)]
    taken = r.read("dead-worker", count=4, block_ms=100)
    assert len(taken) == 4
    r.ack(taken[0].entry_id)
    assert r.reclaim("live", min_idle_ms=60_000) == []  # not idle long enough
    time.sleep(0.15)
    got = r.reclaim("live", min_idle_ms=100, count=2)
    assert [e.entry_id for e in got] == ids[1:3]
    got += r.reclaim("live", min_idle_ms=100)
    assert [e.entry_id for e in got] == ids[1:]
    pend = r.pending()
    assert {p.consumer for p in pend} == {"live"} and all(p.deliveries == 2 for p in pend)
    r.ack([e.entry_id for e in got])
    assert r.pending_count() == 0


def test_claim_own_pending_takes_only_this_consumers_entries(r: ItemStream) -> None:
    """Item 11: a restarted spout takes back what it had in flight, and nothing that another
    (live) spout is working on."""
    mine = [r.enqueue(f"{i:064x}", "s") for i in range(3)]
    theirs = [r.enqueue(f"{i:064x}", "s") for i in range(3, 5)]
    assert [e.entry_id for e in r.read("spout-1", count=3, block_ms=100)] == mine
    assert [e.entry_id for e in r.read("spout-2", count=2, block_ms=100)] == theirs
    r.ack(mine[1])
    got = r.claim_own_pending("spout-1")
    assert [e.entry_id for e in got] == [mine[0], mine[2]]
    assert {p.entry_id for p in r.pending(consumer="spout-2")} == set(theirs)
    assert r.claim_own_pending("spout-3") == []


def test_uncharged_replay_keeps_the_attempt_count(r: ItemStream) -> None:
    """Item 9: a delivery that died while the photo was not being tagged is replayed with the
    same attempt count and one more replay; the in-progress mark decides the charge."""
    r.enqueue("c" * 64, "x.jpg")
    (e,) = r.read("c", count=1, block_ms=100)
    assert r.take_working(e.item_id) is False
    assert r.retry_or_dead_letter(e, "neighbour crashed", charge=False) == "replayed"
    (e,) = r.read("c", count=1, block_ms=100)
    assert (e.attempt, e.replays) == (0, 1)
    r.mark_working(e.item_id, ttl_secs=60)
    assert r.redis.ttl(f"{r.name}:working:{e.item_id}") > 50
    assert r.take_working(e.item_id) is True and r.take_working(e.item_id) is False
    assert r.retry_or_dead_letter(e, "it crashed the worker") == "requeued"
    (e,) = r.read("c", count=1, block_ms=100)
    assert (e.attempt, e.replays) == (1, 1)
    r.mark_working(e.item_id, ttl_secs=60)
    r.clear_working(e.item_id)
    assert r.take_working(e.item_id) is False
    r.ack(e.entry_id)


def test_dead_letters_are_capped(qs: Settings) -> None:
    """Item 12: the dead-letter stream is trimmed (MAXLEN ~ dead_letter_cap), not unbounded."""
    stream = ItemStream(qs.services, dataclasses.replace(qs.queue, dead_letter_cap=50))
    for i in range(400):
        stream.dead_letter(f"{i:064x}", "undecodable", 1)
    stream.enqueue("d" * 64, "s", attempt=2)
    (last,) = stream.read("c", count=1, block_ms=100)
    assert stream.retry_or_dead_letter(last, "crashed") == "dead"
    length = int(stream.redis.xlen(qs.queue.dead_letter_stream))
    assert 50 <= length < 250, length  # "~": whole radix-tree nodes are trimmed
    assert stream.dead_letters(1)[0].item_id == "d" * 64
    stream.redis.close()


def test_retry_then_dead_letter(r: ItemStream, qs: Settings) -> None:
    r.enqueue("b" * 64, "x.jpg")
    outcomes = []
    for attempt in range(3):
        (e,) = r.read("c", count=1, block_ms=100)
        assert e.attempt == attempt
        outcomes.append(r.retry_or_dead_letter(e, "worker crashed"))
    assert outcomes == ["requeued", "requeued", "dead"]
    assert r.backlog_len() == 0 and r.pending_count() == 0
    (d,) = r.dead_letters()
    assert (d.item_id, d.reason, d.attempts) == ("b" * 64, "worker crashed", 3)
    assert abs(d.at - time.time()) < 60
    r.dead_letter("c" * 64, "undecodable", 1)
    assert [x.item_id for x in r.dead_letters(10)] == [
        "c" * 64,
        "b" * 64,
    ]
    assert r.dead_letters(10)[0].as_dict()["reason"] == "undecodable"


def test_group_lost_is_recreated(r: ItemStream, qs: Settings) -> None:
    r.enqueue("d" * 64, "s")
    r.redis.delete(qs.queue.stream)  # as if Redis came back without its data
    r.enqueue("e" * 64, "s")  # group cached as ready; stream recreated
    got = r.read("c", count=5, block_ms=100)
    assert [e.item_id for e in got] == ["e" * 64]


def test_down_redis_is_a_service_error(redis_service: Settings) -> None:
    s = redis_service.override(redis_port=1, port_offset=0)
    with pytest.raises(ServiceError, match=r"Redis at 127\.0\.0\.1:1 is not answering.*cluster up"):
        item_stream.client(s.services, check=True)
