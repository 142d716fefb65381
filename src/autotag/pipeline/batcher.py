"""The DB writer's batching: collect results with their Storm tuples, write a batch in one
transaction, then ack. Nothing is acked that was not committed.

The store raises only for connection-class failures (``storage.writer.is_transient``); a
batch that keeps failing is retried with back-off ``max_retries`` times, then its tuples are
failed back to Storm, which replays them from the spout, so the writer never holds an
ever-growing batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")  # one result: a photo's (contract.PhotoResult) or a video segment's
R_contra = TypeVar("R_contra", contravariant=True)


class ResultStore(Protocol[R_contra]):
    """Where batches go (``storage.writer`` over a Postgres connection, or a test fake)."""

    def write(self, results: Sequence[R_contra]) -> int: ...
    def reset(self) -> None: ...


class ResultBatcher(Generic[R]):
    """Batches results by count and by age; commit-then-ack.

    When its input goes idle the writer commits what it has, but not sooner than
    ``min_interval_secs`` after its previous commit: a commit per photo costs several times
    a shared one, so under load batches grow, while a photo after a quiet spell is written at
    once.

    ``flush`` never raises for a database outage: it keeps the batch and retries later with
    back-off, so Storm replays nothing that was stored and loses nothing that was not; after
    ``max_retries`` failed writes it fails the batch's tuples (``fail``) and lets it go.
    """

    def __init__(
        self,
        store: ResultStore[R],
        ack: Callable[[Any], None],
        batch_size: int = 64,
        max_age_secs: float = 1.0,
        *,
        fail: Callable[[Any], None] | None = None,
        max_retries: int = 12,
        min_interval_secs: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ack = ack
        self.fail = fail
        self.max_retries = max_retries
        self.failures = 0
        self.batch_size = batch_size
        self.max_age_secs = max_age_secs
        self.min_interval_secs = min_interval_secs
        self.clock = clock
        self.last_flush = float("-inf")
        self.pending: list[tuple[R, Any]] = []
        self.oldest = 0.0
        self.retry_at = 0.0
        self.backoff = 0.5

    def add(self, result: R, tup: Any) -> None:
        if not self.pending:
            self.oldest = self.clock()
        self.pending.append((result, tup))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def due(self) -> bool:
        return bool(self.pending) and self.clock() - self.oldest >= self.max_age_secs

    def idle_flush_wait(self) -> float:
        """Seconds to hold a partial batch, once the input is idle, before committing it."""
        return max(0.0, self.last_flush + self.min_interval_secs - self.clock())

    def flush(self) -> int:
        """Write everything pending; ack after commit. Returns the number of tuples acked."""
        if not self.pending or self.clock() < self.retry_at:
            return 0
        batch = self.pending
        self.last_flush = self.clock()
        try:
            self.store.write([r for r, _ in batch])
        except Exception as exc:  # noqa: BLE001 - outage: keep the batch, retry with back-off
            self.store.reset()
            self.failures += 1
            if self.failures >= self.max_retries:
                log.error(
                    "DB write of %d results failed %d times (%s); failing them back to Storm, "
                    "which replays them",
                    len(batch),
                    self.failures,
                    exc,
                )
                self._reset()
                for _, tup in batch:
                    if self.fail is not None:
                        self.fail(tup)
                return 0
            log.error(
                "DB write of %d results failed (%s); retry %d of %d in %.1fs",
                len(batch),
                exc,
                self.failures,
                self.max_retries - 1,
                self.backoff,
            )
            self.retry_at = self.clock() + self.backoff
            self.backoff = min(self.backoff * 2, 10.0)
            return 0
        self._reset()
        for _, tup in batch:
            self.ack(tup)
        return len(batch)

    def _reset(self) -> None:
        self.pending = []
        self.failures = 0
        self.backoff = 0.5
        self.retry_at = 0.0
