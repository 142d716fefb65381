"""Getting photos in: files and folders, a watched inbox folder, and the HTTP upload.

Order for each photo: blob first, then the Postgres row ('queued'), then the stream
entry. A crash between the last two leaves a 'queued' row with no entry, which
``autotag retry --stuck`` re-enqueues; nothing is ever queued without its blob.

Only the size limit is enforced here (status ``rejected``); anything else, even an empty
file or one that is not an image, is queued and the bolts record why it failed. A video
(by its bytes or its name) goes to ``video_intake`` instead, which probes and splits it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from autotag.config import Settings
from autotag.pipeline.video_intake import VideoUploadRecord, upload_video
from autotag.storage.item_stream import segment_stream
from autotag.storage import database, registry
from autotag.storage.blobs import BlobStore, BlobTooLarge
from autotag.storage.item_stream import ItemStream
from autotag.vision.video import looks_like_video

log = logging.getLogger(__name__)

# Upload outcomes.
QUEUED = "queued"  # stored and put on the stream
DUPLICATE = "duplicate"  # same bytes as a photo already queued (or earlier in this upload)
ALREADY_TAGGED = "already-tagged"  # tagged before; not re-queued without force
REJECTED = "rejected"  # over settings.max_file_bytes; nothing stored or queued
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

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.blobs = BlobStore(settings.blob_dir)
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
            self.conn = database.connect(self.settings)
        if self.stream is None:
            self.stream = ItemStream(self.settings, check=True)

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
        with database.pg_errors(self.settings), self.stream.errors():
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
            if reg.new:
                self.conn.execute(
                    "DELETE FROM photos WHERE photo_id = %s AND status = 'queued'", (photo_id,)
                )
            elif reg.previous_status and reg.previous_status != "queued":
                self.conn.execute(
                    "UPDATE photos SET status = %s WHERE photo_id = %s AND status = 'queued'",
                    (reg.previous_status, photo_id),
                )
        except Exception:  # noqa: BLE001 - `autotag retry --stuck` recovers the row later
            pass

    def upload_video(self, path: Path, *, force: bool = False) -> VideoUploadRecord:
        """A video file: stored, probed, and queued as segments on the segment stream."""
        assert self.conn is not None and self.stream is not None
        segments = segment_stream(self.settings, self.stream.redis)
        return upload_video(self.settings, self.conn, segments, self.blobs, path, force=force)

    def upload_file(
        self, path: Path, *, force: bool = False, seen: set[str] | None = None
    ) -> UploadRecord | VideoUploadRecord:
        """Store, register and queue one regular file (size limit enforced).

        ``seen`` holds ids already handled in this run: the same bytes again are reported
        ``duplicate`` without touching Postgres or Redis.
        """
        limit = self.settings.max_file_bytes
        try:
            fh = open(path, "rb")
        except OSError as exc:
            return UploadRecord(str(path), None, ERROR, f"cannot read: {exc.strerror or exc}")
        with fh:
            if looks_like_video(fh.read(512), path.name):
                return self.upload_video(path, force=force)
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


def upload(
    paths: Sequence[str | os.PathLike[str]],
    settings: Settings,
    *,
    recursive: bool = True,
    force: bool = False,
    progress: Callable[[UploadRecord | VideoUploadRecord], None] | None = None,
    inputs: Sequence[tuple[Path, str | None]] | None = None,
) -> list[UploadRecord | VideoUploadRecord]:
    """Upload files and folders; one record per input file, in walk order.

    The same bytes twice in one call are one photo: the second is ``duplicate``. A photo
    tagged before is ``already-tagged`` and not re-queued unless ``force``. Raises
    ServiceError if Redis or Postgres is down (already-stored blobs are harmless).
    """
    items = list(inputs) if inputs is not None else list(iter_inputs(paths, recursive=recursive))
    records: list[UploadRecord | VideoUploadRecord] = []
    seen: set[str] = set()
    with Intake(settings) as intake:
        for path, problem in items:
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


def _inbox_files(inbox: Path) -> Iterator[Path]:
    """Candidate files under the inbox (not hidden, not in done/ or rejected/)."""
    for dirpath, dirnames, filenames in os.walk(inbox):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and not (here == inbox and d in (DONE, REJECTED_DIR))
        )
        for name in sorted(filenames):
            if not name.startswith("."):
                yield here / name


def _move_unique(src: Path, dest_dir: Path, rel: Path, tag: str) -> Path:
    """Move src to dest_dir/rel; if that name is taken, suffix the stem with tag."""
    dest = dest_dir / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest = dest.with_name(f"{dest.stem}-{tag}{dest.suffix}")
        n = 1
        while dest.exists():
            dest = dest.with_name(f"{Path(rel).stem}-{tag}-{n}{dest.suffix}")
            n += 1
    shutil.move(str(src), str(dest))
    return dest


class InboxWatcher:
    """Polls an inbox folder; uploads files whose size and mtime held still for a poll.

    A file stays in the inbox until it has been queued (or recognised as a duplicate or
    already tagged), then moves to ``done/``; a rejected file moves to ``rejected/`` beside a
    ``<name>.reason.txt``. After a crash, a file still in the inbox is simply uploaded again
    (the same bytes are the same photo), so nothing is lost or queued twice.
    """

    def __init__(self, inbox: Path, settings: Settings, *, force: bool = False) -> None:
        self.inbox = inbox.resolve()
        self.settings = settings
        self.force = force
        self._last: dict[Path, tuple[int, int]] = {}
        self._warned: dict[Path, tuple[int, int]] = {}

    def poll(self, intake: Intake) -> list[UploadRecord]:
        """One poll: upload and move every file that has not changed since the last poll."""
        self.inbox.mkdir(parents=True, exist_ok=True)
        current: dict[Path, tuple[int, int]] = {}
        ready: list[Path] = []
        for p in _inbox_files(self.inbox):
            try:
                st = p.stat()
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            sig = (st.st_size, st.st_mtime_ns)
            current[p] = sig
            if self._last.get(p) == sig:
                ready.append(p)
        self._last = current
        records = []
        for p in ready:
            rec = self._handle(intake, p)
            if rec is not None:
                records.append(rec)
                self._last.pop(p, None)
        return records

    def _handle(self, intake: Intake, p: Path) -> UploadRecord | None:
        rec = intake.upload_file(p, force=self.force)
        rel = p.relative_to(self.inbox)
        if rec.status == ERROR:
            sig = self._last.get(p)
            if self._warned.get(p) != sig:
                log.warning("inbox: %s: %s (left in place)", p, rec.reason)
                self._warned[p] = sig  # type: ignore[assignment]
            return None
        tag = (rec.photo_id or "")[:12] or time.strftime("%Y%m%d%H%M%S")
        if rec.status == REJECTED:
            dest = _move_unique(p, self.inbox / REJECTED_DIR, rel, tag)
            dest.with_name(dest.name + ".reason.txt").write_text(f"{rec.reason}\n")
        else:
            dest = _move_unique(p, self.inbox / DONE, rel, tag)
        log.info("inbox: %s -> %s (%s)", rel, dest.relative_to(self.inbox), rec.status)
        rec.path = str(dest)
        return rec


def watch_inbox(
    inbox_dir: str | os.PathLike[str],
    settings: Settings,
    poll_secs: float = 2.0,
    *,
    once: bool = False,
    force: bool = False,
    stop: threading.Event | None = None,
    on_record: Callable[[UploadRecord], None] | None = None,
) -> list[UploadRecord]:
    """Watch a folder until ``stop`` is set (or, with ``once``, for two polls: enough to see
    which files are complete). Returns the records (when once) and reports each to on_record.

    Redis/Postgres outages are logged and retried on the next poll, except with ``once``.
    """
    from autotag.errors import ServiceError

    watcher = InboxWatcher(Path(inbox_dir), settings, force=force)
    stop = stop or threading.Event()
    intake = Intake(settings)
    collected: list[UploadRecord] = []
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
