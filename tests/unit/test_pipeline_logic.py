"""The pipeline layer's logic against small in-memory fakes of the stream and the store:
commit-then-ack, outage back-off, batch flush, retry vs dead letter, attempt accounting,
the tuple codec, and the tag step's failures-as-results. The same classes run in the real
topology (tests/integration/test_pipeline.py covers them on Storm, Redis and Postgres).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from autotag.errors import ImageError
from autotag.pipeline.batcher import ResultBatcher
from autotag.pipeline.contract import (
    FAILED,
    RESULT_FIELDS,
    TAGGED,
    PhotoResult,
    decode_vector,
    encode_vector,
)
from autotag.pipeline.source import PhotoSource
from autotag.pipeline.tag_step import tag_photo
from autotag.storage.blobs import BlobStore
from autotag.storage.photo_stream import Entry, PendingEntry
from autotag.vision.tagger import TagResult

# -- fakes ----------------------------------------------------------------------------------


@dataclass
class FakeStream:
    """The photo stream's semantics in memory: entries, per-consumer pending, dead letters."""

    max_attempts: int = 3
    waiting: list[Entry] = field(default_factory=list)
    pending_by: dict[str, tuple[str, Entry]] = field(default_factory=dict)  # id -> (consumer, e)
    dead: list[tuple[str, str, int]] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    down: bool = False
    _n: int = 0

    def enqueue(self, photo_id: str, source: str, attempt: int = 0) -> str:
        self._n += 1
        e = Entry(f"{self._n}-0", photo_id, source, attempt)
        self.waiting.append(e)
        return e.entry_id

    def read(self, consumer: str, count: int = 10, block_ms: int | None = None) -> list[Entry]:
        got, self.waiting = self.waiting[:count], self.waiting[count:]
        for e in got:
            self.pending_by[e.entry_id] = (consumer, e)
        return got

    def ack(self, entry_ids: str | list[str]) -> int:
        if self.down:
            raise ConnectionError("redis is down")
        ids = [entry_ids] if isinstance(entry_ids, str) else list(entry_ids)
        n = 0
        for i in ids:
            if self.pending_by.pop(i, None) is not None:
                n += 1
                self.acked.append(i)
        return n

    def reclaim(self, consumer: str, min_idle_ms: int, count: int = 100) -> list[Entry]:
        out = [e for c, e in self.pending_by.values() if min_idle_ms == 0 and c == consumer]
        return out[:count]

    def pending(self, count: int = 100, consumer: str | None = None) -> list[PendingEntry]:
        return [
            PendingEntry(i, c, 0, 1)
            for i, (c, _e) in self.pending_by.items()
            if consumer is None or c == consumer
        ][:count]

    def retry_or_dead_letter(self, entry: Entry, reason: str) -> str:
        self.pending_by.pop(entry.entry_id, None)
        attempts = entry.attempt + 1
        if attempts >= self.max_attempts:
            self.dead.append((entry.photo_id, reason, attempts))
            return "dead"
        self.enqueue(entry.photo_id, entry.source, attempts)
        return "requeued"


@dataclass
class FakeStore:
    """A result store that can be made to fail, recording what it committed."""

    fail_next: int = 0
    committed: list[list[PhotoResult]] = field(default_factory=list)
    resets: int = 0

    def write(self, results: Sequence[PhotoResult]) -> int:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("postgres is down")
        self.committed.append(list(results))
        return len(results)

    def reset(self) -> None:
        self.resets += 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def result(i: int) -> PhotoResult:
    return PhotoResult(f"{i:064x}", TAGGED, "m1", "cnn@1", [("cat", 0.9)], None, 10, 10)


# -- the DB writer's batching ------------------------------------------------------------------


def test_batch_flushes_when_full_and_acks_only_after_commit() -> None:
    store, acked = FakeStore(), []
    b = ResultBatcher(store, acked.append, batch_size=3, max_age_secs=60)
    b.add(result(1), "t1")
    b.add(result(2), "t2")
    assert acked == [] and store.committed == []  # nothing acked before a commit
    b.add(result(3), "t3")
    assert [r.photo_id for r in store.committed[0]] == [result(i).photo_id for i in (1, 2, 3)]
    assert acked == ["t1", "t2", "t3"] and b.pending == []


