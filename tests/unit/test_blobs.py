"""Content-addressed blob store: ids, layout, atomic idempotent writes, path safety."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from autotag.config import Settings
from autotag.storage import blobs


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, run_dir=tmp_path / "run", models_dir=tmp_path / "models")


def test_put_bytes_layout_and_idempotence(settings: Settings) -> None:
    data = b"not really a jpeg"
    pid, path = blobs.put_bytes(data, settings)
    assert pid == hashlib.sha256(data).hexdigest()
    assert path == settings.blob_dir / pid[:2] / pid
    assert path.read_bytes() == data
    pid2, path2 = blobs.put_bytes(data, settings)
    assert (pid2, path2) == (pid, path)
    # No temp files left behind.
    assert list((settings.blob_dir / ".tmp").iterdir()) == []


def test_put_file_streams_large_file(settings: Settings, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    data = bytes(range(256)) * (3 * blobs.CHUNK // 256 + 7)
    src.write_bytes(data)
    pid, path = blobs.put_file(src, settings)
    assert pid == blobs.hash_file(src) == hashlib.sha256(data).hexdigest()
    assert path.read_bytes() == data
    assert blobs.exists(pid, settings)


def test_empty_file_is_a_blob(settings: Settings, tmp_path: Path) -> None:
    src = tmp_path / "empty"
    src.write_bytes(b"")
    pid, path = blobs.put_file(src, settings)
    assert pid == hashlib.sha256(b"").hexdigest()
    assert path.stat().st_size == 0


def test_size_limit_leaves_nothing(settings: Settings) -> None:
    with pytest.raises(blobs.BlobTooLarge):
        blobs.put_stream(io.BytesIO(b"x" * 100), max_bytes=99, settings=settings)
    assert list((settings.blob_dir / ".tmp").iterdir()) == []
    assert not any(p.is_file() for p in settings.blob_dir.rglob("*"))


def test_length_bounded_stream(settings: Settings) -> None:
    pid, path, n = blobs.put_stream(io.BytesIO(b"abcdef"), length=3, settings=settings)
    assert n == 3 and path.read_bytes() == b"abc"
    with pytest.raises(EOFError):
        blobs.put_stream(io.BytesIO(b"ab"), length=3, settings=settings)


@pytest.mark.parametrize(
    "bad",
    ["", "../" + "a" * 61, "a" * 63, "g" * 64, "a" * 65, "/etc/passwd", "a" * 32 + "/" + "a" * 31],
)
def test_path_for_rejects_non_ids(settings: Settings, bad: str) -> None:
    with pytest.raises(ValueError):
        blobs.path_for(bad, settings)


def test_path_for_normalises_case(settings: Settings) -> None:
    pid = "AB" * 32
    assert blobs.path_for(pid, settings).name == pid.lower()
