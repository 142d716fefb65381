"""Uploads and the inbox against real Redis and Postgres."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from autotag.config import Settings
from autotag.contract import PhotoResult
from autotag.pipeline import intake
from autotag.storage import database, item_stream, lookups, writer
from autotag.storage.item_stream import ItemStream
from tests.cli import new_intake

pytestmark = pytest.mark.services


@pytest.fixture
def s(services: Settings) -> Iterator[Settings]:
    """Own stream names and a small size limit, so a 'big' file is cheap to make."""
    tag = uuid.uuid4().hex[:8]
    st = services.override(
        stream=f"test:{tag}:photos",
        dead_letter_stream=f"test:{tag}:dead",
        consumer_group=f"g{tag}",
        max_file_bytes=1000,
    )
    yield st
    r = item_stream.client(st.services)
    r.delete(st.queue.stream, st.queue.dead_letter_stream)
    r.close()


def stream_ids(st: Settings) -> list[str]:
    stream = ItemStream(st.services, st.queue)
    try:
        return [e.item_id for e in stream.read("t", count=1000, block_ms=50)]
    finally:
        stream.redis.close()


def unique_bytes(n: int = 100) -> bytes:
    return (uuid.uuid4().bytes * (n // 16 + 1))[:n]


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_upload_folder(s: Settings, tmp_path: Path) -> None:
    x, y, empty = unique_bytes(), unique_bytes(), b""
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    (d / "a.jpg").write_bytes(x)
    (d / "sub" / "b.jpg").write_bytes(y)
    (d / "sub" / "copy-of-a.jpg").write_bytes(x)
    (d / "big.bin").write_bytes(unique_bytes(1001))
    (d / "empty.jpg").write_bytes(empty)
    (d / ".DS_Store").write_bytes(b"junk")
    (d / "link.jpg").symlink_to(d / "sub" / "b.jpg")
    os.mkfifo(d / "fifo")
    (d / "loop").symlink_to(d)  # a symlinked folder is not followed

    records = intake.upload([d], new_intake(s))
    by_name = {Path(r.path).name: r for r in records}
    # The symlink is resolved to its target, so b.jpg appears twice.
    assert sorted(Path(r.path).name for r in records) == sorted(
        ["a.jpg", "big.bin", "empty.jpg", "fifo", "b.jpg", "b.jpg", "copy-of-a.jpg"]
    )
    assert by_name["a.jpg"].status == "queued" and by_name["a.jpg"].photo_id == sha(x)
    assert by_name["copy-of-a.jpg"].status == "duplicate"
    assert by_name["copy-of-a.jpg"].photo_id == sha(x)
    assert by_name["big.bin"].status == "rejected" and "limit" in (by_name["big.bin"].reason or "")
    assert by_name["big.bin"].photo_id is None
    assert by_name["empty.jpg"].status == "queued"  # the bolts decide it is not a photo
    assert by_name["fifo"].status == "error" and by_name["fifo"].reason == "not a regular file"
    assert sorted(r.status for r in records if Path(r.path).name == "b.jpg") == [
        "duplicate",
        "queued",
    ]
    assert sorted(stream_ids(s)) == sorted([sha(x), sha(y), sha(empty)])
    with database.connect(s.services) as conn:
        info = lookups.show(conn, sha(x))
        assert info is not None and info.status == "queued" and info.source == "a.jpg"
        assert info.bytes == len(x)


def test_reupload_queued_tagged_and_force(s: Settings, tmp_path: Path) -> None:
    data = unique_bytes()
    f = tmp_path / "p.jpg"
    f.write_bytes(data)
    (rec,) = intake.upload([f], new_intake(s))
    assert rec.status == "queued"
    (rec,) = intake.upload([f], new_intake(s))
    assert rec.status == "duplicate" and rec.reason == "already queued"
    with database.connect(s.services) as conn:
        writer.write_results(conn, [PhotoResult(sha(data), "tagged", "v1", "cnn", [("x", 0.5)])])
    (rec,) = intake.upload([f], new_intake(s))
    assert rec.status == "already-tagged"
    (rec,) = intake.upload([f], new_intake(s), force=True)
    assert rec.status == "queued"
    assert stream_ids(s) == [sha(data), sha(data)]  # first upload and the forced one


def test_explicit_missing_and_symlink(s: Settings, tmp_path: Path) -> None:
    data = unique_bytes()
    target = tmp_path / "t.jpg"
    target.write_bytes(data)
    link = tmp_path / "l.jpg"
    link.symlink_to(target)
    broken = tmp_path / "broken.jpg"
    broken.symlink_to(tmp_path / "nowhere")
    records = intake.upload([link, tmp_path / "missing.jpg", broken, "/dev/null"], new_intake(s))
    assert [(r.status, r.reason) for r in records] == [
        ("queued", None),
        ("error", "no such file"),
        ("error", "broken symlink"),
        ("error", "not a regular file"),
    ]
    assert records[0].path == str(target)


def test_inbox_moves_files(s: Settings, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "trip").mkdir(parents=True)
    ok, nested = unique_bytes(), unique_bytes()
    (inbox / "ok.jpg").write_bytes(ok)
    (inbox / "trip" / "n.jpg").write_bytes(nested)
    (inbox / "huge.jpg").write_bytes(unique_bytes(5000))
    (inbox / ".partial.jpg").write_bytes(b"being copied")
    records = intake.watch_inbox(inbox, new_intake(s), poll_secs=0.05, once=True)
    assert sorted((Path(r.path).relative_to(inbox).as_posix(), r.status) for r in records) == [
        ("done/ok.jpg", "queued"),
        ("done/trip/n.jpg", "queued"),
        ("rejected/huge.jpg", "rejected"),
    ]
    assert (inbox / "done" / "ok.jpg").read_bytes() == ok
    reason = (inbox / "rejected" / "huge.jpg.reason.txt").read_text()
    assert "5000 bytes is over the 1000-byte limit" in reason
    assert (inbox / ".partial.jpg").exists() and not (inbox / "ok.jpg").exists()
    assert sorted(stream_ids(s)) == sorted([sha(ok), sha(nested)])


def test_inbox_waits_for_stable_size(s: Settings, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    f = inbox / "growing.jpg"
    f.write_bytes(b"a" * 10)
    w = intake.InboxWatcher(inbox)
    with new_intake(s) as up:
        assert w.poll(up) == []  # first sight
        with open(f, "ab") as fh:
            fh.write(b"b" * 10)
        assert w.poll(up) == []  # changed since
        (rec,) = w.poll(up)  # unchanged: taken
        assert rec.status == "queued" and rec.photo_id == sha(b"a" * 10 + b"b" * 10)
        assert w.poll(up) == []


def test_inbox_after_crash_does_not_queue_twice(s: Settings, tmp_path: Path) -> None:
    """Queued but not yet moved when the watcher died: next run only moves it."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    data = unique_bytes()
    (inbox / "p.jpg").write_bytes(data)
    (inbox / "done").mkdir()
    (inbox / "done" / "p.jpg").write_bytes(b"an older file with the same name")
    intake.upload([inbox / "p.jpg"], new_intake(s))  # the crashed run got this far
    (rec,) = intake.watch_inbox(inbox, new_intake(s), poll_secs=0.05, once=True)
    assert rec.status == "duplicate"
    assert Path(rec.path).name == f"p-{sha(data)[:12]}.jpg"  # no overwrite in done/
    assert stream_ids(s) == [sha(data)]


