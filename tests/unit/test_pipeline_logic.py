"""The pipeline layer's logic against small in-memory fakes of the stream and the store:
commit-then-ack, outage back-off, batch flush, retry vs dead letter, attempt accounting,
the tuple codec, and the tag step's failures-as-results. The same classes run in the real
topology (tests/integration/test_pipeline.py covers them on Storm, Redis and Postgres).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg
import pytest

from autotag.config import Settings
from autotag.contract import (
    FAILED,
    RESULT_FIELDS,
    TAGGED,
    PhotoResult,
    decode_vector,
    encode_vector,
)
from autotag.errors import ImageError, ModelError
from autotag.pipeline.batcher import ResultBatcher
from autotag.pipeline.source import ItemSource
from autotag.pipeline.tag_step import ActiveTagger, TagStep, tag_photo
from autotag.storage.blobs import BlobStore
from autotag.storage.item_stream import Entry, PendingEntry
from autotag.storage.writer import is_transient
from autotag.vision.bundle import set_active
from autotag.vision.tagger import TagResult
from tests.bundles import hog_bundle

# -- fakes ----------------------------------------------------------------------------------


@dataclass
class FakeStream:
    """The photo stream's semantics in memory: entries, per-consumer pending, dead letters,
    in-progress marks. Every pending entry counts as just delivered (idle 0)."""

    max_attempts: int = 3
    max_replays: int = 10
    waiting: list[Entry] = field(default_factory=list)
    pending_by: dict[str, tuple[str, Entry]] = field(default_factory=dict)  # id -> (consumer, e)
    dead: list[tuple[str, str, int]] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    working: set[str] = field(default_factory=set)
    down: bool = False
    _n: int = 0

    def enqueue(self, photo_id: str, source: str, attempt: int = 0, replays: int = 0) -> str:
        self._n += 1
        e = Entry(f"{self._n}-0", photo_id, source, attempt, replays)
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
        """XAUTOCLAIM: any consumer's entries idle at least min_idle_ms move to this one."""
        out = [e for _c, e in self.pending_by.values() if min_idle_ms <= 0][:count]
        for e in out:
            self.pending_by[e.entry_id] = (consumer, e)
        return out

    def claim_own_pending(self, consumer: str, count: int = 1000) -> list[Entry]:
        return [e for c, e in self.pending_by.values() if c == consumer][:count]

    def pending(self, count: int = 100, consumer: str | None = None) -> list[PendingEntry]:
        return [
            PendingEntry(i, c, 0, 1)
            for i, (c, _e) in self.pending_by.items()
            if consumer is None or c == consumer
        ][:count]

    def mark_working(self, photo_id: str, ttl_secs: int) -> None:
        self.working.add(photo_id)

    def clear_working(self, photo_id: str) -> None:
        self.working.discard(photo_id)

    def take_working(self, photo_id: str) -> bool:
        found = photo_id in self.working
        self.working.discard(photo_id)
        return found

    def has_entry(self, entry_id: str) -> bool:
        return entry_id in self.pending_by or any(e.entry_id == entry_id for e in self.waiting)

    def delete_item(self, item_id: str) -> None:
        """What ``storage.deletion`` does to a deleted photo's entries: acked and deleted."""
        self.waiting = [e for e in self.waiting if e.item_id != item_id]
        for i, (_c, e) in list(self.pending_by.items()):
            if e.item_id == item_id:
                del self.pending_by[i]
        self.working.discard(item_id)

    def retry_or_dead_letter(self, entry: Entry, reason: str, *, charge: bool = True) -> str:
        self.pending_by.pop(entry.entry_id, None)
        replay = not charge and entry.replays < self.max_replays
        attempts = entry.attempt if replay else entry.attempt + 1
        if attempts >= self.max_attempts:
            self.dead.append((entry.item_id, reason, attempts))
            return "dead"
        self.enqueue(entry.item_id, entry.source, attempts, entry.replays + int(replay))
        return "replayed" if replay else "requeued"


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
    b = ResultBatcher(FakeStore(fail_next=100), lambda t: None, 1, 60, max_retries=100, clock=clock)
    b.add(result(1), "t1")
    for _ in range(20):
        clock.now += 60
        b.flush()
    assert b.backoff == 10.0 and len(b.pending) == 1


