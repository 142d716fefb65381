"""Deleting photos and videos: the trash, restoring from it, and removal for good.

Trashing moves an item's rows (``PHOTO_TABLES`` / ``VIDEO_TABLES``) into the ``trash`` table
as JSON and deletes them from their tables, so search, similar photos, statistics, the live
feed and every other lookup lose the item at once; ``restore`` puts the rows back. Its blob
stays until the item is purged. Purging (``--permanently``, ``autotag trash empty``, or the
trash's expiry run by ``autotag gc``) deletes the rows, the blob (a video's segment blobs
too), the cached thumbnail, and every Redis stream entry, dead letter and in-progress mark of
the item; it leaves a tombstone (``trash.purged``) so a result still in flight is dropped by
the DB writer instead of resurrecting the photo. Tombstones hold nothing but the id and
expire (``forget_tombstones``); registering the same bytes again removes it.

Deletes take ``writer.DELETE_LOCK`` exclusively; the DB writer takes it shared in each batch's
transaction, so a batch either commits before the delete (and its rows are deleted with the
rest) or starts after it (and sees the tombstone or trash row).

Everything here is idempotent: trashing a trashed item or purging a purged one changes
nothing and says so; an id nobody knows is reported as ``unknown``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import redis
from psycopg import sql

from autotag.config import Settings
from autotag.errors import AutotagError
from autotag.storage import people
from autotag.storage.blobs import BlobStore, validate_id
from autotag.storage.item_stream import ItemStream, segment_stream
from autotag.storage.writer import _VECTOR_SEQ_LOCK, DELETE_LOCK

log = logging.getLogger(__name__)

# (table, key column), parents first: the order rows are restored in. A table added for a
# photo (faces, places) or a video joins its list here and is trashed and purged with it.
PHOTO_TABLES: tuple[tuple[str, str], ...] = (
    ("photos", "photo_id"),
    ("tags", "photo_id"),
    ("labels", "photo_id"),
    ("photo_vectors", "photo_id"),
    ("faces", "photo_id"),  # boxes, descriptors, whose face (0011): restored with the photo
)
VIDEO_TABLES: tuple[tuple[str, str], ...] = (
    ("videos", "video_id"),
    ("video_segments", "video_id"),
    ("video_segment_tags", "video_id"),
    ("video_detections", "video_id"),
    ("faces", "video_id"),  # a face per face track of its segments (0014): restored with it
)
TABLES = {"photo": PHOTO_TABLES, "video": VIDEO_TABLES}
CHUNK = 200  # ids per transaction in bulk deletes


class UnknownItem(AutotagError):
    """No photo or video (live, in the trash or deleted) has this id."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one id: trashed, purged, restored, already (trashed/purged), unknown."""

    item_id: str
    kind: str | None
    outcome: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.item_id, "kind": self.kind, "outcome": self.outcome}


@dataclass(frozen=True)
class TrashItem:
    item_id: str
    kind: str
    source: str | None
    deleted_at: datetime
    expires_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "kind": self.kind,
            "source": self.source,
            "deleted_at": self.deleted_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }


@dataclass
class Files:
    """Blobs and thumbnails a purge removed, and the Redis entries it dropped."""

    blobs: int = 0
    thumbnails: int = 0
    bytes: int = 0
    stream_entries: int = 0
    marks: int = 0
    indexes: int = 0
    errors: list[str] = field(default_factory=list)


