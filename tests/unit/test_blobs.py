"""Content-addressed blob store: ids, layout, atomic idempotent writes, path safety."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from autotag.checksums import CHUNK, file_sha256
from autotag.config import Settings
from autotag.storage import blobs
from autotag.storage.blobs import BlobStore


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, run_dir=tmp_path / "run", models_dir=tmp_path / "models")


@pytest.fixture
def store(settings: Settings) -> BlobStore:
    return BlobStore(settings.blob_dir)


def test_put_bytes_layout_and_idempotence(store: BlobStore, settings: Settings) -> None:
    data = b"not really a jpeg"
    pid, path = store.put_bytes(data)
    assert pid == hashlib.sha256(data).hexdigest()
    assert path == settings.blob_dir / pid[:2] / pid
    assert path.read_bytes() == data
    pid2, path2 = store.put_bytes(data)
    assert (pid2, path2) == (pid, path)
    # No temp files left behind.
    assert list((settings.blob_dir / ".tmp").iterdir()) == []


def test_put_file_streams_large_file(store: BlobStore, settings: Settings, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    data = bytes(range(256)) * (3 * CHUNK // 256 + 7)
    src.write_bytes(data)
    pid, path = store.put_file(src)
    assert pid == file_sha256(src) == hashlib.sha256(data).hexdigest()
    assert path.read_bytes() == data
    assert store.exists(pid)


def test_empty_file_is_a_blob(store: BlobStore, settings: Settings, tmp_path: Path) -> None:
    src = tmp_path / "empty"
    src.write_bytes(b"")
    pid, path = store.put_file(src)
    assert pid == hashlib.sha256(b"").hexdigest()
    assert path.stat().st_size == 0


def test_size_limit_leaves_nothing(store: BlobStore, settings: Settings) -> None:
    with pytest.raises(blobs.BlobTooLarge):
        store.put_stream(io.BytesIO(b"x" * 100), max_bytes=99)
    assert list((settings.blob_dir / ".tmp").iterdir()) == []
    assert not any(p.is_file() for p in settings.blob_dir.rglob("*"))


def test_length_bounded_stream(store: BlobStore, settings: Settings) -> None:
    pid, path, n = store.put_stream(io.BytesIO(b"abcdef"), length=3)
    assert n == 3 and path.read_bytes() == b"abc"
    with pytest.raises(EOFError):
        store.put_stream(io.BytesIO(b"ab"), length=3)


@pytest.mark.parametrize(
    "bad",
    ["", "../" + "a" * 61, "a" * 63, "g" * 64, "a" * 65, "/etc/passwd", "a" * 32 + "/" + "a" * 31],
)
def test_path_for_rejects_non_ids(store: BlobStore, settings: Settings, bad: str) -> None:
    with pytest.raises(ValueError):
        store.path_for(bad)


def test_path_for_normalises_case(store: BlobStore, settings: Settings) -> None:
    pid = "AB" * 32
    assert store.path_for(pid).name == pid.lower()


def test_read_verifies_bytes_against_id(store: BlobStore) -> None:
    pid, path = store.put_bytes(b"photo bytes")
    assert store.read(pid) == b"photo bytes"
    path.chmod(0o644)
    path.write_bytes(b"swapped bytes")
    with pytest.raises(blobs.BlobError, match="does not match its id"):
        store.read(pid)


def test_read_refuses_symlink_fifo_and_missing(store: BlobStore, tmp_path: Path) -> None:
    import os

    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    pid = hashlib.sha256(b"secret").hexdigest()
    link = store.path_for(pid)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(secret)
    with pytest.raises(blobs.BlobError, match="symbolic link"):
        store.read(pid)
    link.unlink()
    os.mkfifo(link)  # a FIFO must not block the reader
    with pytest.raises(blobs.BlobError, match="not a regular file"):
        store.read(pid)
    link.unlink()
    with pytest.raises(blobs.BlobError, match="missing"):
        store.read(pid)


def test_blobs_are_private(store: BlobStore, settings: Settings) -> None:
    """Item 3: photos are readable by their owner only (files 0600, folders 0700)."""
    import stat

    pid, path = store.put_bytes(b"a private photo")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in (path.parent, settings.blob_dir, settings.blob_dir / ".tmp"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_reupload_replaces_a_corrupt_blob_of_the_same_size(store: BlobStore) -> None:
    """Item 12: a stored copy whose size matches is still verified; a damaged one is replaced."""
    data = b"the original photo bytes"
    pid, path = store.put_bytes(data)
    path.write_bytes(b"X" * len(data))  # same size, other bytes
    assert store.put_bytes(data) == (pid, path)
    assert path.read_bytes() == data and store.read(pid) == data


def test_ids_and_stale_temp_files(store: BlobStore, settings: Settings) -> None:
    """Item 12 (autotag gc): what the store holds, and upload temp files left behind."""
    import os
    import time

    a, _ = store.put_bytes(b"a")
    b, _ = store.put_bytes(b"b")
    assert sorted(store.ids()) == sorted([a, b])
    tmp = settings.blob_dir / ".tmp"
    old, new = tmp / "in-old", tmp / "in-new"
    old.write_bytes(b"half an upload")
    new.write_bytes(b"an upload in progress")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert store.stale_temp_files(3600) == [old]
    assert store.remove(a) == 1 and store.remove(a) == 0
    assert list(store.ids()) == [b]
