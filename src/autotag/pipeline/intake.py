"""Getting photos in: files and folders, a watched inbox folder, and the HTTP upload.

Order for each photo: blob first, then the Postgres row ('queued'), then the stream
entry. A crash between the last two leaves a 'queued' row with no entry, which
``autotag retry --stuck`` re-enqueues; nothing is ever queued without its blob.

Only the size limit is enforced here (status ``rejected``); anything else, even an empty
file or one that is not an image, is queued and the bolts record why it failed. A video
(by its bytes or its name) goes to ``video_intake`` instead, which probes and splits it.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import psycopg

from autotag.config import LimitsSettings, QueueSettings, ServiceSettings, VideoSettings
from autotag.pipeline.video_intake import VideoUploadRecord, upload_video
from autotag.storage import database, registry
from autotag.storage.blobs import TMP_DIR, TMP_PREFIX, BlobStore, BlobTooLarge
from autotag.storage.item_stream import ItemStream, segment_stream
from autotag.vision.video_frames import looks_like_video

log = logging.getLogger(__name__)

# Upload outcomes.
QUEUED = "queued"  # stored and put on the stream
DUPLICATE = "duplicate"  # same bytes as a photo already queued (or earlier in this upload)
ALREADY_TAGGED = "already-tagged"  # tagged before; not re-queued without force
REJECTED = "rejected"  # over limits.max_file_bytes; nothing stored or queued
ERROR = "error"  # could not be read (missing, not a regular file, permission)


@dataclass
class UploadRecord:
    """What happened to one input file."""

    path: str
    photo_id: str | None
    status: str
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict())


def _regular_file(path: Path) -> tuple[Path | None, str | None]:
    """(resolved path, None) for a regular file (symlinks followed), else (None, reason)."""
    try:
        st = path.stat()  # follows symlinks
    except FileNotFoundError:
        return None, "no such file" if not path.is_symlink() else "broken symlink"
    except OSError as exc:
        return None, f"cannot stat: {exc.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return None, "not a regular file"
    return path.resolve(), None


def iter_inputs(
    paths: Iterable[str | os.PathLike[str]], *, recursive: bool = True
) -> Iterator[tuple[Path, str | None]]:
    """(path, problem) for each file named or found under a named folder, in sorted order.

    Folders are walked (recursively unless told not to) without following symlinked
    folders, and skip hidden entries (``.DS_Store``, editors' and copiers' temp files); a
    file named explicitly is always taken.
    """
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            yield from _walk(p, recursive)
            continue
        resolved, problem = _regular_file(p)
        yield (resolved or p.absolute()), problem


def _walk(root: Path, recursive: bool) -> Iterator[tuple[Path, str | None]]:
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        yield root.absolute(), f"cannot list folder: {exc.strerror}"
        return
    for e in entries:
        if e.name.startswith("."):
            continue
        p = Path(e.path)
        try:
            if e.is_dir(follow_symlinks=False):
                if recursive:
                    yield from _walk(p, recursive)
                continue
            if e.is_dir():  # a symlink to a folder: not followed (loops)
                continue
        except OSError:
            pass
        resolved, problem = _regular_file(p)
        yield (resolved or p.absolute()), problem


class Intake:
    """Open connections for a run of uploads (one Postgres connection, one Redis client)."""

    def __init__(
        self,
        services: ServiceSettings,
        queue: QueueSettings,
        limits: LimitsSettings,
        video: VideoSettings,
        blob_dir: Path,
    ) -> None:
        """Blobs go into ``blob_dir``; a photo over ``limits.max_file_bytes`` is refused, a
        video is checked against ``video``'s limits and split into its segments."""
        self.services = services
        self.queue = queue
        self.limits = limits
        self.video = video
        self.blobs = BlobStore(blob_dir)
        self.conn: psycopg.Connection[Any] | None = None
        self.stream: ItemStream | None = None

    def __enter__(self) -> Intake:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Connect (or reconnect) to Postgres and Redis; ServiceError if either is down."""
        if self.conn is None or self.conn.closed:
            self.conn = database.connect(self.services)
        if self.stream is None:
            self.stream = ItemStream(self.services, self.queue, check=True)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.stream is not None:
            self.stream.redis.close()
            self.stream = None

    def register_and_enqueue(
        self, photo_id: str, source: str, nbytes: int, *, force: bool = False
    ) -> tuple[str, str | None]:
        """Register a stored blob and queue it if needed: (status, reason)."""
        assert self.conn is not None and self.stream is not None
        with database.pg_errors(self.services), self.stream.errors():
            reg = registry.register(self.conn, photo_id, source, nbytes, force=force)
            if reg.status == "tagged":
                return ALREADY_TAGGED, None
            if reg.previous_status == "queued" and not force:
                return DUPLICATE, "already queued"
            try:
                self.stream.enqueue(photo_id, source)
            except Exception:
                # Not on the stream after all: undo the 'queued' row so a retried upload
                # queues it again instead of calling it a duplicate (nothing stuck, nothing lost).
                self._undo_register(photo_id, reg)
                raise
        return QUEUED, None

    def _undo_register(self, photo_id: str, reg: registry.Registration) -> None:
        assert self.conn is not None
        try:
            registry.undo_register(self.conn, photo_id, reg)
        except Exception:  # noqa: BLE001 - `autotag retry --stuck` recovers the row later
            pass

    def upload_video(
        self, path: Path, *, force: bool = False, source: str | None = None
    ) -> VideoUploadRecord:
        """A video file: stored, probed, and queued as segments on the segment stream."""
        assert self.conn is not None and self.stream is not None
        segments = segment_stream(self.services, self.queue, self.stream.redis)
        return upload_video(
            self.services,
            self.video,
            self.conn,
            segments,
            self.blobs,
            path,
            force=force,
            source=source,
        )

    def upload_file(
        self, path: Path, *, force: bool = False, seen: set[str] | None = None
    ) -> UploadRecord | VideoUploadRecord:
        """Store, register and queue one regular file (size limit enforced).

        The path is opened as given: a symbolic link the user named is followed (the
        inbox never comes here; it opens its files itself, see ``InboxWatcher``).
        ``seen`` holds ids already handled in this run: the same bytes again are reported
        ``duplicate`` without touching Postgres or Redis.
        """
        try:
            fh = open(path, "rb")
        except OSError as exc:
            return UploadRecord(str(path), None, ERROR, f"cannot read: {exc.strerror or exc}")
        with fh:
            return self.upload_open_file(fh, path, force=force, seen=seen)

    def upload_open_file(
        self, fh: BinaryIO, path: Path, *, force: bool = False, seen: set[str] | None = None
    ) -> UploadRecord | VideoUploadRecord:
        """Store, register and queue the bytes of an open regular file (read from its
        start); ``path`` is only what the record shows (its name is the photo's source)."""
        limit = self.limits.max_file_bytes
        fh.seek(0)
        if looks_like_video(fh.read(512), path.name):
            with _reopenable(fh, self.blobs) as same_file:
                rec = self.upload_video(same_file, force=force, source=path.name)
            rec.path = str(path)
            return rec
        fh.seek(0)
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            return UploadRecord(
                str(path), None, REJECTED, f"{size} bytes is over the {limit}-byte limit"
            )
        try:
            photo_id, _blob, nbytes = self.blobs.put_stream(fh, max_bytes=limit)
        except BlobTooLarge:
            return UploadRecord(str(path), None, REJECTED, f"grew over the {limit}-byte limit")
        if seen is not None:
            if photo_id in seen:
                return UploadRecord(str(path), photo_id, DUPLICATE, "same bytes as an earlier file")
            seen.add(photo_id)
        status, reason = self.register_and_enqueue(photo_id, path.name, nbytes, force=force)
        return UploadRecord(str(path), photo_id, status, reason)


@contextlib.contextmanager
def _reopenable(fh: BinaryIO, blobs: BlobStore) -> Iterator[Path]:
    """A path that opens the very file ``fh`` has open (not whatever its name now points
    to), for code that takes a path (video probing): /proc/self/fd/N, or else a private
    temp copy in the blob store's temp folder (``autotag gc`` removes a stale one)."""
    proc = Path(f"/proc/self/fd/{fh.fileno()}")
    if proc.exists():
        yield proc
        return
    tmp_dir = blobs.root / TMP_DIR
    tmp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=TMP_PREFIX)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            fh.seek(0)
            shutil.copyfileobj(fh, out)
        yield Path(name)
    finally:
        os.unlink(name)