def test_inbox_refuses_a_symlink_to_a_private_file(s: Settings, tmp_path: Path) -> None:
    """`autotag inbox --once --json` moves a link (never its target) to rejected/, stores
    nothing of the private file it points to, and reports it rejected."""
    import json

    from click.testing import CliRunner

    from autotag.cli import cli
    from autotag.storage.blobs import BlobStore

    private = tmp_path / "private"
    private.mkdir()
    secret_bytes = unique_bytes()
    secret = private / "secret.jpg"
    secret.write_bytes(secret_bytes)
    secret.chmod(0o600)
    album_bytes = unique_bytes()
    (private / "album").mkdir()
    (private / "album" / "a.jpg").write_bytes(album_bytes)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "link.jpg").symlink_to(secret)
    (inbox / "album").symlink_to(private / "album")  # a linked folder is not walked either

    result = CliRunner().invoke(cli, ["inbox", str(inbox), "--once", "--json", "--poll", "0.05"])
    assert result.exit_code == 0, result.output
    reported = sorted(
        (Path(r["path"]).relative_to(inbox).as_posix(), r["status"], r["reason"], r["photo_id"])
        for r in map(json.loads, result.stdout.splitlines())
    )
    assert reported == [
        ("rejected/album", "rejected", "symbolic link: not followed", None),
        ("rejected/link.jpg", "rejected", "symbolic link: not followed", None),
    ]
    moved = inbox / "rejected" / "link.jpg"
    assert moved.is_symlink() and moved.readlink() == secret  # the link itself, not a copy
    assert (inbox / "rejected" / "album").is_symlink()
    reason = (inbox / "rejected" / "link.jpg.reason.txt").read_text()
    assert reason == "symbolic link: not followed\n"
    assert secret.read_bytes() == secret_bytes and (private / "album" / "a.jpg").exists()
    assert sorted(p.name for p in inbox.iterdir()) == ["rejected"]
    blobs = BlobStore(s.blob_dir)
    with database.connect(s.services) as conn:
        for data in (secret_bytes, album_bytes):
            assert lookups.show(conn, sha(data)) is None
            assert not blobs.exists(sha(data))


