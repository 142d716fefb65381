"""Redis stream queue against a real server: group, read/ack, reclaim, retries, dead letters."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from autotag.config import Settings
from autotag.errors import ServiceError
from autotag.storage import photo_stream

pytestmark = pytest.mark.services


@pytest.fixture
def qs(redis_service: Settings) -> Iterator[Settings]:
    """Settings with a stream, group and dead-letter stream of this test's own."""
    tag = uuid.uuid4().hex[:8]
    s = dataclasses.replace(
        redis_service,
        stream=f"test:{tag}:photos",
        dead_letter_stream=f"test:{tag}:dead",
        consumer_group=f"g{tag}",
        max_attempts=3,
    )
    yield s
    r = photo_stream.client(s)
    r.delete(s.stream, s.dead_letter_stream)
    r.close()


@pytest.fixture
def r(qs: Settings) -> Iterator[redis.Redis]:
    c = photo_stream.client(qs, check=True)
    yield c
    c.close()


def test_enqueue_read_ack(r: redis.Redis, qs: Settings) -> None:
    ids = [
        photo_stream.enqueue(r, f"{i:064x}", f"/blobs/{i}", f"p{i}.jpg", settings=qs)
        for i in range(3)
    ]
    assert photo_stream.backlog_len(r, settings=qs) == 3
    got = photo_stream.read(r, "c1", count=10, block_ms=100, settings=qs)
    assert [e.entry_id for e in got] == ids
    assert got[0].photo_id == f"{0:064x}" and got[0].blob == "/blobs/0"
    assert got[0].source == "p0.jpg" and got[0].attempt == 0
    assert got[0].as_tuple() == [f"{0:064x}", "/blobs/0", "p0.jpg", 0]
    assert photo_stream.pending_count(r, settings=qs) == 3
    assert photo_stream.read(r, "c2", count=10, block_ms=50, settings=qs) == []  # nothing new
    assert photo_stream.ack(r, ids[:2], settings=qs) == 2
    assert photo_stream.ack(r, ids[2], settings=qs) == 1
    assert photo_stream.ack(r, ids[2], settings=qs) == 0  # already acked: harmless
    assert photo_stream.pending_count(r, settings=qs) == 0
    assert photo_stream.backlog_len(r, settings=qs) == 0


def test_read_blocks_then_returns_empty(r: redis.Redis, qs: Settings) -> None:
    t0 = time.monotonic()
    assert photo_stream.read(r, "c1", count=5, block_ms=300, settings=qs) == []
    assert time.monotonic() - t0 >= 0.25


def test_group_created_before_first_enqueue_sees_everything(r: redis.Redis, qs: Settings) -> None:
    # Entries added by a client that never created the group are still delivered.
    raw = redis.Redis.from_url(qs.redis_url, decode_responses=True)
    raw.xadd(qs.stream, {"photo_id": "a" * 64, "blob": "/b", "source": "s", "attempt": 0})
    got = photo_stream.read(r, "c1", count=5, block_ms=100, settings=qs)
    assert [e.photo_id for e in got] == ["a" * 64]
    raw.close()


def test_reclaim_from_dead_consumer(r: redis.Redis, qs: Settings) -> None:
    ids = [photo_stream.enqueue(r, f"{i:064x}", f"/b/{i}", "s", settings=qs) for i in range(4)]
    taken = photo_stream.read(r, "dead-worker", count=4, block_ms=100, settings=qs)
    assert len(taken) == 4
    photo_stream.ack(r, taken[0].entry_id, settings=qs)
    assert (
        photo_stream.reclaim(r, "live", min_idle_ms=60_000, settings=qs) == []
    )  # not idle long enough
    time.sleep(0.15)
    got = photo_stream.reclaim(r, "live", min_idle_ms=100, count=2, settings=qs)
    assert [e.entry_id for e in got] == ids[1:3]
    got += photo_stream.reclaim(r, "live", min_idle_ms=100, settings=qs)
    assert [e.entry_id for e in got] == ids[1:]
    pend = photo_stream.pending(r, settings=qs)
    assert {p.consumer for p in pend} == {"live"} and all(p.deliveries == 2 for p in pend)
    photo_stream.ack(r, [e.entry_id for e in got], settings=qs)
    assert photo_stream.pending_count(r, settings=qs) == 0


def test_retry_then_dead_letter(r: redis.Redis, qs: Settings) -> None:
    photo_stream.enqueue(r, "b" * 64, "/b", "x.jpg", settings=qs)
    outcomes = []
    for attempt in range(3):
        (e,) = photo_stream.read(r, "c", count=1, block_ms=100, settings=qs)
        assert e.attempt == attempt
        outcomes.append(photo_stream.retry_or_dead_letter(r, e, "worker crashed", settings=qs))
    assert outcomes == ["requeued", "requeued", "dead"]
    assert (
        photo_stream.backlog_len(r, settings=qs) == 0
        and photo_stream.pending_count(r, settings=qs) == 0
    )
    (d,) = photo_stream.dead_letters(r, settings=qs)
    assert (d.photo_id, d.reason, d.attempts) == ("b" * 64, "worker crashed", 3)
    assert abs(d.at - time.time()) < 60
    photo_stream.dead_letter(r, "c" * 64, "undecodable", 1, settings=qs)
    assert [x.photo_id for x in photo_stream.dead_letters(r, 10, settings=qs)] == [
        "c" * 64,
        "b" * 64,
    ]
    assert photo_stream.dead_letters(r, 10, settings=qs)[0].as_dict()["reason"] == "undecodable"


def test_group_lost_is_recreated(r: redis.Redis, qs: Settings) -> None:
    photo_stream.enqueue(r, "d" * 64, "/b", "s", settings=qs)
    r.delete(qs.stream)  # as if Redis came back without its data
    photo_stream.enqueue(
        r, "e" * 64, "/b", "s", settings=qs
    )  # group cached as ready; stream recreated
    got = photo_stream.read(r, "c", count=5, block_ms=100, settings=qs)
    assert [e.photo_id for e in got] == ["e" * 64]


def test_down_redis_is_a_service_error(redis_service: Settings) -> None:
    s = dataclasses.replace(redis_service, redis_port=1, port_offset=0)
    with pytest.raises(ServiceError, match=r"Redis at 127\.0\.0\.1:1 is not answering.*cluster up"):
        photo_stream.client(s, check=True)