def upload(
    paths: Sequence[str | os.PathLike[str]],
    intake: Intake,
    *,
    recursive: bool = True,
    force: bool = False,
    progress: Callable[[UploadRecord | VideoUploadRecord], None] | None = None,
    inputs: Sequence[tuple[Path, str | None]] | None = None,
) -> list[UploadRecord | VideoUploadRecord]:
    """Upload files and folders through ``intake`` (opened here, closed after); one record
    per input file, in walk order.

    The same bytes twice in one call are one photo: the second is ``duplicate``. A photo
    tagged before is ``already-tagged`` and not re-queued unless ``force``. Raises
    ServiceError if Redis or Postgres is down (already-stored blobs are harmless).
    """
    items = list(inputs) if inputs is not None else list(iter_inputs(paths, recursive=recursive))
    records: list[UploadRecord | VideoUploadRecord] = []
    seen: set[str] = set()
    with intake:
        for path, problem in items:
            rec: UploadRecord | VideoUploadRecord
            if problem is not None:
                rec = UploadRecord(str(path), None, ERROR, problem)
            else:
                rec = intake.upload_file(path, force=force, seen=seen)
            records.append(rec)
            if progress is not None:
                progress(rec)
    return records


# -- the inbox -----------------------------------------------------------------------------

DONE = "done"
REJECTED_DIR = "rejected"
REASON_SUFFIX = ".reason.txt"
SYMLINK_REASON = "symbolic link: not followed"

