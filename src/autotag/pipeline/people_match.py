"""People in the stream: each new face joins the nearest known person, in the autotag bolt.

``PeopleMatcher`` holds the known people's reference descriptors in memory
(``storage.people.references``) and checks ``people_version`` every ``check_every_secs``
(2 s): a name, a merge, a removed face, a forget or a clustering bumps it, and the next
photo is matched against the new references — no resubmit, no re-clustering. A face with a
descriptor joins the nearest person within ``max_distance`` (``vision.face_identity``);
when that person has a name, the photo gets a tag of kind ``person`` with it. The DB writer
re-checks every assignment against the database (refused, merged, forgotten), so stale
references cannot do harm. Postgres being away costs recognition, never the photo.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from autotag.contract import FaceFound, Tag
from autotag.storage import people
from autotag.vision.face_identity import (
    CLUSTER_DISTANCE,
    CLUSTER_MIN_FACES,
    MATCH_DISTANCE,
    cluster,
    match_score,
    nearest_person,
)
from autotag.vision.people_index import PeopleIndex

log = logging.getLogger(__name__)


class PeopleMatcher:
    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        max_distance: float = MATCH_DISTANCE,
        check_every_secs: float = 2.0,
        reload_every_secs: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connect = connect
        self.max_distance = max_distance
        self.check_every = check_every_secs
        self.reload_every = reload_every_secs
        self.clock = clock
        self.conn: Any = None
        self.refs: people.References | None = None
        self._index: PeopleIndex | None = None
        self._checked = -1e18
        self._loaded = -1e18

    def _db(self) -> Any:
        if self.conn is None or self.conn.closed:
            self.conn = self.connect()
        return self.conn

    def current(self) -> people.References | None:
        """The references, reloaded when ``people_version`` moved (checked every few
        seconds) and every ``reload_every_secs`` (faces the stream matched since)."""
        now = self.clock()
        if now - self._checked < self.check_every and self.refs is not None:
            return self.refs
        self._checked = now
        try:
            conn = self._db()
            refs = self.refs
            stale = refs is None or now - self._loaded >= self.reload_every
            if refs is not None and not stale and people.version(conn) != refs.version:
                stale = True
            if stale:
                self.refs = people.references(conn)
                self._index = PeopleIndex(self.refs.embeddings, self.refs.owners)
                self._loaded = now
                log.info(
                    "people: %d reference faces of %d people (version %d)",
                    len(self.refs.owners),
                    len(self.refs.names),
                    self.refs.version,
                )
        except Exception as exc:  # noqa: BLE001 - Postgres away: keep what we have
            log.warning("people: references not reloaded (%s)", exc)
            if self.conn is not None:
                try:
                    self.conn.close()
                except Exception:  # noqa: BLE001, S110
                    pass
            self.conn = None
        return self.refs

    def match(self, faces: list[FaceFound]) -> tuple[list[FaceFound], list[Tag]]:
        """The faces with their matched person, and a ``person`` tag per named person."""
        if not any(f.embedding is not None for f in faces):
            return faces, []
        refs = self.current()
        index = self._index
        if refs is None or len(refs.owners) == 0 or index is None:
            return faces, []
        out: list[FaceFound] = []
        best: dict[str, float] = {}
        for f in faces:
            if f.embedding is None:
                out.append(f)
                continue
            # Centroid bounds first, then only the nearest few people's references: the
            # exhaustive answer at a fraction of the cost (vision.people_index).
            found = index.nearest(np.asarray(f.embedding, dtype=np.float32), self.max_distance)
            if found is None:
                out.append(f)
                continue
            pid, distance = found
            score = match_score(distance, self.max_distance)
            out.append(f._replace(person_id=pid, person_score=score))
            name = refs.names.get(pid)
            if name:
                best[name] = max(best.get(name, 0.0), score)
        return out, [Tag(name, s, "person") for name, s in sorted(best.items())]


def cluster_unassigned(
    conn: Any,
    *,
    match_distance: float = MATCH_DISTANCE,
    cluster_distance: float = CLUSTER_DISTANCE,
    min_faces: int = CLUSTER_MIN_FACES,
) -> dict[str, int]:
    """Faces nobody is assigned to: each joins the nearest known person within
    ``match_distance``; the rest are clustered (``vision.face_identity.cluster``) and every
    cluster becomes a new unnamed person. Returns the counts."""
    ids, emb = people.unassigned(conn)
    refs = people.references(conn)
    index = PeopleIndex(refs.embeddings, refs.owners)
    to_known: list[tuple[int, int, float]] = []
    rest: list[int] = []
    for i, face_id in enumerate(ids):
        found = index.nearest(emb[i], match_distance)
        if found is None:
            rest.append(i)
        else:
            to_known.append((face_id, found[0], match_score(found[1], match_distance)))
    labels = cluster(emb[rest], max_distance=cluster_distance, min_faces=min_faces)
    groups: dict[int, list[int]] = {}
    for i, label in zip(rest, labels, strict=True):
        if label >= 0:
            groups.setdefault(int(label), []).append(ids[i])
    stored = people.assign(conn, to_known, list(groups.values()))
    grouped = sum(len(g) for g in groups.values())
    return {
        "faces_seen": len(ids),
        **stored,
        "faces_in_new_people": grouped,
        "left_unassigned": len(ids) - len(to_known) - grouped,
    }


def gather(conn: Any, person_id: int, max_distance: float = MATCH_DISTANCE) -> int:
    """After a person is named: the stored faces nobody has that are within ``max_distance``
    of one of theirs join them, as the stream would have put them (name someone once, find
    their other photos). Returns how many joined."""
    mine = people.embeddings_of(conn, person_id)
    if len(mine) == 0:
        return 0
    ids, emb = people.unassigned(conn)
    owners = np.full(len(mine), person_id, dtype=np.int64)
    to_known = []
    for i, face_id in enumerate(ids):
        found = nearest_person(emb[i], mine, owners, max_distance)
        if found is not None:
            to_known.append((face_id, person_id, match_score(found[1], max_distance)))
    if not to_known:
        return 0
    return people.assign(conn, to_known, [], how="match")["joined_known"]
