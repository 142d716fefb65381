"""``autotag delete | trash | restore``: deleting photos and videos, the trash."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from autotag.checksums import file_sha256
from autotag.config import settings
from autotag.errors import AutotagError
from autotag.storage import blobs, database, deletion, tag_search
from autotag.storage.deletion import Outcome
from autotag.vision.concepts import active_search_vocabulary

PAGE = 1000


def _resolve(arg: str) -> str:
    """An id (photo or video), or a file hashed to its id."""
    if blobs.is_photo_id(arg.strip().lower()):
        return arg.strip().lower()
    path = Path(arg).expanduser()
    if path.is_file():
        return file_sha256(path)
    raise AutotagError(f"{arg!r} is neither an id (64 hex characters) nor a file")


def _query_ids(
    conn: Any,
    text: str,
    min_score: float,
    taken_from: date | None = None,
    taken_to: date | None = None,
) -> list[str]:
    """Every photo the search box would find for TEXT (all pages), taken within
    [taken_from, taken_to] when given (as `autotag search --from/--to`)."""
    vocabulary = active_search_vocabulary(settings().models_dir)
    known = tag_search.known_tags(conn)
    ids: list[str] = []
    while True:
        q = tag_search.TagQuery(
            text,
            min_score=min_score,
            limit=PAGE,
            offset=len(ids),
            taken_from=taken_from,
            taken_to=taken_to,
        )
        page = tag_search.search(conn, q, vocabulary, known)
        ids += [h["photo_id"] for h in page.hits]
        if len(page.hits) < PAGE:
            return list(dict.fromkeys(ids))


def _span(taken_from: datetime | None, taken_to: datetime | None) -> str:
    if not (taken_from or taken_to):
        return ""
    a = f"{taken_from:%Y-%m-%d}" if taken_from else "..."
    b = f"{taken_to:%Y-%m-%d}" if taken_to else "..."
    return f" taken {a} to {b}"


def _progress(done: int, total: int) -> None:
    if total > deletion.CHUNK:
        click.echo(f"  {done}/{total}", err=True)


def _report(outcomes: list[Outcome], files: deletion.Files, as_json: bool) -> None:
    unknown = [o for o in outcomes if o.outcome == "unknown"]
    if as_json:
        payload = {
            "items": [o.as_dict() for o in outcomes],
            "blobs_removed": files.blobs,
            "thumbnails_removed": files.thumbnails,
            "bytes_removed": files.bytes,
            "stream_entries_removed": files.stream_entries,
            "errors": files.errors,
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        for o in outcomes:
            click.echo(f"{o.item_id}  {o.kind or '-'}  {o.outcome}")
        if files.blobs or files.stream_entries:
            click.echo(
                f"removed {files.blobs} blobs ({files.bytes / 1e6:.1f} MB), "
                f"{files.thumbnails} thumbnails, {files.stream_entries} stream entries"
            )
        for e in files.errors:
            click.echo(f"warning: {e}", err=True)
    if unknown:
        ids = ", ".join(o.item_id for o in unknown[:3])
        raise AutotagError(f"no photo or video {ids}" + (" ..." if len(unknown) > 3 else ""))


@click.command()
@click.argument("items", nargs=-1)
@click.option("--permanently", is_flag=True, help="Skip the trash: remove everything now.")
@click.option("--query", "text", help="Delete every photo this search finds (with --yes).")
@click.option(
    "--min-score", type=click.FloatRange(0, 1), default=0.0, help="With --query: tag score cut."
)
@click.option(
    "--from",
    "taken_from",
    type=click.DateTime(["%Y-%m-%d"]),
    help="With --query: only photos taken on or after this day.",
)
@click.option(
    "--to",
    "taken_to",
    type=click.DateTime(["%Y-%m-%d"]),
    help="With --query: only photos taken on or before this day.",
)
@click.option("--dry-run", is_flag=True, help="With --query: only count what would go.")
@click.option("--yes", is_flag=True, help="With --query: do it without asking.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: what happened to each.")
def delete(
    items: tuple[str, ...],
    permanently: bool,
    text: str | None,
    min_score: float,
    taken_from: datetime | None,
    taken_to: datetime | None,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Move photos or videos (ids, or files hashed to their id) to the trash, or with
    --permanently remove them and everything derived from them (tags, labels, vectors,
    thumbnails, segments, detections, queue entries). Unknown ids exit non-zero."""
    bulk = text is not None or taken_from is not None or taken_to is not None
    if bool(items) == bulk:
        raise click.UsageError("give ids/files, or --query WORDS and/or --from/--to (not both)")
    s = settings()
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        if items:
            ids = [_resolve(i) for i in items]
        else:
            ids = _query_ids(
                conn,
                text or "",
                min_score,
                taken_from.date() if taken_from else None,
                taken_to.date() if taken_to else None,
            )
        if bulk:
            if dry_run or not yes:
                verb = "would delete" + (" permanently" if permanently else "")
                if as_json:
                    span = {
                        "from": taken_from.date().isoformat() if taken_from else None,
                        "to": taken_to.date().isoformat() if taken_to else None,
                    }
                    click.echo(json.dumps({"query": text, **span, "count": len(ids), "ids": ids}))
                else:
                    click.echo(
                        f"{verb} {len(ids)} photos found by {text or ''!r}{_span(taken_from, taken_to)}"
                    )
                if dry_run:
                    return
                if not sys.stdin.isatty() or not click.confirm("delete them?", err=True):
                    raise AutotagError("not deleted (confirm, or pass --yes)")
        d = deletion.for_settings(s, conn, _progress)
        outcomes = d.purge(ids) if permanently else d.trash(ids)
    _report(outcomes, d.files, as_json)


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="JSON list.")
@click.pass_context
def trash(ctx: click.Context, as_json: bool) -> None:
    """What is in the trash (deleted, restorable until it expires)."""
    if ctx.invoked_subcommand is not None:
        return
    s = settings()
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        found = deletion.list_trash(conn, s.trash.trash_days)
    if as_json:
        click.echo(json.dumps([t.as_dict() for t in found], indent=2))
        return
    if not found:
        click.echo("the trash is empty")
    for t in found:
        click.echo(
            f"{t.item_id}  {t.kind}  deleted {t.deleted_at:%Y-%m-%d %H:%M}  "
            f"expires {t.expires_at:%Y-%m-%d}  {t.source or ''}".rstrip()
        )


@trash.command("empty")
@click.option("--json", "as_json", is_flag=True)
def trash_empty(as_json: bool) -> None:
    """Remove everything in the trash for good."""
    s = settings()
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        d = deletion.for_settings(s, conn, _progress)
        outcomes = d.empty()
    _report(outcomes, d.files, as_json)


@click.command()
@click.argument("item")
@click.option("--json", "as_json", is_flag=True)
def restore(item: str, as_json: bool) -> None:
    """Take a photo or video out of the trash, with its tags, labels and vectors."""
    s = settings()
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        d = deletion.for_settings(s, conn)
        outcome = d.restore(_resolve(item))
    _report([outcome], d.files, as_json)


commands = [delete, trash, restore]