# Nothing in the inbox is reached through a symbolic link: every folder on the way to a
# file (and to done/ and rejected/) is opened relative to its parent's descriptor without
# following a link, and a file is opened the same way, without blocking on a FIFO.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_REASON_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

Signature = tuple[int, int, int, int, int]


def _signature(st: os.stat_result) -> Signature:
    """What must hold still between two polls: type, size, mtime and identity."""
    return (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)


class _UnsafeFolder(OSError):
    """A folder on the way is a symbolic link or not a folder: it is not used."""


def _open_folder(dir_fd: int, name: str, shown: Path, *, create: bool) -> int | None:
    """Open the folder ``name`` in dir_fd without following a link (None if it is absent
    and not to be created); _UnsafeFolder if it is a link or something else."""
    for _attempt in range(2):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            if not create:
                return None
            try:
                os.mkdir(name, dir_fd=dir_fd)
            except FileExistsError:
                pass  # made meanwhile: open whatever it is (a link is refused below)
        except OSError as exc:
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                raise exc from None
            if stat.S_ISLNK(st.st_mode):
                raise _UnsafeFolder(f"{shown} is a symbolic link") from None
            if not stat.S_ISDIR(st.st_mode):
                raise _UnsafeFolder(f"{shown} is not a folder") from None
            raise
    raise _UnsafeFolder(f"{shown} keeps changing")


def _open_folders(root_fd: int, root: Path, parts: Sequence[str], *, create: bool) -> int | None:
    """Open root/parts[0]/parts[1]/... one folder at a time (see ``_open_folder``)."""
    fd = os.dup(root_fd)
    shown = root
    try:
        for name in parts:
            shown = shown / name
            sub = _open_folder(fd, name, shown, create=create)
            os.close(fd)
            fd = -1
            if sub is None:
                return None
            fd = sub
        ret, fd = fd, -1
        return ret
    finally:
        if fd >= 0:
            os.close(fd)


