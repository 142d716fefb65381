"""``autotag search | show | stats | failed``: reading what the pipeline stored."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from autotag.checksums import file_sha256
from autotag.cli.video import clock
from autotag.config import Settings, settings
from autotag.errors import AutotagError, ServiceError
from autotag.storage import blobs, database, lookups, people, tag_search, videos
from autotag.storage.item_stream import ItemStream
from autotag.vision import bundle as bundles
from autotag.vision.concepts import active_search_vocabulary


def _dump(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, default=str))


def _queue_info(s: Settings) -> dict[str, Any]:
    """Backlog, pending and dead letters; an "error" entry instead if Redis is down."""
    try:
        stream = ItemStream(s.services, s.queue, check=True)
        try:
            with stream.errors():
                return {
                    "backlog": stream.backlog_len(),
                    "pending": stream.pending_count(),
                    "dead_letters": int(stream.redis.xlen(s.queue.dead_letter_stream)),
                }
        finally:
            stream.redis.close()
    except ServiceError as exc:
        return {"error": str(exc)}


@click.command()
@click.argument("query", nargs=-1)
@click.option("--min-score", type=float, default=0.0, show_default=True)
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0, None), default=0, help="Skip this many photos.")
@click.option(
    "--order",
    type=click.Choice(tag_search.ORDERS),
    default="score",
    show_default=True,
    help="Best match first, newest upload first, or newest taken first (undated last).",
)
@click.option("--exact", is_flag=True, help="Whole-tag matches only (no words of longer tags).")
@click.option(
    "--from",
    "taken_from",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Taken on or after this day (YYYY-MM-DD, the date the file says).",
)
@click.option(
    "--to", "taken_to", type=click.DateTime(["%Y-%m-%d"]), help="Taken on or before this day."
)
@click.option("--json", "as_json", is_flag=True, help="JSON, with why each photo matched.")
def search(
    query: tuple[str, ...],
    min_score: float,
    limit: int,
    offset: int,
    order: str,
    exact: bool,
    taken_from: datetime | None,
    taken_to: datetime | None,
    as_json: bool,
) -> None:
    """Photos tagged QUERY (case-insensitive), best first.

    Finds tags by name, plural and synonym ("dogs", "automobile" finds car) and everyday
    concepts (dog finds the German shepherds); several words must all match ("dog beach").
    Exact tag matches come first, then plurals and synonyms, then photos whose multi-word tag
    contains every word of a term ("retriever" also finds "golden retriever"), unless --exact.
    The same query as the web page's search box and the API's /search?q=. Video segments
    whose frames carried the words follow, with their time ranges (JSON:
    "kind": "video_segment").
    """
    s = settings()
    text = " ".join(query)
    if not text.strip() and not (taken_from or taken_to):
        raise click.UsageError("give words to search for, or --from/--to")
    request = tag_search.TagQuery(
        text,
        min_score=min_score,
        order=order,
        limit=limit,
        offset=offset,
        words=not exact,
        taken_from=taken_from.date() if taken_from else None,
        taken_to=taken_to.date() if taken_to else None,
    )
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        page = tag_search.search(conn, request, active_search_vocabulary(s.models_dir))
        segments = videos.search_segments(conn, text, min_score, limit) if text.strip() else []
    if as_json:
        _dump(page.hits + [g.as_dict() for g in segments])
        return
    if not page.hits and not segments:
        click.echo(f"no photos tagged {text!r}", err=True)
        return
    for h in page.hits:
        why = ", ".join(
            f"{m['tag']} ({m['kind']}{', ' + m['match'] if m['match'] != 'exact' else ''})"
            for m in h["matches"]
        )
        click.echo(f"{h['score']:6.3f}  {h['photo_id']}  {why}  {h['source'] or ''}".rstrip())
    for g in segments:
        where = f"camera {g.camera}" if g.camera else (g.source or "")
        span = f"{clock(g.start_secs)}-{clock(g.end_secs)}"
        click.echo(
            f"{g.score:6.3f}  video {g.video_id[:12]} #{g.segment} {span}  {g.tag}"
            f" ({g.frames} frames)  {where}".rstrip()
        )


def _resolve_photo(arg: str) -> str:
    """A photo id, or a file path hashed to its id."""
    if blobs.is_photo_id(arg.strip().lower()):
        return arg.strip().lower()
    path = Path(arg).expanduser()
    if path.is_file():
        return file_sha256(path)
    raise AutotagError(f"{arg!r} is neither a photo id (64 hex characters) nor a file")


@click.command()
@click.argument("photo")
@click.option("--json", "as_json", is_flag=True)
def show(photo: str, as_json: bool) -> None:
    """One photo (an id, or a file hashed to its id): status, current tags, vector."""
    s = settings()
    pid = _resolve_photo(photo)
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        info = lookups.show(conn, pid)
        faces = people.photo_faces(conn, pid) if info is not None else []
        bodies = people.person_boxes(conn, pid) if info is not None else None
    if info is None:
        raise AutotagError(f"no photo {pid} (upload it with `autotag upload`)")
    if as_json:
        _dump({**info.as_dict(), "faces": faces, "people": bodies})
        return
    d = info.as_dict()
    for b in bodies or []:
        x, y, w, h = b["box"]
        click.echo(f"person    {x},{y} {w}x{h}  {b['score']:.2f}")
    for f in faces:
        x, y, w, h = f["box"]
        who = f["person"] or (f"person {f['person_id']}" if f["person_id"] else "nobody yet")
        click.echo(f"face      {f['face_id']}  {x},{y} {w}x{h}  {f['score']:.2f}  {who}")
    size = f"{info.width}x{info.height}" if info.width and info.height else "?"
    click.echo(f"photo     {info.photo_id}")
    click.echo(f"status    {info.status}" + (f" ({info.reason})" if info.reason else ""))
    click.echo(f"source    {info.source or '-'}  ({info.bytes or 0} bytes, {size})")
    click.echo(f"model     {info.model_version or '-'}  attempts {info.attempts}")
    click.echo(f"uploaded  {d['uploaded_at']}  tagged {d['tagged_at'] or '-'}")
    m = info.metadata
    if m.get("taken_local"):
        when = m.get("taken_at") or f"{m['taken_local']} (local time, zone unknown)"
        click.echo(f"taken     {when}  ({m.get('taken_source') or '?'})")
    else:
        click.echo("taken     unknown (the file gives no date)")
    if m.get("latitude") is not None:
        alt = f", {m['altitude']:.0f} m" if m.get("altitude") is not None else ""
        where = f"  {m['place']}" if m.get("place") else ""
        click.echo(f"position  {m['latitude']:.5f}, {m['longitude']:.5f}{alt}{where}")
    for label, key in (("camera", "camera"), ("lens", "lens"), ("title", "title")):
        if m.get(key):
            click.echo(f"{label:<9} {m[key]}")
    if m.get("description"):
        click.echo(f"caption   {m['description']}")
    if m.get("keywords"):
        click.echo(f"keywords  {m['keywords']}")
    vecs = ", ".join(f"{fs} ({dim})" for fs, dim in info.vectors.items()) or "none"
    click.echo(f"vectors   {vecs}")
    click.echo("tags" if info.tags else "tags      none")
    width = max((len(t) for t, _ in info.tags), default=0)
    for tag, score in info.tags:
        kind, via = info.kinds.get(tag, ("leaf", None))
        click.echo(f"  {score:6.3f}  {tag:<{width}}  {kind}{f' (via {via})' if via else ''}")
    if info.other_model_versions:
        older = ", ".join(f"{v} ({n})" for v, n in info.other_model_versions.items())
        click.echo(f"older tags from {older}")


@click.command()
@click.option("--top", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def stats(top: int, as_json: bool) -> None:
    """Photos by status, tags per photo, top tags, and the queue (if Redis is up)."""
    from autotag.learning.learned_bundle import current_versions

    s = settings()
    active = bundles.active_bundle_id(s.models_dir)
    current = current_versions(s.models_dir, active) if active else []
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        st = lookups.stats(conn, top, active, current)
    st["queue"] = _queue_info(s)
    if as_json:
        _dump(st)
        return
    by = st["by_status"]
    click.echo(
        f"photos    {st['photos']}  (tagged {by['tagged']}, queued {by['queued']},"
        f" failed {by['failed']})"
    )
    click.echo(f"tags      {st['current_tags']} current, {st['tags_per_photo']} per tagged photo")
    if st["model_versions"]:
        versions = ", ".join(f"{v} ({n})" for v, n in st["model_versions"].items())
        click.echo(f"models    {versions}")
    backlog = st["backlog"]
    if backlog and backlog["on_other_versions"]:
        click.echo(
            f"backlog   {backlog['on_other_versions']} photos still on older models"
            f" ({backlog['queued_for_retag']} queued); `autotag retag` moves them to"
            f" {backlog['active']}"
        )
    if st["vectors"]:
        click.echo("vectors   " + ", ".join(f"{k} ({n})" for k, n in st["vectors"].items()))
    q = st["queue"]
    if "error" in q:
        click.echo(f"autotag: queue unknown: {q['error']}", err=True)
    else:
        click.echo(
            f"queue     {q['backlog']} in stream, {q['pending']} being processed,"
            f" {q['dead_letters']} dead letters"
        )
    if st["top_tags"]:
        click.echo("top tags")
        for t in st["top_tags"]:
            click.echo(f"  {t['photos']:7d}  {t['tag']}  (avg {t['avg_score']:.3f})")


@click.command()
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def failed(limit: int, as_json: bool) -> None:
    """Photos that could not be tagged, with reasons, and the queue's dead letters."""
    s = settings()
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        rows = lookups.failed(conn, limit)
    dead: list[dict[str, Any]] = []
    dead_error = None
    try:
        stream = ItemStream(s.services, s.queue, check=True)
        try:
            with stream.errors():
                dead = [d.as_dict() for d in stream.dead_letters(limit)]
        finally:
            stream.redis.close()
    except ServiceError as exc:
        dead_error = str(exc)
    if as_json:
        out: dict[str, Any] = {"failed": rows, "dead_letters": dead}
        if dead_error:
            out["dead_letters_error"] = dead_error
        _dump(out)
        return
    if not rows:
        click.echo("no failed photos")
    for f in rows:
        click.echo(
            f"{f['photo_id']}  {f['source'] or '-'}  attempts {f['attempts']}: {f['reason']}"
        )
    if dead_error:
        click.echo(f"autotag: dead letters unknown: {dead_error}", err=True)
    elif dead:
        click.echo(f"dead letters ({len(dead)})")
        for d in dead:
            click.echo(f"  {d['at']}  {d['photo_id']}  attempts {d['attempts']}: {d['reason']}")


commands = [search, show, stats, failed]
