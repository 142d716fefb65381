"""Unassigned faces are clustered by themselves once enough new ones have been stored.

The DB writer counts the faces it stores with a descriptor and no person (the stream's
``PeopleMatcher`` found nobody within the match distance); once ``after_faces`` have come
(``tagging.face_cluster_after``, 50 by default; 0 turns it off), it runs the same clustering as
``autotag people cluster`` (``people_match.cluster_unassigned``: the faces join the nearest
known person first, the rest are clustered with DBSCAN at ``tagging.face_cluster_distance``
/ ``tagging.face_cluster_min_faces``) in a background thread with its own connection, so the
writer keeps committing meanwhile. One run at a time on the whole cluster (a Postgres advisory
lock, ``storage.people.cluster_lock``): a writer that finds the lock held leaves it to the
holder, and its count carries over to its next batch. New people bump ``people_version``, so
the autotag bolts match the next faces against them within seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from autotag.config import Settings
from autotag.contract import FaceFound
from autotag.storage import database, people

log = logging.getLogger(__name__)


class AutoClusterer:
    def __init__(
        self,
        connect: Callable[[], Any],
        after_faces: int,
        *,
        match_distance: float,
        cluster_distance: float,
        min_faces: int,
        background: bool = True,
    ) -> None:
        self.connect = connect
        self.after_faces = after_faces
        self.match_distance = match_distance
        self.cluster_distance = cluster_distance
        self.min_faces = min_faces
        self.background = background
        self.new_faces = 0
        self.runs = 0
        self.last: dict[str, int] | None = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def unassigned_count(faces: Iterable[FaceFound]) -> int:
        return sum(1 for f in faces if f.embedding is not None and f.person_id is None)

    def saw(self, faces: Sequence[FaceFound]) -> None:
        """Faces of a result about to be stored."""
        if self.after_faces > 0:
            self.new_faces += self.unassigned_count(faces)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def maybe_run(self) -> bool:
        """After a commit: start a clustering when enough new unassigned faces were stored
        and none is running here. Returns whether one was started."""
        if self.after_faces <= 0 or self.new_faces < self.after_faces or self.running:
            return False
        seen, self.new_faces = self.new_faces, 0
        if self.background:
            self._thread = threading.Thread(
                target=self._run, args=(seen,), name="autotag-auto-cluster", daemon=True
            )
            self._thread.start()
        else:
            self._run(seen)
        return True

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, seen: int) -> None:
        # Imported here: the DB writer process loads no vision code (OpenCV, dlib) until it
        # first clusters (tests/unit/test_contract.py).
        from autotag.pipeline.people_match import cluster_unassigned

        try:
            conn = self.connect()
        except Exception as exc:  # noqa: BLE001 - Postgres away: try again after more faces
            log.warning("people: automatic clustering skipped (%s)", exc)
            self.new_faces += seen
            return
        try:
            with people.cluster_lock(conn) as got:
                if not got:
                    self.new_faces += seen  # another process is clustering: our turn later
                    return
                self.last = cluster_unassigned(
                    conn,
                    match_distance=self.match_distance,
                    cluster_distance=self.cluster_distance,
                    min_faces=self.min_faces,
                )
                self.runs += 1
                log.info("people: automatic clustering after %d new faces: %s", seen, self.last)
        except Exception as exc:  # noqa: BLE001 - never the writer's problem
            log.warning("people: automatic clustering failed (%s)", exc)
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001, S110
                pass


def for_settings(s: Settings) -> AutoClusterer:
    """The clusterer a writer bolt (photos' or videos') runs: its own connections, and
    ``tagging``'s thresholds (off without face recognition)."""
    t = s.tagging
    return AutoClusterer(
        lambda: database.connect(s.services, migrate_schema=False),
        t.face_cluster_after if t.face_recognition else 0,
        match_distance=t.face_match_distance,
        cluster_distance=t.face_cluster_distance,
        min_faces=t.face_cluster_min_faces,
    )


__all__ = ["AutoClusterer", "for_settings"]