def test_retries_are_capped_then_the_tuples_fail_back_to_storm() -> None:
    """Item 10: a batch that keeps failing is not held forever: after max_retries its tuples
    are failed (Storm replays them from the spout) and later batches go through."""
    clock, store, acked, failed = Clock(), FakeStore(fail_next=5), [], []
    b = ResultBatcher(store, acked.append, 2, 60, fail=failed.append, max_retries=5, clock=clock)
    b.add(result(1), "t1")
    b.add(result(2), "t2")
    for _ in range(10):
        clock.now += 60
        b.flush()
    assert failed == ["t1", "t2"] and acked == [] and b.pending == []
    b.add(result(3), "t3")
    b.add(result(4), "t4")
    assert acked == ["t3", "t4"] and b.backoff == 0.5


def test_idle_flushes_are_spaced_so_batches_grow_under_load() -> None:
    clock, store, acked = Clock(), FakeStore(), []
    b = ResultBatcher(store, acked.append, 64, 60, min_interval_secs=0.1, clock=clock)
    b.add(result(1), "t1")
    assert b.idle_flush_wait() == 0  # after a quiet spell: written at once
    b.flush()
    clock.now += 0.03
    b.add(result(2), "t2")
    assert abs(b.idle_flush_wait() - 0.07) < 1e-9  # 30 ms after a commit: hold 70 ms more
    clock.now += 0.05
    b.add(result(3), "t3")
    assert abs(b.idle_flush_wait() - 0.02) < 1e-9
    clock.now += 0.02
    assert b.idle_flush_wait() == 0
    b.flush()
    assert [len(c) for c in store.committed] == [1, 2] and acked == ["t1", "t2", "t3"]


# -- the spout's settling: retries, dead letters, attempts --------------------------------------


def test_fail_requeues_with_attempt_raised_until_dead_letter() -> None:
    stream = FakeStream(max_attempts=3)
    src = ItemSource(stream, "spout-1", message_timeout_secs=30)
    stream.enqueue("a" * 64, "a.jpg")
    outcomes = []
    for attempt in range(3):
        (e,) = src.next_entries(8, 0)
        assert e.attempt == attempt
        stream.mark_working(e.item_id, 60)  # it was being tagged when its tuple failed
        outcomes.append(src.fail(e.entry_id))
    assert outcomes == ["requeued", "requeued", "dead"]
    assert stream.waiting == [] and stream.pending_by == {}
    (dead,) = src.take_dead()
    assert (dead.item_id, dead.attempts) == ("a" * 64, 3)
    assert "gave up after 3 attempts" in (dead.reason or "")
    assert src.take_dead() == []  # handed over once


def test_fail_of_a_photo_deleted_in_flight_is_neither_retried_nor_dead_lettered() -> None:
    stream = FakeStream(max_attempts=1)
    src = ItemSource(stream, "spout-1", message_timeout_secs=30)
    stream.enqueue("d" * 64, "deleted.jpg")
    stream.enqueue("k" * 64, "kept.jpg")
    gone, kept = src.next_entries(8, 0)
    stream.mark_working(gone.item_id, 60)
    stream.mark_working(kept.item_id, 60)
    stream.delete_item(gone.item_id)  # deleted while being tagged; then its worker dies
    assert src.fail(gone.entry_id) == "deleted"
    assert src.fail(kept.entry_id) == "dead"  # the same failure of a photo not deleted
    assert [d.item_id for d in src.take_dead()] == [kept.item_id]
    assert stream.waiting == [] and gone.item_id not in stream.working


def test_fail_of_unknown_tuple_is_ignored() -> None:
    src = ItemSource(FakeStream(), "spout-1", 30)
    assert src.fail("no-such-id") is None


