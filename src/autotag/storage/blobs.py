"""Content-addressed photo storage: a photo's id is the sha256 of its bytes.

Blobs live at ``<blob_dir>/<id[:2]>/<id>``. Every write goes to a temp file in the same
filesystem and is renamed into place, so a reader (a bolt) never sees a half-written blob,
and storing the same bytes twice is a no-op that yields the same id.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

from autotag.config import Settings
from autotag.errors import AutotagError

CHUNK = 1 << 20
_ID_RE = re.compile(r"[0-9a-f]{64}")


class BlobTooLarge(AutotagError):
    """The input is larger than the allowed size (settings.max_file_bytes)."""


def _settings(settings: Settings | None) -> Settings:
    if settings is not None:
        return settings
    from autotag.config import settings as current

    return current()


def is_photo_id(value: str) -> bool:
    """True for a lower-case 64-hex sha256 id."""
    return bool(_ID_RE.fullmatch(value))


def validate_id(photo_id: str) -> str:
    """The id normalised to lower case; ValueError unless it is 64 hex (so no path escapes)."""
    pid = photo_id.strip().lower() if isinstance(photo_id, str) else ""
    if not is_photo_id(pid):
        raise ValueError(f"not a photo id (64 hex characters): {photo_id!r}")
    return pid


def path_for(photo_id: str, settings: Settings | None = None) -> Path:
    """Where the blob for photo_id lives (it may not exist)."""
    pid = validate_id(photo_id)
    return _settings(settings).blob_dir / pid[:2] / pid


def exists(photo_id: str, settings: Settings | None = None) -> bool:
    return path_for(photo_id, settings).is_file()


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_file(path: str | os.PathLike[str]) -> str:
    """sha256 hex of a file, read in chunks so huge files do not fill memory."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def put_stream(
    fh: BinaryIO,
    *,
    length: int | None = None,
    max_bytes: int | None = None,
    settings: Settings | None = None,
) -> tuple[str, Path, int]:
    """Store a stream's bytes (at most ``length`` of them): returns (photo_id, path, nbytes).

    Hashes while copying (one pass), then renames into place. Raises BlobTooLarge as soon
    as more than ``max_bytes`` arrive, and EOFError if the stream ends before ``length``.
    """
    s = _settings(settings)
    tmp_dir = s.blob_dir / ".tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    total = 0
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="in-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                want = CHUNK if length is None else min(CHUNK, length - total)
                if want <= 0:
                    break
                chunk = fh.read(want)
                if not chunk:
                    if length is not None:
                        raise EOFError(f"stream ended after {total} of {length} bytes")
                    break
                total += len(chunk)
                if max_bytes is not None and total > max_bytes:
                    raise BlobTooLarge(f"larger than the {max_bytes}-byte limit")
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        photo_id = h.hexdigest()
        dest = path_for(photo_id, s)
        if dest.is_file() and dest.stat().st_size == total:
            tmp.unlink()
            return photo_id, dest, total
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
        return photo_id, dest, total
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def put_bytes(data: bytes, settings: Settings | None = None) -> tuple[str, Path]:
    """Store bytes; returns (photo_id, path). Idempotent."""
    import io

    photo_id, path, _ = put_stream(io.BytesIO(data), settings=settings)
    return photo_id, path


def put_file(
    path: str | os.PathLike[str],
    settings: Settings | None = None,
    *,
    max_bytes: int | None = None,
) -> tuple[str, Path]:
    """Store a file's bytes (streamed); returns (photo_id, blob path). Idempotent."""
    with open(path, "rb") as fh:
        photo_id, dest, _ = put_stream(fh, max_bytes=max_bytes, settings=settings)
    return photo_id, dest
