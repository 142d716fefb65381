"""The trash expires by itself while the cluster runs: the web service (one of the daemons
`autotag cluster up` starts) runs a background thread that, every ``trash_expiry_secs``,
removes for good what has been in the trash longer than ``trash_days`` and forgets tombstones
older than ``tombstone_hours`` — what `autotag gc` does by hand. Deletes take the delete lock,
so two web processes (or a gc) running it at once do the work once."""

from __future__ import annotations

import logging
import threading
from typing import Any

from autotag.config import Settings
from autotag.storage import database, deletion

log = logging.getLogger(__name__)


def expire_once(s: Settings) -> dict[str, Any]:
    """One expiry run: {'expired': n, 'tombstones': n, 'errors': [...]}."""
    with database.connect(s.services, migrate_schema=False) as conn:
        d = deletion.for_settings(s, conn)
        gone = d.expire(s.trash.trash_days)
        forgotten = deletion.forget_tombstones(conn, s.trash.tombstone_hours * 3600.0)
    return {
        "expired": sum(o.outcome == "purged" for o in gone),
        "tombstones": forgotten,
        "errors": d.files.errors,
    }


class TrashExpiry:
    """A daemon thread running ``expire_once`` every ``interval`` seconds until stopped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.interval = float(settings.trash.trash_expiry_secs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.last: dict[str, Any] | None = None

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="trash-expiry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.last = expire_once(self.settings)
                self.runs += 1
                if self.last["expired"]:
                    log.info("trash: %d items expired", self.last["expired"])
                for e in self.last["errors"]:
                    log.warning("trash expiry: %s", e)
            except Exception:  # noqa: BLE001 - Postgres away: try again next time
                log.exception("trash expiry failed")