def test_acks_are_sent_in_groups_and_on_flush() -> None:
    stream = FakeStream()
    src = ItemSource(stream, "spout-1", 30, ack_batch=4)
    for i in range(6):
        stream.enqueue(f"{i}" * 64, f"{i}.jpg")
    entries = src.next_entries(8, 0)
    for e in entries[:3]:
        src.ack(e.entry_id)
    assert stream.acked == [] and len(src.unacked) == 3  # held back
    src.ack(entries[3].entry_id)
    assert stream.acked == [e.entry_id for e in entries[:4]] and src.unacked == []
    src.ack(entries[4].entry_id)
    src.flush_acks()  # the spout's next call sends what is held
    assert stream.acked == [e.entry_id for e in entries[:5]] and src.inflight.keys() == {
        entries[5].entry_id
    }
    src.ack(entries[5].entry_id)  # nothing left in flight: sent at once
    assert stream.acked == [e.entry_id for e in entries] and src.unacked == []


def test_ack_settles_and_a_missed_ack_is_sent_again() -> None:
    stream = FakeStream()
    src = ItemSource(stream, "spout-1", 30, ack_batch=1)
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
    """Item 11: a restarted spout claims its own pending entries, never another's (XPENDING
    for the consumer, then XCLAIM; XAUTOCLAIM from 0-0 would take spout-2's too)."""
    stream = FakeStream()
    stream.enqueue("d" * 64, "d.jpg")
    stream.read("spout-2", 1)  # d: another spout's, still alive (first in the pending list)
    stream.enqueue("c" * 64, "c.jpg")
    stream.read("spout-1", 1)  # c: in flight on this spout when it died
    stream.mark_working("c" * 64, 60)  # ... and being tagged
    src = ItemSource(stream, "spout-1", 30)
    assert src.recover_own_pending() == 1
    (requeued,) = stream.waiting
    assert (requeued.item_id, requeued.attempt) == ("c" * 64, 1)
    assert [e.item_id for _c, e in stream.pending_by.values()] == ["d" * 64]


def test_a_crash_charges_only_the_photo_being_tagged() -> None:
    """Item 9: a poison photo kills its worker three times; only it is dead-lettered, and
    the neighbours that were in flight with it each time are replayed without charge."""
    stream = FakeStream(max_attempts=3)
    poison = "0" * 64
    neighbours = [f"{i:064x}" for i in range(1, 8)]
    for pid in [*neighbours[:3], poison, *neighbours[3:]]:
        stream.enqueue(pid, "x.jpg")
    for _crash in range(3):
        src = ItemSource(stream, "spout-1", 30)  # the restarted spout
        src.recover_own_pending()
        in_flight = src.next_entries(32, 0)
        assert poison in [e.item_id for e in in_flight]
        stream.mark_working(poison, 60)  # the bolt marks it, decodes, and dies
    ItemSource(stream, "spout-1", 30).recover_own_pending()
    assert [(pid, attempts) for pid, _reason, attempts in stream.dead] == [(poison, 3)]
    assert "the worker tagging it died" in stream.dead[0][1]
    survivors = {e.item_id: e for e in stream.waiting}
    assert set(survivors) == set(neighbours)
    assert all(e.attempt == 0 and e.replays == 3 for e in survivors.values())


def test_uncharged_replays_are_capped() -> None:
    """Item 9: a tuple that keeps failing while not being tagged (a long DB outage) is replayed
    free only max_replays times, then charged, so nothing loops forever."""
    stream = FakeStream(max_attempts=3, max_replays=4)
    src = ItemSource(stream, "spout-1", 30)
    stream.enqueue("e" * 64, "e.jpg")
    outcomes = []
    while not stream.dead:
        (e,) = src.next_entries(8, 0)
        outcomes.append(src.fail(e.entry_id))
        assert len(outcomes) < 20, "replayed forever"
    assert outcomes == ["replayed"] * 4 + ["requeued", "requeued", "dead"]
    (dead,) = src.take_dead()
    assert dead.attempts == 3


