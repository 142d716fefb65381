"""Putting photos back on the queue: failed ones, dead letters, rows stuck in 'queued'
(an upload that crashed between Postgres and Redis), and the backlog when a new model lands.

Re-queueing is always safe: the DB writer's writes are idempotent per (photo, model version).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from autotag.config import QueueSettings, ServiceSettings
from autotag.storage import database, registry
from autotag.storage.blobs import BlobStore
from autotag.storage.item_stream import ItemStream


def requeue(
    services: ServiceSettings,
    queue: QueueSettings,
    blob_dir: Path,
    photo_ids: Sequence[str] | None = None,
    *,
    statuses: Sequence[str] = ("failed",),
    older_than_secs: float = 0.0,
    include_tagged: bool = False,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Re-enqueue matching photos (attempts reset) whose blob is still in ``blob_dir``;
    returns how many were queued."""
    stream = ItemStream(services, queue)
    blobs = BlobStore(blob_dir)
    with database.connect(services) as conn:
        items = registry.requeue_info(
            conn, photo_ids, statuses=statuses, older_than_secs=older_than_secs, limit=limit
        )
        n = 0
        for item in items:
            if not blobs.exists(item.photo_id):
                continue  # nothing to tag: the bytes are gone
            registry.mark_queued(conn, [item.photo_id], include_tagged=include_tagged)
            stream.enqueue(item.photo_id, item.source or "")
            n += 1
            if progress:
                progress(1)
    return n


def stale_model_ids(
    services: ServiceSettings,
    active_version: str,
    limit: int | None = None,
    current: Sequence[str] = (),
) -> list[str]:
    """Tagged photos whose current tags come from another model (the re-tag backlog)."""
    with database.connect(services) as conn:
        return registry.stale_model_ids(conn, active_version, limit, current)