def _inbox_files(dir_fd: int, rel: Path = Path()) -> Iterator[tuple[Path, os.stat_result]]:
    """Candidates under the inbox (dir_fd): (path relative to it, lstat) of each regular
    file and each symbolic link (to be refused), skipping hidden names and the top-level
    done/ and rejected/. Sub-folders are walked; a symlinked folder is a link, not walked."""
    try:
        with os.scandir(dir_fd) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    for e in entries:
        if e.name.startswith(".") or (rel == Path() and e.name in (DONE, REJECTED_DIR)):
            continue
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(e.name, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue  # replaced meanwhile: seen on the next poll
            try:
                yield from _inbox_files(sub, rel / e.name)
            finally:
                os.close(sub)
        elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            yield rel / e.name, st


def _lexists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _move_unique(
    src_fd: int, name: str, dest_fd: int, tag: str, *, reason: str | None = None
) -> str:
    """Rename the entry ``name`` (itself: a link stays a link) from src_fd into dest_fd,
    suffixing its stem with tag if the name is taken; with a reason, write it beside as
    ``<new name>.reason.txt`` (created, never written through an existing name or link).
    Returns the new name."""
    stem, suffix = Path(name).stem, Path(name).suffix
    names = itertools.chain(
        [name, f"{stem}-{tag}{suffix}"], (f"{stem}-{tag}-{n}{suffix}" for n in itertools.count(1))
    )
    for dest in names:
        taken = _lexists(dest_fd, dest) or (
            reason is not None and _lexists(dest_fd, dest + REASON_SUFFIX)
        )
        if not taken:
            break
    os.rename(name, dest, src_dir_fd=src_fd, dst_dir_fd=dest_fd)
    if reason is not None:
        try:
            fd = os.open(dest + REASON_SUFFIX, _REASON_FLAGS, 0o666, dir_fd=dest_fd)
        except OSError as exc:
            log.error("inbox: cannot write %s%s: %s", dest, REASON_SUFFIX, exc.strerror)
        else:
            with os.fdopen(fd, "w") as out:
                out.write(f"{reason}\n")
    return dest


class InboxWatcher:
    """Polls an inbox folder; uploads files whose size and mtime held still for a poll.

    A file stays in the inbox until it has been queued (or recognised as a duplicate or
    already tagged), then moves to ``done/``; a rejected file moves to ``rejected/`` beside a
    ``<name>.reason.txt``. After a crash, a file still in the inbox is simply uploaded again
    (the same bytes are the same photo), so nothing is lost or queued twice.

    No symbolic link is followed: a link dropped into the inbox is itself moved to
    ``rejected/`` ("symbolic link: not followed"), its target never read; a file is read from
    the descriptor that was checked to be the polled regular file. If ``done/``,
    ``rejected/`` (or a sub-folder in them) is a link or not a folder, it is not used: the
    error is logged and files stay where they are.
    """

    def __init__(self, inbox: Path, *, force: bool = False) -> None:
        self.inbox = inbox.resolve()
        self.force = force
        self._last: dict[Path, Signature] = {}
        self._warned: dict[Path, Signature | None] = {}

    def poll(self, intake: Intake) -> list[UploadRecord | VideoUploadRecord]:
        """One poll: upload and move every file that has not changed since the last poll."""
        self.inbox.mkdir(parents=True, exist_ok=True)
        try:
            root_fd = os.open(self.inbox, _DIR_FLAGS)
        except OSError as exc:
            log.error("inbox: cannot open %s: %s", self.inbox, exc.strerror)
            return []
        try:
            current: dict[Path, Signature] = {}
            ready: list[tuple[Path, Signature]] = []
            for rel, st in _inbox_files(root_fd):
                p = self.inbox / rel
                sig = _signature(st)
                current[p] = sig
                if self._last.get(p) == sig:
                    ready.append((p, sig))
            self._last = current
            records: list[UploadRecord | VideoUploadRecord] = []
            for p, sig in ready:
                rec = self._handle(intake, root_fd, p, sig)
                if rec is not None:
                    records.append(rec)
                    self._last.pop(p, None)
            return records
        finally:
            os.close(root_fd)

    def _warn(self, p: Path, level: int, msg: str, *args: object) -> None:
        """Log once per version of the file (it is retried on every poll)."""
        sig = self._last.get(p)
        if self._warned.get(p) != sig:
            log.log(level, msg, *args)
            self._warned[p] = sig

    def _handle(
        self, intake: Intake, root_fd: int, p: Path, sig: Signature
    ) -> UploadRecord | VideoUploadRecord | None:
        """Upload (or refuse) one polled entry and move it; None if it stays in place."""
        rel = p.relative_to(self.inbox)
        folders = rel.parent.parts
        try:  # where it may go, checked before anything is stored
            for top in (DONE, REJECTED_DIR):
                fd = _open_folders(root_fd, self.inbox, (top, *folders), create=False)
                if fd is not None:
                    os.close(fd)
            src_fd = _open_folders(root_fd, self.inbox, folders, create=False)
        except _UnsafeFolder as exc:
            self._warn(p, logging.ERROR, "inbox: %s: not used; %s left in place", exc, rel)
            return None
        except OSError as exc:
            self._warn(p, logging.WARNING, "inbox: %s: %s (left in place)", p, exc.strerror)
            return None
        if src_fd is None:
            return None  # its folder went away
        try:
            if stat.S_ISLNK(sig[0]):
                rec: UploadRecord | VideoUploadRecord | None = UploadRecord(
                    str(p), None, REJECTED, SYMLINK_REASON
                )
            else:
                rec = self._upload(intake, src_fd, p, sig)
            if rec is None:
                return None  # changed since it was polled: looked at again next poll
            if rec.status == ERROR:
                self._warn(p, logging.WARNING, "inbox: %s: %s (left in place)", p, rec.reason)
                return None
            try:
                now = os.stat(rel.name, dir_fd=src_fd, follow_symlinks=False)
            except FileNotFoundError:
                return None
            if (now.st_dev, now.st_ino) != (sig[3], sig[4]):
                return None  # replaced meanwhile: the new entry is handled on its own
            tag = (rec.photo_id or "")[:12] or time.strftime("%Y%m%d%H%M%S")
            top = REJECTED_DIR if rec.status == REJECTED else DONE
            try:
                dest_fd = _open_folders(root_fd, self.inbox, (top, *folders), create=True)
                assert dest_fd is not None
            except OSError as exc:
                level = logging.ERROR if isinstance(exc, _UnsafeFolder) else logging.WARNING
                self._warn(p, level, "inbox: %s: not used; %s left in place", exc, rel)
                return None
            try:
                reason = (rec.reason or rec.status) if rec.status == REJECTED else None
                name = _move_unique(src_fd, rel.name, dest_fd, tag, reason=reason)
            finally:
                os.close(dest_fd)
        finally:
            os.close(src_fd)
        dest = Path(top, *folders, name)
        log.info("inbox: %s -> %s (%s)", rel, dest, rec.status)
        rec.path = str(self.inbox / dest)
        return rec

    def _upload(
        self, intake: Intake, dir_fd: int, p: Path, sig: Signature
    ) -> UploadRecord | VideoUploadRecord | None:
        """Upload the regular file p (in dir_fd) from a descriptor checked to be the file
        that was polled; None if it is no longer that file."""
        try:
            fd = os.open(p.name, _FILE_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None  # now a link: refused as one on a later poll
            return UploadRecord(str(p), None, ERROR, f"cannot read: {exc.strerror or exc}")
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fd)
            polled = (sig[1], sig[3], sig[4])  # size, device, inode
            if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_dev, st.st_ino) != polled:
                return None
            return intake.upload_open_file(fh, p, force=self.force)


