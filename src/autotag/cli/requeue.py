"""`autotag retry` and `autotag retag`: nothing stays failed or stale by accident."""

from __future__ import annotations

import click

from autotag.config import settings
from autotag.errors import AutotagError
from autotag.pipeline.requeue import requeue, stale_model_ids


@click.command()
@click.argument("photo_ids", nargs=-1)
@click.option(
    "--stuck",
    "stuck_secs",
    type=float,
    default=None,
    help="Also re-queue photos 'queued' for longer than this many seconds.",
)
def retry(photo_ids: tuple[str, ...], stuck_secs: float | None) -> None:
    """Re-queue failed photos (all, or PHOTO_IDS), e.g. after fixing what made them fail."""
    s = settings()
    n = requeue(s.services, s.queue, s.blob_dir, photo_ids or None, statuses=("failed",))
    if stuck_secs is not None:
        n += requeue(
            s.services,
            s.queue,
            s.blob_dir,
            photo_ids or None,
            statuses=("queued",),
            older_than_secs=stuck_secs,
        )
    click.echo(f"{n} photos re-queued")


@click.command()
@click.option("--limit", type=int, default=None, help="At most this many photos.")
def retag(limit: int | None) -> None:
    """Re-tag the backlog: tagged photos whose tags come from a model other than the active one."""
    from autotag.learning.learned_bundle import current_versions
    from autotag.vision.bundle import active_bundle_id

    s = settings()
    active = active_bundle_id(s.models_dir)
    if active is None:
        raise AutotagError("no active model to re-tag for (autotag models activate BUNDLE_ID)")
    # Photos on a bundle the active one was learned from already carry its learned tags.
    ids = stale_model_ids(s.services, active, limit, current_versions(s.models_dir, active))
    if not ids:
        click.echo(f"nothing to re-tag: every tagged photo is on {active}")
        return
    with click.progressbar(length=len(ids), label=f"re-queueing for {active}") as bar:
        n = requeue(
            s.services,
            s.queue,
            s.blob_dir,
            ids,
            statuses=("tagged",),
            include_tagged=True,
            progress=bar.update,
        )
    click.echo(
        f"{n} photos re-queued for {active}; the running topology re-tags them "
        "(resubmit it first if it still holds the old model: autotag submit autotagger --force)"
    )


commands = [retry, retag]