def test_tag_step_marks_the_photo_only_while_tagging(tmp_path: Path) -> None:
    """Item 9: the mark is set before decoding and cleared after, whatever the outcome;
    release() (the bolt stopped from outside) clears it without tagging."""
    blobs = BlobStore(tmp_path)
    stream = FakeStream()
    pid, _ = blobs.put_bytes(b"image bytes")
    seen_marked: list[bool] = []

    class Watching(FakeTagger):
        def tag_bytes(self, data: bytes) -> TagResult:
            seen_marked.append(pid in stream.working)
            return super().tag_bytes(data)

    step = TagStep(FixedTagger(Watching()), blobs, stream)  # type: ignore[arg-type]
    assert step.run(pid).status == TAGGED
    assert seen_marked == [True] and stream.working == set() and step.current is None
    broken = TagStep(FixedTagger(FakeTagger(KeyError("x"))), blobs, stream)  # type: ignore[arg-type]
    assert broken.run(pid).status == FAILED and stream.working == set()

    def stopped_mid_photo(photo_id: str) -> None:
        assert stream.working == {photo_id}
        step.release()  # what the SIGTERM handler does
        assert stream.working == set()

    step.before_tagging = stopped_mid_photo
    step.run(pid)


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


class FixedTagger:
    """An ActiveTagger that always serves one tagger."""

    def __init__(self, tagger: FakeTagger) -> None:
        self.tagger = tagger

    def current(self) -> FakeTagger:
        return self.tagger


@pytest.mark.parametrize(
    "error, reason",
    [
        (ImageError("not an image: text"), "not an image"),
        (ValueError("odd"), "ValueError: odd"),
        # Item 9: exception types the old step's list did not catch crashed the bolt.
        (KeyError("frame"), "KeyError: 'frame'"),
        (RuntimeError("onnxruntime: bad input"), "RuntimeError: onnxruntime: bad input"),
        (MemoryError(), "not enough memory"),
    ],
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


# -- the model the bolts serve --------------------------------------------------------------------


def test_a_bad_bundle_leaves_the_previous_model_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 8: activating a corrupt bundle, or a folder whose manifest names another id,
    must not crash the bolt (a crash loop charges every photo in flight): the previous model
    keeps tagging and the failure is logged as an error; a good bundle is then picked up."""
    s = Settings(home=tmp_path, run_dir=tmp_path / "run", models_dir=tmp_path / "models")
    hog_bundle("good-1", "tone", 1).install(s.models_dir)
    set_active(s.models_dir, "good-1")
    active = ActiveTagger(s.tagging, s.limits, check_every_secs=0)
    assert active.current().model_version == "good-1"

    bad = hog_bundle("bad-2", "tone", 2).install(s.models_dir)
    set_active(s.models_dir, "bad-2")
    (bad / "weights.npz").write_bytes(b"not the weights the manifest lists")
    with caplog.at_level("ERROR"):
        assert active.current().model_version == "good-1"
    assert "MODEL NOT LOADED" in caplog.text and "bad-2" in caplog.text

    # A copy of good-1 under another name: its manifest does not name its folder.
    shutil.copytree(s.models_dir / "bundles" / "good-1", s.models_dir / "bundles" / "evil-3")
    with pytest.raises(ModelError, match="holds a manifest for 'good-1'"):
        set_active(s.models_dir, "evil-3")
    (s.models_dir / "ACTIVE").write_text("evil-3\n")  # planted by hand
    caplog.clear()
    with caplog.at_level("ERROR"):
        assert active.current().model_version == "good-1"
    assert "evil-3" in caplog.text and "holds a manifest for 'good-1'" in caplog.text

    hog_bundle("good-4", "tone", 4).install(s.models_dir)
    set_active(s.models_dir, "good-4")
    assert active.current().model_version == "good-4"


def test_only_connection_class_errors_are_transient() -> None:
    """Item 10: the DB writer retries a batch only for SQLSTATE classes 08, 57, 40 (or a
    connection that broke without one); everything else is isolated row by row."""
    from psycopg import errors

    assert is_transient(errors.ConnectionException())
    assert is_transient(errors.AdminShutdown())
    assert is_transient(errors.SerializationFailure())
    assert is_transient(errors.DeadlockDetected())
    assert is_transient(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert not is_transient(errors.ProgramLimitExceeded())  # the 3 KB tag name
    assert not is_transient(errors.UndefinedTable())
    assert not is_transient(errors.NumericValueOutOfRange())
    assert not is_transient(ValueError("a bug in a row"))


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
