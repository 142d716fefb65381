"""The DB writer's batching: collect results with their Storm tuples, write a batch in one
transaction, then ack. Nothing is acked that was not committed and nothing is dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from autotag.pipeline.contract import PhotoResult

log = logging.getLogger(__name__)


class ResultStore(Protocol):
    """Where batches go (``storage.writer`` over a Postgres connection, or a test fake)."""

    def write(self, results: Sequence[PhotoResult]) -> int: ...
    def reset(self) -> None: ...


class ResultBatcher:
    """Batches results by count and by age; commit-then-ack.

    ``flush`` never raises for a database outage: it keeps the batch and retries later with
    back-off, so Storm replays nothing that was stored and loses nothing that was not.
    """

    def __init__(
        self,
        store: ResultStore,
        ack: Callable[[Any], None],
        batch_size: int = 64,
        max_age_secs: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ack = ack
        self.batch_size = batch_size
        self.max_age_secs = max_age_secs
        self.clock = clock
        self.pending: list[tuple[PhotoResult, Any]] = []
        self.oldest = 0.0
        self.retry_at = 0.0
        self.backoff = 0.5

    def add(self, result: PhotoResult, tup: Any) -> None:
        if not self.pending:
            self.oldest = self.clock()
        self.pending.append((result, tup))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def due(self) -> bool:
        return bool(self.pending) and self.clock() - self.oldest >= self.max_age_secs

    def flush(self) -> int:
        """Write everything pending; ack after commit. Returns the number of tuples acked."""
        if not self.pending or self.clock() < self.retry_at:
            return 0
        batch = self.pending
        try:
            self.store.write([r for r, _ in batch])
        except Exception as exc:  # noqa: BLE001 - outage: keep the batch, retry with back-off
            log.error(
                "DB write of %d results failed (%s); retrying in %.1fs",
                len(batch),
                exc,
                self.backoff,
            )
            self.store.reset()
            self.retry_at = self.clock() + self.backoff
            self.backoff = min(self.backoff * 2, 10.0)
            return 0
        self.pending = []
        self.backoff = 0.5
        for _, tup in batch:
            self.ack(tup)
        return len(batch)
