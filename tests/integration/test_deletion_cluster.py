"""Deleting while the real cluster tags (issue 29): photos deleted while queued (topology
deactivated) and while in flight (read by the spout, not yet acked), a video deleted while its
segments are analysed, and deletes racing a retag. What a user checks: a deleted photo is not
resurrected by a late result, not retried, not dead-lettered; everything else is tagged; a
restored photo or video is finished by the topology.

Decision for a video trashed mid-analysis: results of its segments still in flight are
dropped (their rows are gone: the video writer finds no segment); the segment jobs taken off
the stream are kept with it in the trash, and restoring the video queues its unfinished
segments again, so a restored video ends 'done' like one never deleted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from autotag.config import Settings
from autotag.learning import samples
from autotag.ops.nimbus import NimbusClient
from autotag.pipeline import intake
from autotag.pipeline.requeue import requeue
from autotag.storage import database, deletion, item_stream, lookups
from autotag.storage.item_stream import ItemStream, segment_stream
from tests.cli import new_intake
from tests.hostile_video import write_clip

pytestmark = pytest.mark.cluster

SETTLE_SECS = 600


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Distinct real photos (scikit-image, scikit-learn, Tux Paint)."""
    paths = samples.package_photos() + samples.tuxpaint_photos()
    out = samples.export(tmp_path_factory.mktemp("photos"), paths)
    unique: dict[bytes, Path] = {}
    for p in out:
        unique.setdefault(p.read_bytes(), p)
    chosen = list(unique.values())
    assert len(chosen) >= 80
    return chosen


@pytest.fixture
def conn(autotagger: Settings) -> Iterator[psycopg.Connection[Any]]:
    with database.connect(autotagger.services) as c:
        yield c


def _upload(s: Settings, paths: list[Path]) -> list[str]:
    records = intake.upload([str(p) for p in paths], new_intake(s), force=True)
    ids = [r.photo_id for r in records if r.photo_id and r.status == "queued"]
    assert len(ids) == len(paths), records
    return ids


def _status(conn: psycopg.Connection[Any], ids: list[str]) -> dict[str, str]:
    rows = conn.execute(
        "SELECT photo_id, status FROM photos WHERE photo_id = ANY(%s)", (ids,)
    ).fetchall()
    return dict(rows)