def _kinds(conn: psycopg.Connection[Any], ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """id -> (kind, where): where is 'live', 'trash' or 'purged'."""
    rows = conn.execute(
        """
        SELECT photo_id, 'photo', 'live' FROM photos WHERE photo_id = ANY(%(ids)s::text[])
        UNION ALL
        SELECT video_id, 'video', 'live' FROM videos WHERE video_id = ANY(%(ids)s::text[])
        UNION ALL
        SELECT item_id, kind, CASE WHEN purged THEN 'purged' ELSE 'trash' END FROM trash
        WHERE item_id = ANY(%(ids)s::text[])
        """,
        {"ids": list(ids)},
    ).fetchall()
    out: dict[str, tuple[str, str]] = {}
    for item_id, kind, where in rows:
        if where == "live" or item_id not in out:  # a live row wins over a stale tombstone
            out[item_id] = (kind, where)
    return out


def _snapshot(kind: str) -> sql.Composed:
    """jsonb {table: [rows]} of one item (parameter: its id). The row alias is one no table
    has as a column (faces has an ``x``, which ``to_jsonb(x)`` would take instead)."""
    parts = [
        sql.SQL(
            "{name}, (SELECT coalesce(jsonb_agg(to_jsonb(whole_row)), '[]') "
            "FROM {t} whole_row WHERE {k} = i)"
        ).format(name=sql.Literal(t), t=sql.Identifier(t), k=sql.Identifier(k))
        for t, k in TABLES[kind]
    ]
    return sql.SQL(
        "INSERT INTO trash (item_id, kind, source, rows) "
        "SELECT i, {kind}, (SELECT source FROM {parent} WHERE {pk} = i), jsonb_build_object({parts}) "
        "FROM unnest(%s::text[]) AS u(i) "
        "ON CONFLICT (item_id) DO UPDATE SET kind = EXCLUDED.kind, deleted_at = now(), "
        "purged = false, source = EXCLUDED.source, rows = EXCLUDED.rows"
    ).format(
        kind=sql.Literal(kind),
        parent=sql.Identifier(TABLES[kind][0][0]),
        pk=sql.Identifier(TABLES[kind][0][1]),
        parts=sql.SQL(", ").join(parts),
    )


def _delete_rows(conn: psycopg.Connection[Any], kind: str, ids: Sequence[str]) -> list[str]:
    """Delete the item's rows (children cascade); returns a video's segment blob ids."""
    segment_blobs: list[str] = []
    if kind == "video":
        segment_blobs = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT blob_id FROM video_segments WHERE video_id = ANY(%s::text[])",
                (list(ids),),
            )
        ]
    for table, key in reversed(TABLES[kind]):
        conn.execute(
            sql.SQL("DELETE FROM {t} WHERE {k} = ANY(%s::text[])").format(
                t=sql.Identifier(table), k=sql.Identifier(key)
            ),
            (list(ids),),
        )
    return segment_blobs


def _segment_blobs_in_trash(conn: psycopg.Connection[Any], ids: Sequence[str]) -> list[str]:
    rows = conn.execute(
        """
        SELECT DISTINCT s->>'blob_id' FROM trash t,
            jsonb_array_elements(t.rows->'video_segments') AS s
        WHERE t.item_id = ANY(%s::text[]) AND t.kind = 'video' AND NOT t.purged
        """,
        (list(ids),),
    ).fetchall()
    return [r[0] for r in rows if r[0]]


def _people_change(conn: psycopg.Connection[Any], ids: Sequence[str]) -> None:
    """A photo or video with a face of a known person leaving or coming back changes the
    people's references: bump ``people_version`` so the autotag bolts reload them."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM faces WHERE (photo_id = ANY(%s::text[]) "
        "OR video_id = ANY(%s::text[])) AND person_id IS NOT NULL)",
        (list(ids), list(ids)),
    ).fetchone()
    if row and row[0]:
        conn.execute("UPDATE people_version SET version = version + 1")


def _faces_now(conn: psycopg.Connection[Any], faces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A trashed photo's faces as they can be restored today: a face whose person was merged
    goes to the person they were merged into; a person is only ever removed by
    ``people.forget``, so a face whose person is gone was forgotten while in the trash: it
    comes back as ``forget`` leaves faces (no descriptor, nobody's, never described again)."""
    out = []
    for f in faces:
        f = dict(f)
        pid = f.get("person_id")
        if pid is not None:
            now = people.resolve(conn, int(pid))
            if now is None:
                f.update(
                    person_id=None,
                    assigned_by=None,
                    person_score=None,
                    embedding=None,
                    forgotten=True,
                )
            else:
                f["person_id"] = now
        refused = [int(p) for p in f.get("not_people") or []]
        if refused:
            f["not_people"] = [p for p in refused if people.resolve(conn, p) is not None]
        out.append(f)
    return out