def test_batch_is_due_by_age() -> None:
    clock = Clock()
    b = ResultBatcher(FakeStore(), lambda t: None, batch_size=100, max_age_secs=1.0, clock=clock)
    assert not b.due()
    b.add(result(1), "t1")
    clock.now += 0.5
    assert not b.due()
    clock.now += 0.6
    assert b.due()


def test_outage_keeps_the_batch_backs_off_and_acks_after_recovery() -> None:
    clock, store, acked = Clock(), FakeStore(fail_next=2), []
    b = ResultBatcher(store, acked.append, batch_size=2, max_age_secs=60, clock=clock)
    b.add(result(1), "t1")
    b.add(result(2), "t2")  # full: flush fails
    assert acked == [] and len(b.pending) == 2 and store.resets == 1
    assert b.flush() == 0  # within the back-off: not even tried
    clock.now += 0.5
    assert b.flush() == 0 and store.resets == 2  # tried again, failed again
    assert b.backoff == 2.0  # doubled twice
    clock.now += 1.0
    assert b.flush() == 2
    assert acked == ["t1", "t2"] and b.backoff == 0.5 and b.pending == []


def test_backoff_is_capped() -> None:
    clock = Clock()
    b = ResultBatcher(FakeStore(fail_next=100), lambda t: None, 1, 60, clock=clock)
    b.add(result(1), "t1")
    for _ in range(20):
        clock.now += 60
        b.flush()
    assert b.backoff == 10.0 and len(b.pending) == 1


# -- the spout's settling: retries, dead letters, attempts --------------------------------------


def test_fail_requeues_with_attempt_raised_until_dead_letter() -> None:
    stream = FakeStream(max_attempts=3)
    src = PhotoSource(stream, "spout-1", message_timeout_secs=30)
    stream.enqueue("a" * 64, "a.jpg")
    outcomes = []
    for attempt in range(3):
        (e,) = src.next_entries(8, 0)
        assert e.attempt == attempt
        outcomes.append(src.fail(e.entry_id))
    assert outcomes == ["requeued", "requeued", "dead"]
    assert stream.waiting == [] and stream.pending_by == {}
    (dead,) = src.take_dead()
    assert (dead.photo_id, dead.status, dead.attempts) == ("a" * 64, FAILED, 3)
    assert "gave up after 3 attempts" in (dead.reason or "")
    assert src.take_dead() == []  # handed over once


def test_fail_of_unknown_tuple_is_ignored() -> None:
    src = PhotoSource(FakeStream(), "spout-1", 30)
    assert src.fail("no-such-id") is None


def test_ack_settles_and_a_missed_ack_is_sent_again() -> None:
    stream = FakeStream()
    src = PhotoSource(stream, "spout-1", 30)
    stream.enqueue("b" * 64, "b.jpg")
    (e,) = src.next_entries(8, 0)
    stream.down = True
    with pytest.raises(ConnectionError):
        src.ack(e.entry_id)
    assert src.unacked == [e.entry_id]
    stream.down = False
    src.flush_acks()
    assert stream.acked == [e.entry_id] and src.unacked == []


def test_restart_charges_only_own_pending_entries() -> None:
    stream = FakeStream()
    stream.enqueue("c" * 64, "c.jpg")
    stream.enqueue("d" * 64, "d.jpg")
    stream.read("spout-1", 1)  # c: in flight on this spout when it died
    stream.read("spout-2", 1)  # d: another spout's, still alive
    src = PhotoSource(stream, "spout-1", 30)
    assert src.recover_own_pending() == 1
    (requeued,) = stream.waiting
    assert (requeued.photo_id, requeued.attempt) == ("c" * 64, 1)
    assert [e.photo_id for _c, e in stream.pending_by.values()] == ["d" * 64]


