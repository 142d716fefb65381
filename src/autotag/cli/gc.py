"""`autotag gc`: remove blobs of deleted photos and temp files of uploads that died."""

from __future__ import annotations

import json

import click

from autotag.config import settings
from autotag.storage import database, deletion, garbage
from autotag.storage.blobs import BlobStore


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option(
    "--min-age",
    "min_age_secs",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    help="Leave files younger than this many seconds (uploads in progress).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object: what was (or would be) removed."
)
def gc(dry_run: bool, min_age_secs: float, as_json: bool) -> None:
    """Remove blobs whose photo row is gone and stale upload temp files (.tmp/in-*)."""
    s = settings()
    blobs = BlobStore(s.blob_dir)
    expired: list[deletion.Outcome] = []
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        if not dry_run:
            # The trash's expiry, and tombstones old enough that nothing is in flight.
            expired = deletion.for_settings(s, conn).expire(s.trash.trash_days)
            deletion.forget_tombstones(conn, s.trash.tombstone_hours * 3600.0)
        found = garbage.find(blobs, conn, min_age_secs)
        result = found if dry_run else garbage.remove(blobs, conn, found)
    if as_json:
        click.echo(json.dumps({**result.as_dict(), "trash_expired": len(expired)}, indent=2))
        return
    if expired:
        click.echo(f"removed {len(expired)} items from the trash (older than its days)")
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb} {len(result.orphan_blobs)} blobs of deleted photos and "
        f"{len(result.temp_files)} stale temp files ({_mb(result.bytes)})"
    )
    if dry_run:
        for pid in result.orphan_blobs:
            click.echo(f"  blob {pid}")
        for path in result.temp_files:
            click.echo(f"  temp {path}")


commands = [gc]