class Deleter:
    """Deletes items from Postgres, the blob store, the thumbnail cache and Redis.

    ``streams`` are the photo and segment streams (``ItemStream``); ``thumbnails`` is the
    web page's thumbnail cache folder. ``progress`` is called with (done, total) during bulk
    work.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        blobs: BlobStore,
        thumbnails: Path | None,
        photo_stream: ItemStream | None = None,
        segment_stream: ItemStream | None = None,
        progress: Callable[[int, int], None] | None = None,
        index_root: Path | None = None,
    ) -> None:
        self.conn = conn
        self.index_root = index_root
        self.blobs = blobs
        self.thumbnails = thumbnails
        self.photo_stream = photo_stream
        self.segment_stream = segment_stream
        self.progress = progress
        self.files = Files()
        # (segment key, job) of the entries a trash took off the segment stream: kept with
        # the video in the trash, queued again if it is restored.
        self.segment_jobs: list[tuple[str, str]] = []

    # -- Postgres --------------------------------------------------------------------------

    def trash(self, ids: Sequence[str]) -> list[Outcome]:
        """Move live items to the trash (photos: out of search at once); see the module."""
        return self._in_chunks(ids, self._trash_chunk)

    def purge(self, ids: Sequence[str]) -> list[Outcome]:
        """Remove items for good (live or trashed): rows, blobs, thumbnails, Redis entries."""
        return self._in_chunks(ids, self._purge_chunk)

    def _in_chunks(
        self, ids: Sequence[str], fn: Callable[[list[str]], list[Outcome]]
    ) -> list[Outcome]:
        wanted = list(dict.fromkeys(validate_id(i) for i in ids))
        out: list[Outcome] = []
        for start in range(0, len(wanted), CHUNK):
            out.extend(fn(wanted[start : start + CHUNK]))
            if self.progress is not None:
                self.progress(min(start + CHUNK, len(wanted)), len(wanted))
        return out

    def _trash_chunk(self, ids: list[str]) -> list[Outcome]:
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (DELETE_LOCK,))
            where = _kinds(self.conn, ids)
            out = []
            for kind in TABLES:
                live = [i for i in ids if where.get(i) == (kind, "live")]
                if live:
                    _people_change(self.conn, live)
                    self.conn.execute(_snapshot(kind), (live,))
                    _delete_rows(self.conn, kind, live)
            for i in ids:
                found, state = where.get(i, (None, "unknown"))
                outcome = {"live": "trashed", "trash": "already in trash", "purged": "unknown"}
                out.append(Outcome(i, found, outcome.get(state, "unknown")))
        self.segment_jobs = []
        self._forget_in_redis([o for o in out if o.outcome == "trashed"])
        if self.segment_jobs:
            self._keep_segment_jobs()
        return out

    def _keep_segment_jobs(self) -> None:
        """Keep the segment jobs taken off the stream with their videos in the trash (a
        segment queued or being analysed when its video was trashed)."""
        by_video: dict[str, list[list[str]]] = {}
        for key, job in self.segment_jobs:
            by_video.setdefault(key.rpartition(":")[0], []).append([key, job])
        with self.conn.transaction():
            for video_id, jobs in by_video.items():
                self.conn.execute(
                    "UPDATE trash SET rows = rows || jsonb_build_object('segment_jobs', %s::jsonb) "
                    "WHERE item_id = %s AND kind = 'video' AND NOT purged",
                    (json.dumps(jobs), video_id),
                )
        self.segment_jobs = []

    def _purge_chunk(self, ids: list[str]) -> list[Outcome]:
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (DELETE_LOCK,))
            where = _kinds(self.conn, ids)
            blobs: list[str] = []
            for kind in TABLES:
                live = [i for i in ids if where.get(i) == (kind, "live")]
                trashed = [i for i in ids if where.get(i) == (kind, "trash")]
                if live:
                    _people_change(self.conn, live)
                    blobs += _delete_rows(self.conn, kind, live)
                if kind == "video" and trashed:
                    blobs += _segment_blobs_in_trash(self.conn, trashed)
                if live or trashed:
                    self.conn.execute(
                        "INSERT INTO trash (item_id, kind, purged, rows) "
                        "SELECT i, %s, true, NULL FROM unnest(%s::text[]) AS u(i) "
                        "ON CONFLICT (item_id) DO UPDATE SET purged = true, rows = NULL, "
                        "source = NULL, deleted_at = now()",
                        (kind, live + trashed),
                    )
            out = []
            for i in ids:
                found, state = where.get(i, (None, "unknown"))
                outcome = {"live": "purged", "trash": "purged", "purged": "already purged"}
                out.append(Outcome(i, found, outcome.get(state, "unknown")))
        # Files after the commit: a rolled-back delete must not lose a blob.
        purged = [o for o in out if o.outcome in ("purged", "already purged")]
        for o in purged:
            self._remove_files(o.item_id)
        for blob_id in blobs:
            self._remove_blob(blob_id)
        self._forget_in_redis(purged)
        self.segment_jobs = []  # gone for good: nothing to queue again
        self._forget_saved_indexes({o.item_id for o in purged if o.kind == "photo"})
        return out

    def restore(self, item_id: str) -> Outcome:
        """Put a trashed item's rows back; its status is what it was (a queued photo must be
        queued again by the caller). UnknownItem if it is not in the trash."""
        item_id = validate_id(item_id)
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (DELETE_LOCK,))
            row = self.conn.execute(
                "DELETE FROM trash WHERE item_id = %s AND NOT purged RETURNING kind, rows",
                (item_id,),
            ).fetchone()
            if row is None:
                where = _kinds(self.conn, [item_id]).get(item_id)
                why = "it is not deleted" if where and where[1] == "live" else "unknown id"
                raise UnknownItem(f"{item_id} is not in the trash ({why})")
            kind, rows = row
            if kind == "photo":
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_VECTOR_SEQ_LOCK,))
            rows["faces"] = _faces_now(self.conn, rows.get("faces") or [])
            for table, _key in TABLES[kind]:
                self.conn.execute(
                    sql.SQL(
                        "INSERT INTO {t} SELECT * FROM jsonb_populate_recordset(NULL::{t}, %s)"
                    ).format(t=sql.Identifier(table)),
                    (json.dumps(rows.get(table) or []),),
                )
            if rows.get("faces"):
                # Names may have changed while it was in the trash: its person tags follow.
                segments = sorted(
                    {(f["video_id"], int(f["segment"])) for f in rows["faces"] if f.get("video_id")}
                )
                people.refresh_person_tags(
                    self.conn, [item_id] if kind == "photo" else [], segments
                )
                _people_change(self.conn, [item_id])
        photo = (rows.get("photos") or [{}])[0]
        if kind == "photo" and photo.get("status") == "queued" and self.photo_stream is not None:
            # It left the stream when it was trashed: queue it again.
            try:
                self.photo_stream.enqueue(item_id, photo.get("source") or "")
            except redis.RedisError as exc:
                self.files.errors.append(f"redis: {exc} (run `autotag retry --stuck`)")
        if kind == "video" and self.segment_stream is not None:
            # Its segments still queued (or being analysed) when it was trashed left the
            # segment stream then: the same jobs are queued again, so the video is finished.
            queued = {
                f"{item_id}:{seg['segment']}"
                for seg in rows.get("video_segments") or []
                if seg.get("status") == "queued"
            }
            try:
                for key, job in rows.get("segment_jobs") or []:
                    if key in queued:
                        self.segment_stream.enqueue(key, job)
                        queued.discard(key)
            except redis.RedisError as exc:
                self.files.errors.append(f"redis: {exc} (segments of {item_id} not queued)")
        return Outcome(item_id, kind, "restored")

    def expire(self, trash_days: float) -> list[Outcome]:
        """Purge what has been in the trash longer than trash_days."""
        rows = self.conn.execute(
            "SELECT item_id FROM trash WHERE NOT purged "
            "AND deleted_at < now() - make_interval(secs => %s) ORDER BY deleted_at",
            (float(trash_days) * 86400.0,),
        ).fetchall()
        return self.purge([r[0] for r in rows])

    def empty(self) -> list[Outcome]:
        """Purge everything in the trash."""
        return self.expire(-1.0)

    def _forget_saved_indexes(self, ids: set[str]) -> None:
        """A similarity index saved on disk (``<run_dir>/index/<set>-<mode>``, a cache of
        Postgres) that holds a purged photo is removed: the next load rebuilds it."""
        if not ids or self.index_root is None or not self.index_root.is_dir():
            return
        for folder in sorted(self.index_root.iterdir()):
            listing = folder / "seq-ids.txt"
            if folder.is_symlink() or not listing.is_file():
                continue
            if ids & set(listing.read_text().split("\n")):
                shutil.rmtree(folder, ignore_errors=True)
                self.files.indexes += 1

    # -- files and Redis -------------------------------------------------------------------

    def _remove_blob(self, blob_id: str) -> None:
        try:
            if self.blobs.exists(blob_id):
                self.files.bytes += self.blobs.remove(blob_id)
                self.files.blobs += 1
        except OSError as exc:
            self.files.errors.append(f"blob {blob_id}: {exc}")

    def _remove_files(self, item_id: str) -> None:
        self._remove_blob(item_id)
        if self.thumbnails is None:
            return
        blob = self.blobs.path_for(item_id)  # validates the id: the paths stay inside
        folder = self.thumbnails / blob.parent.name
        for path in (folder / f"{blob.name}.jpg", folder / f"{blob.name}.reason"):
            try:
                path.unlink()
                self.files.thumbnails += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                self.files.errors.append(f"thumbnail {path.name}: {exc}")

    def _forget_in_redis(self, outcomes: Iterable[Outcome]) -> None:
        photos = {o.item_id for o in outcomes if o.kind == "photo"}
        videos = {o.item_id for o in outcomes if o.kind == "video"}
        try:
            if photos and self.photo_stream is not None:
                self._forget(self.photo_stream, photos, segments=False)
            if videos and self.segment_stream is not None:
                self._forget(self.segment_stream, videos, segments=True)
        except redis.RedisError as exc:
            self.files.errors.append(f"redis: {exc}")

    def _forget(self, stream: ItemStream, ids: set[str], *, segments: bool) -> None:
        """Drop the items' entries from the stream (queued or pending: acked and deleted),
        from its dead letters, and their in-progress marks (a segment's item is
        ``<video_id>:<n>``)."""

        def owner(item: str) -> str:
            return item.rpartition(":")[0] if segments else item

        r = stream.redis
        for name, pending in ((stream.name, True), (stream.dead_name, False)):
            start = "-"
            while True:
                chunk = r.xrange(name, min=start, max="+", count=1000) or []
                hits = []
                for eid, f in chunk:
                    fields = f or {}
                    item = str(fields.get("photo_id", ""))
                    if eid is not None and owner(item) in ids:
                        hits.append(eid)
                        if segments and pending:
                            self.segment_jobs.append((item, str(fields.get("source", ""))))
                if hits:
                    pipe = r.pipeline(transaction=True)
                    if pending:
                        pipe.xack(name, stream.group, *hits)
                    pipe.xdel(name, *hits)
                    pipe.execute()
                    self.files.stream_entries += len(hits)
                if len(chunk) < 1000:
                    break
                start = "(" + str(chunk[-1][0])
        for item in ids:
            if not segments:
                self.files.marks += int(r.delete(f"{stream.name}:working:{item}"))
                continue
            for key in r.scan_iter(match=f"{stream.name}:working:{item}:*", count=1000):
                self.files.marks += int(r.delete(key))


def for_settings(
    s: Settings,
    conn: psycopg.Connection[Any],
    progress: Callable[[int, int], None] | None = None,
) -> Deleter:
    """A Deleter over this cluster's blob store, thumbnail cache and streams."""
    return Deleter(
        conn,
        BlobStore(s.blob_dir),
        s.data_dir / "thumbnails",  # web.thumbnails' cache
        ItemStream(s.services, s.queue),
        segment_stream(s.services, s.queue),
        progress,
        s.run_dir / "index",  # similarity.service's saved indexes
    )