def test_inbox_does_not_write_through_planted_links(
    s: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """done/ or rejected/ planted as links elsewhere are not used (files stay put, the
    targets stay empty); a planted <name>.reason.txt link is not written through."""
    elsewhere_done, elsewhere_rejected = tmp_path / "elsewhere-done", tmp_path / "elsewhere-rej"
    elsewhere_done.mkdir()
    elsewhere_rejected.mkdir()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    ok, huge = unique_bytes(), unique_bytes(5000)
    (inbox / "ok.jpg").write_bytes(ok)
    (inbox / "huge.jpg").write_bytes(huge)
    (inbox / "done").symlink_to(elsewhere_done)
    (inbox / "rejected").symlink_to(elsewhere_rejected)

    assert intake.watch_inbox(inbox, new_intake(s), poll_secs=0.05, once=True) == []
    assert (inbox / "ok.jpg").read_bytes() == ok and (inbox / "huge.jpg").read_bytes() == huge
    assert list(elsewhere_done.iterdir()) == [] and list(elsewhere_rejected.iterdir()) == []
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any(f"{inbox / 'done'} is a symbolic link" in m for m in errors), errors

    (inbox / "done").unlink()  # only rejected/ is a link now: still nothing moves
    assert intake.watch_inbox(inbox, new_intake(s), poll_secs=0.05, once=True) == []
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any(f"{inbox / 'rejected'} is a symbolic link" in m for m in errors), errors
    assert (inbox / "ok.jpg").exists() and (inbox / "huge.jpg").exists()
    assert list(elsewhere_rejected.iterdir()) == []

    # A real rejected/ with a planted reason-file link: the link's target is not written.
    (inbox / "rejected").unlink()
    (inbox / "rejected").mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (inbox / "rejected" / "huge.jpg.reason.txt").symlink_to(victim)
    records = intake.watch_inbox(inbox, new_intake(s), poll_secs=0.05, once=True)
    assert sorted((Path(r.path).parent.name, r.status) for r in records) == [
        ("done", "queued"),
        ("rejected", "rejected"),
    ]
    assert victim.read_text() == "keep me\n"
    (rejected,) = [Path(r.path) for r in records if r.status == "rejected"]
    assert rejected.name != "huge.jpg" and rejected.read_bytes() == huge
    reason = rejected.with_name(rejected.name + ".reason.txt").read_text()
    assert "5000 bytes is over the 1000-byte limit" in reason
    assert (inbox / "done" / "ok.jpg").read_bytes() == ok
    assert list(elsewhere_done.iterdir()) == [] and list(elsewhere_rejected.iterdir()) == []
    assert stream_ids(s) == [sha(ok)]