# -- the tuple contract -------------------------------------------------------------------------


def test_result_round_trips_through_json_tuple() -> None:
    vec = np.random.default_rng(0).standard_normal(1280).astype(np.float32)
    r = PhotoResult("e" * 64, TAGGED, "m1", "cnn@1", [("cat", 0.75)], vec, 640, 480, None, 0)
    wire = json.loads(json.dumps(r.to_tuple()))
    assert len(wire) == len(RESULT_FIELDS)
    back = PhotoResult.from_tuple(wire)
    assert back.tags == [("cat", 0.75, "leaf", None)] and back.width == 640
    assert back.vector is not None and np.array_equal(back.vector, vec)


def test_vector_codec_rejects_partial_floats() -> None:
    v = np.arange(4, dtype=np.float32)
    assert np.array_equal(decode_vector(encode_vector(v)), v)
    assert decode_vector(None) is None
    with pytest.raises(ValueError, match="not float32"):
        decode_vector("AAAA")  # 3 bytes


# -- the tag step: any problem with a photo is a failed result ----------------------------------


class FakeTagger:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.seen: list[bytes] = []

    def tag_bytes(self, data: bytes) -> TagResult:
        self.seen.append(data)
        if self.error is not None:
            raise self.error
        return TagResult([("cat", 0.9)], np.ones(4, np.float32), "m1", "cnn@1", 4, 3)


def test_tag_step_tags_a_verified_blob(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    pid, _ = blobs.put_bytes(b"image bytes")
    tagger = FakeTagger()
    r = tag_photo(tagger, blobs, pid)  # type: ignore[arg-type]
    assert (r.status, r.tags, r.width, r.model_version) == (
        TAGGED,
        [("cat", 0.9, "leaf", None)],
        4,
        "m1",
    )
    assert tagger.seen == [b"image bytes"]


@pytest.mark.parametrize(
    "error, reason",
    [(ImageError("not an image: text"), "not an image"), (ValueError("odd"), "ValueError: odd")],
)
def test_tag_step_turns_errors_into_failed_results(
    tmp_path: Path, error: Exception, reason: str
) -> None:
    blobs = BlobStore(tmp_path)
    pid, _ = blobs.put_bytes(b"bytes")
    r = tag_photo(FakeTagger(error), blobs, pid)  # type: ignore[arg-type]
    assert r.status == FAILED and reason in (r.reason or "")


def test_tag_step_never_reads_a_missing_or_altered_blob(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    tagger = FakeTagger()
    missing = tag_photo(tagger, blobs, "f" * 64)  # type: ignore[arg-type]
    assert missing.status == FAILED and "missing" in (missing.reason or "")
    pid, path = blobs.put_bytes(b"original")
    path.write_bytes(b"altered")
    altered = tag_photo(tagger, blobs, pid)  # type: ignore[arg-type]
    assert altered.status == FAILED and "does not match" in (altered.reason or "")
    assert tagger.seen == []


def test_tags_carry_kind_and_via_and_old_pairs_are_leaves() -> None:
    wire = [[["dog", 0.71, "concept", "malamute"], ["malamute", 0.45, "leaf", None]]]
    r = PhotoResult.from_tuple(["f" * 64, TAGGED, "m2", "cnn@1", *wire, None, 1, 1, None, 0])
    assert r.tags[0] == ("dog", 0.71, "concept", "malamute") and r.tags[0].via == "malamute"
    assert json.loads(json.dumps(r.to_tuple()))[4] == wire[0]
    old = PhotoResult.from_tuple(
        ["f" * 64, TAGGED, "m1", "cnn@1", [["tabby", 0.5]], None, 1, 1, None, 0]
    )
    assert old.tags == [("tabby", 0.5, "leaf", None)]
    with pytest.raises(ValueError, match="kind"):
        PhotoResult.from_tuple(
            ["f" * 64, TAGGED, "m", "c", [["x", 0.5, "guess", None]], None, 1, 1, None, 0]
        )
