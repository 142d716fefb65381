"""Content-addressed photo storage: a photo's id is the sha256 of its bytes.

Blobs live at ``<root>/<id[:2]>/<id>``, files 0600 in 0700 folders (photos are private).
Every write goes to a temp file (``<root>/.tmp/in-*``) in the same filesystem and is renamed
into place, so a reader (a bolt) never sees a half-written blob, and storing the same bytes
twice yields the same id (a stored copy that no longer matches them is replaced). Readers
find a blob from its id alone and check the bytes against the id, so a queue entry can never
point a worker at another file.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from autotag.checksums import CHUNK, bytes_sha256, file_sha256
from autotag.errors import AutotagError

_ID_RE = re.compile(r"[0-9a-f]{64}")
TMP_DIR = ".tmp"
TMP_PREFIX = "in-"


class BlobTooLarge(AutotagError):
    """The input is larger than the allowed size (limits.max_file_bytes)."""


class BlobError(AutotagError):
    """A stored blob is missing, not a regular file, or its bytes do not match its id."""


class BlobReader(Protocol):
    """What a bolt reads photos through: this host's ``BlobStore`` or an ``HttpBlobStore``."""

    def read(self, photo_id: str, max_bytes: int | None = None) -> bytes: ...


def is_photo_id(value: str) -> bool:
    """True for a lower-case 64-hex sha256 id."""
    return bool(_ID_RE.fullmatch(value))


def validate_id(photo_id: str) -> str:
    """The id normalised to lower case; ValueError unless it is 64 hex (so no path escapes)."""
    pid = photo_id.strip().lower() if isinstance(photo_id, str) else ""
    if not is_photo_id(pid):
        raise ValueError(f"not a photo id (64 hex characters): {photo_id!r}")
    return pid


def _intact(path: Path, photo_id: str, size: int) -> bool:
    """True if path is a regular file (not a link) of this size whose bytes hash to photo_id."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == size and file_sha256(path) == photo_id


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


class BlobStore:
    """The photo blobs under one root directory (``settings.blob_dir``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, photo_id: str) -> Path:
        """Where the blob for photo_id lives (it may not exist)."""
        pid = validate_id(photo_id)
        return self.root / pid[:2] / pid

    def exists(self, photo_id: str) -> bool:
        return self.path_for(photo_id).is_file()

    def open(self, photo_id: str, max_bytes: int | None = None) -> tuple[BinaryIO, int]:
        """A blob's open file and size, for a reader that streams it (the blob service).

        The path is derived from the id, opened without following a symlink and without
        blocking on a FIFO, and must be a regular file no larger than ``max_bytes``. The
        bytes are not checked against the id here: whoever consumes them does that.
        """
        path = self.path_for(photo_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BlobError(f"photo file is missing: {path}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise BlobError(f"photo file is a symbolic link: {path}") from None
            raise BlobError(f"cannot open photo file {path}: {exc.strerror}") from None
        fh = os.fdopen(fd, "rb")
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            fh.close()
            raise BlobError(f"photo file is not a regular file: {path}")
        if max_bytes is not None and st.st_size > max_bytes:
            fh.close()
            raise BlobError(f"photo file is larger than the {max_bytes}-byte limit: {path}")
        return fh, st.st_size

    def read(self, photo_id: str, max_bytes: int | None = None) -> bytes:
        """A blob's bytes, verified against its id; BlobError if missing, odd or altered."""
        fh, _size = self.open(photo_id, max_bytes)
        with fh:
            data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
        if bytes_sha256(data) != validate_id(photo_id):
            path = self.path_for(photo_id)
            raise BlobError(f"photo file does not match its id (altered or corrupt): {path}")
        return data

    def put_stream(
        self, fh: BinaryIO, *, length: int | None = None, max_bytes: int | None = None
    ) -> tuple[str, Path, int]:
        """Store a stream's bytes (at most ``length`` of them): returns (photo_id, path, nbytes).

        Hashes while copying (one pass), then renames into place. Raises BlobTooLarge as soon
        as more than ``max_bytes`` arrive, and EOFError if the stream ends before ``length``.
        """
        tmp_dir = self.root / TMP_DIR
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp_dir.mkdir(mode=0o700, exist_ok=True)
        h = hashlib.sha256()
        total = 0
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix=TMP_PREFIX)  # mode 0600
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
            photo_id = h.hexdigest()
            dest = self.path_for(photo_id)
            if _intact(dest, photo_id, total):
                tmp.unlink()
                os.utime(dest)  # just stored again: not garbage (see ``garbage``)
                return photo_id, dest, total
            dest.parent.mkdir(mode=0o700, exist_ok=True)
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
            return photo_id, dest, total
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def ids(self) -> Iterator[str]:
        """Every stored photo id (regular files named by their id, in their folder)."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if len(folder.name) != 2 or folder.is_symlink() or not folder.is_dir():
                continue
            for blob in sorted(folder.iterdir()):
                if (
                    is_photo_id(blob.name)
                    and blob.name[:2] == folder.name
                    and stat.S_ISREG(blob.lstat().st_mode)
                ):
                    yield blob.name

    def age_secs(self, photo_id: str) -> float:
        """Seconds since the blob was last stored."""
        return time.time() - self.path_for(photo_id).lstat().st_mtime

    def remove(self, photo_id: str) -> int:
        """Delete a blob; returns the bytes freed (0 if it was already gone)."""
        path = self.path_for(photo_id)
        try:
            size = path.lstat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def stale_temp_files(self, older_than_secs: float) -> list[Path]:
        """Temp files of uploads that died half-way (older than any upload still running)."""
        tmp_dir = self.root / TMP_DIR
        if not tmp_dir.is_dir():
            return []
        cutoff = time.time() - older_than_secs
        return [
            p
            for p in sorted(tmp_dir.glob(f"{TMP_PREFIX}*"))
            if stat.S_ISREG(p.lstat().st_mode) and p.lstat().st_mtime < cutoff
        ]

    def put_bytes(self, data: bytes) -> tuple[str, Path]:
        """Store bytes; returns (photo_id, path). Idempotent."""
        photo_id, path, _ = self.put_stream(io.BytesIO(data))
        return photo_id, path

    def put_file(
        self, path: str | os.PathLike[str], *, max_bytes: int | None = None
    ) -> tuple[str, Path]:
        """Store a file's bytes (streamed); returns (photo_id, blob path). Idempotent."""
        with open(path, "rb") as fh:
            photo_id, dest, _ = self.put_stream(fh, max_bytes=max_bytes)
        return photo_id, dest