def kind_of(conn: psycopg.Connection[Any], item_id: str) -> str | None:
    """'photo' or 'video' for a live or trashed id (None: unknown or purged)."""
    found = _kinds(conn, [item_id]).get(item_id)
    return found[0] if found and found[1] != "purged" else None


# -- listings --------------------------------------------------------------------------------


def list_trash(conn: psycopg.Connection[Any], trash_days: float) -> list[TrashItem]:
    """What is in the trash, newest first, with when it expires."""
    rows = conn.execute(
        "SELECT item_id, kind, source, deleted_at, "
        "deleted_at + make_interval(secs => %s) FROM trash WHERE NOT purged "
        "ORDER BY deleted_at DESC, item_id",
        (float(trash_days) * 86400.0,),
    ).fetchall()
    return [TrashItem(*r) for r in rows]


def forget_tombstones(conn: psycopg.Connection[Any], older_than_secs: float) -> int:
    """Drop tombstones older than this (nothing can still be in flight for them)."""
    cur = conn.execute(
        "DELETE FROM trash WHERE purged AND deleted_at < now() - make_interval(secs => %s)",
        (float(older_than_secs),),
    )
    return cur.rowcount


def live_ids(conn: psycopg.Connection[Any], ids: Sequence[str]) -> set[str]:
    """The ids among these that are photos not deleted (a similarity hit must be one)."""
    rows = conn.execute(
        "SELECT photo_id FROM photos WHERE photo_id = ANY(%s::text[])", (list(ids),)
    ).fetchall()
    return {r[0] for r in rows}


def trashed_ids(conn: psycopg.Connection[Any], ids: Sequence[str]) -> set[str]:
    """The ids among these that are trashed or purged (the spout's and writer's check)."""
    rows = conn.execute(
        "SELECT item_id FROM trash WHERE item_id = ANY(%s::text[])", (list(ids),)
    ).fetchall()
    return {r[0] for r in rows}