def _wait_settled(conn: psycopg.Connection[Any], ids: list[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = _status(conn, ids)
        if len(status) == len(ids) and "queued" not in status.values():
            return status
        if time.monotonic() > deadline:
            left = [i for i in ids if status.get(i, "queued") == "queued"]
            pytest.fail(f"{len(left)} of {len(ids)} still queued (or missing) after {timeout}s")
        time.sleep(1)


def _in_flight(stream: ItemStream, among: set[str], want: int, timeout: float) -> list[str]:
    """Photos among these the spout has read and not yet acked (being tagged now)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = {p.entry_id for p in stream.pending(1000)}
        if pending:
            ids = [
                str(f.get("photo_id"))
                for eid, f in stream.redis.xrange(stream.name)
                if eid in pending and str(f.get("photo_id")) in among
            ]
            if len(ids) >= want:
                return ids[:want]
        time.sleep(0.05)
    pytest.fail(f"never saw {want} of these photos in flight")


def _in_redis(s: Settings, ids: set[str]) -> list[str]:
    """Entries of these ids on the photo stream or its dead letters, and in-progress marks."""
    r = item_stream.client(s.services)
    out = []
    for name in (s.queue.stream, s.queue.dead_letter_stream):
        for _eid, f in r.xrange(name):
            if f.get("photo_id") in ids:
                out.append(name)
    out += [k for i in ids for k in r.keys(f"{s.queue.stream}:working:{i}")]
    r.close()
    return out


def _deleted_state(conn: psycopg.Connection[Any], ids: list[str]) -> dict[str, str]:
    """id -> 'live' / 'trash' / 'purged' / 'unknown'."""
    live = _status(conn, ids)
    rows = dict(
        conn.execute(
            "SELECT item_id, CASE WHEN purged THEN 'purged' ELSE 'trash' END FROM trash "
            "WHERE item_id = ANY(%s)",
            (ids,),
        ).fetchall()
    )
    return {i: "live" if i in live else rows.get(i, "unknown") for i in ids}


def test_delete_while_queued_and_in_flight(
    autotagger: Settings, photos: list[Path], conn: psycopg.Connection[Any]
) -> None:
    s = autotagger
    nimbus = NimbusClient(s)
    stream = ItemStream(s.services, s.queue)
    d = deletion.for_settings(s, conn)

    # Queued: the topology deactivated, so nothing is read.
    nimbus.deactivate("autotagger")
    time.sleep(3)  # the spout stops reading (deactivate reaches it asynchronously)
    queued = _upload(s, photos[:16])
    assert set(_status(conn, queued).values()) == {"queued"}
    trashed_q, purged_q, kept_q = queued[:4], queued[4:8], queued[8:]
    assert {o.outcome for o in d.trash(trashed_q)} == {"trashed"}
    assert {o.outcome for o in d.purge(purged_q)} == {"purged"}
    assert _in_redis(s, set(trashed_q + purged_q)) == []  # off the queue at once
    nimbus.activate("autotagger")

    # In flight: read by the spout and being tagged when deleted.
    more = _upload(s, photos[16:60])
    flying = _in_flight(stream, set(more), 4, 120)
    assert {o.outcome for o in d.trash(flying[:2])} == {"trashed"}
    assert {o.outcome for o in d.purge(flying[2:])} == {"purged"}
    deleted = trashed_q + purged_q + flying
    kept = kept_q + [i for i in more if i not in flying]

    status = _wait_settled(conn, kept, SETTLE_SECS)
    assert set(status.values()) == {"tagged"}, status  # the others: nothing lost
    time.sleep(10)  # late results of the deleted ones reach the DB writer and are dropped

    state = _deleted_state(conn, deleted)
    assert [i for i in deleted if state[i] == "live"] == []  # none resurrected
    assert {state[i] for i in trashed_q + flying[:2]} == {"trash"}
    assert {state[i] for i in purged_q + flying[2:]} == {"purged"}
    assert conn.execute(
        "SELECT count(*) FROM tags WHERE photo_id = ANY(%s)", (deleted,)
    ).fetchone() == (0,)
    assert _in_redis(s, set(deleted)) == []  # not retried, not dead-lettered
    assert stream.pending_count() == 0 and stream.backlog_len() == 0

    # A photo trashed while queued comes back queued and the topology tags it.
    assert d.restore(trashed_q[0]).outcome == "restored"
    assert _wait_settled(conn, [trashed_q[0]], SETTLE_SECS) == {trashed_q[0]: "tagged"}
    info = lookups.show(conn, trashed_q[0])
    assert info is not None and info.tags


def _same_tags(a: Any, b: Any) -> bool:
    ta, tb = dict(a.tags), dict(b.tags)
    return ta.keys() == tb.keys() and all(abs(ta[t] - tb[t]) < 1e-4 for t in ta)


def test_delete_racing_a_retag(
    autotagger: Settings, photos: list[Path], conn: psycopg.Connection[Any]
) -> None:
    s = autotagger
    ids = _upload(s, photos[60:80])
    _wait_settled(conn, ids, SETTLE_SECS)
    before = {i: lookups.show(conn, i) for i in ids}
    # What `autotag retag` does: the tagged photos back on the queue; deletes meanwhile.
    d = deletion.for_settings(s, conn)
    assert (
        requeue(s.services, s.queue, s.blob_dir, ids, statuses=("tagged",), include_tagged=True)
        == 20
    )
    gone = ids[::4]  # 5 of them, some queued, some probably in flight by now
    assert {o.outcome for o in d.trash(gone[:3])} == {"trashed"}
    assert {o.outcome for o in d.purge(gone[3:])} == {"purged"}
    left = [i for i in ids if i not in gone]
    status = _wait_settled(conn, left, SETTLE_SECS)
    assert set(status.values()) == {"tagged"}
    for i in left:
        info = lookups.show(conn, i)
        assert info is not None and _same_tags(info, before[i])  # re-tagged alike
    time.sleep(10)
    state = _deleted_state(conn, gone)
    assert [state[i] for i in gone] == ["trash"] * 3 + ["purged"] * 2
    assert _in_redis(s, set(gone)) == []
    # Restored after the race: with its tags, as before the delete.
    assert d.restore(gone[0]).outcome == "restored"  # queued again if it was re-queued
    assert _wait_settled(conn, [gone[0]], SETTLE_SECS) == {gone[0]: "tagged"}
    info = lookups.show(conn, gone[0])
    assert info is not None and _same_tags(info, before[gone[0]])


def _video_rows(conn: psycopg.Connection[Any], video_id: str) -> dict[str, int]:
    out = {}
    for table in ("videos", "video_segments", "video_detections", "video_segment_tags"):
        q = psycopg.sql.SQL("SELECT count(*) FROM {t} WHERE video_id = %s").format(
            t=psycopg.sql.Identifier(table)
        )
        row = conn.execute(q, (video_id,)).fetchone()
        out[table] = int(row[0]) if row else 0
    return out


def test_delete_a_video_mid_analysis_then_restore(
    autotagger: Settings,
    photos: list[Path],
    conn: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    s = autotagger
    clip = write_clip(tmp_path / "walk.avi", 60.0, fps=10.0, size=(640, 480), seed=29)
    rec = new_intake(s)
    (record,) = intake.upload([str(clip)], rec, force=True)
    video_id = record.photo_id
    assert video_id and record.status == "queued"
    segs = segment_stream(s.services, s.queue)
    n_segments = _video_rows(conn, video_id)["video_segments"]
    assert n_segments >= 5

    # Wait until a segment of it is being analysed (read, not acked), then trash the video.
    deadline = time.monotonic() + 300
    while True:
        pending = {p.entry_id for p in segs.pending(1000)}
        if any(
            eid in pending and str(f.get("photo_id", "")).startswith(video_id)
            for eid, f in segs.redis.xrange(segs.name)
        ):
            break
        assert time.monotonic() < deadline, "no segment of the video was ever in flight"
        time.sleep(0.05)
    d = deletion.for_settings(s, conn)
    assert [o.outcome for o in d.trash([video_id])] == ["trashed"]
    assert sum(_video_rows(conn, video_id).values()) == 0

    # Segments analysed meanwhile come back to a video that is not there: dropped.
    marks = f"{segs.name}:working:{video_id}:*"
    deadline = time.monotonic() + 300
    while list(segs.redis.scan_iter(match=marks)):
        assert time.monotonic() < deadline, "a segment of the trashed video is still analysed"
        time.sleep(0.5)
    time.sleep(10)  # the video writer's batch
    assert sum(_video_rows(conn, video_id).values()) == 0  # not resurrected
    assert not [
        f
        for _e, f in segs.redis.xrange(segs.name)
        if str(f.get("photo_id", "")).startswith(video_id)
    ]
    # The topology goes on: a photo uploaded now is tagged.
    (after,) = _upload(s, photos[80:81])
    assert _wait_settled(conn, [after], SETTLE_SECS) == {after: "tagged"}

    # Restored: its unfinished segments are queued again and the video is finished.
    assert d.restore(video_id).outcome == "restored"
    assert _video_rows(conn, video_id)["video_segments"] == n_segments
    deadline = time.monotonic() + SETTLE_SECS
    while True:
        row = conn.execute("SELECT status FROM videos WHERE video_id = %s", (video_id,)).fetchone()
        if row and row[0] not in ("queued", "recording"):
            break
        assert time.monotonic() < deadline, f"restored video still {row}"
        time.sleep(2)
    assert row[0] == "done"
    statuses = conn.execute(
        "SELECT status, count(*) FROM video_segments WHERE video_id = %s GROUP BY status",
        (video_id,),
    ).fetchall()
    assert dict(statuses) == {"done": n_segments}

    # Purged for good: nothing of it left, even with segments analysed.
    assert [o.outcome for o in d.purge([video_id])] == ["purged"]
    assert sum(_video_rows(conn, video_id).values()) == 0