def watch_inbox(
    inbox_dir: str | os.PathLike[str],
    intake: Intake,
    poll_secs: float = 2.0,
    *,
    once: bool = False,
    force: bool = False,
    stop: threading.Event | None = None,
    on_record: Callable[[UploadRecord | VideoUploadRecord], None] | None = None,
) -> list[UploadRecord | VideoUploadRecord]:
    """Watch a folder, uploading through ``intake``, until ``stop`` is set (or, with ``once``,
    for two polls: enough to see which files are complete). Returns the records (when once)
    and reports each to on_record.

    Redis/Postgres outages are logged and retried on the next poll, except with ``once``.
    """
    from autotag.errors import ServiceError

    watcher = InboxWatcher(Path(inbox_dir), force=force)
    stop = stop or threading.Event()
    collected: list[UploadRecord | VideoUploadRecord] = []
    polls = 0
    down_logged = False
    try:
        while not stop.is_set():
            try:
                intake.open()
                for rec in watcher.poll(intake):
                    if on_record is not None:
                        on_record(rec)
                    if once:
                        collected.append(rec)
                down_logged = False
            except ServiceError as exc:
                intake.close()
                if once:
                    raise
                if not down_logged:
                    log.error("inbox: %s; retrying every %.1fs", exc, poll_secs)
                    down_logged = True
            polls += 1
            if once and polls >= 2:
                break
            stop.wait(poll_secs)
    finally:
        intake.close()
    return collected
