"""The autotag bolt's work: one stored photo → a ``PhotoResult``.

A photo that cannot be tagged becomes a *failed result* with its reason, never an
exception, so Storm never replays it and its neighbours never pay for it. What no ``except``
can catch (a native decoder crash, the OOM killer, a decode that never returns) takes the
process down; so the photo is marked *in progress* in Redis while it is tagged, and after a
crash the spout charges an attempt only to the photo that carried that mark
(``pipeline.source``). The one exception that does escape is a blob service that cannot be
reached (a worker on another host): not the photo's fault, so Storm replays it. The model
follows ``models/ACTIVE``; a bundle that fails to load leaves the previous one serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from autotag.config import LimitsSettings, ServiceSettings, TaggingSettings
from autotag.contract import PhotoResult
from autotag.errors import AutotagError, ServiceError
from autotag.pipeline.people_match import PeopleMatcher
from autotag.storage import credentials
from autotag.storage.blobs import BlobReader, BlobStore
from autotag.storage.database import connect
from autotag.storage.http_blobs import HttpBlobStore
from autotag.vision.bundle import active_bundle_id
from autotag.vision.decode import DecodeLimits
from autotag.vision.feature_sets import FeatureOptions
from autotag.vision.tagger import Tagger

log = logging.getLogger(__name__)


def decode_limits(limits: LimitsSettings) -> DecodeLimits:
    """What one untrusted photo may cost (the bolt's limits; training reads photos alike)."""
    return DecodeLimits(
        limits.max_file_bytes,
        limits.max_pixels,
        limits.max_dimension,
        limits.max_decode_bytes,
    )


def feature_options(tagging: TaggingSettings) -> FeatureOptions:
    """Where shipped model files are found, and the threads one tagging process may use."""
    return FeatureOptions(tagging.model_dirs, tagging.tagging_threads)


def load_tagger(
    tagging: TaggingSettings, limits: LimitsSettings, bundle_id: str | None = None
) -> Tagger:
    """A Tagger for bundle ``bundle_id`` (default: the active one) with these decode limits,
    tagging threads and tag cut-offs: the bolt's own, for anyone to build."""
    tagger = Tagger.load(
        tagging.models_dir,
        bundle_id,
        feature_options=feature_options(tagging),
        limits=decode_limits(limits),
        min_score=tagging.min_tag_score,
        max_tags=tagging.max_tags,
        reduced_decode=tagging.reduced_decode,
        face_min_px=tagging.face_min_px if tagging.face_recognition else None,
        person_detection=tagging.person_detection,
    )
    tagger.read_metadata = tagging.read_metadata
    return tagger


def blob_reader(services: ServiceSettings, blob_dir: Path) -> BlobReader:
    """Where this host's workers read photos: the local blob directory, or the intake host's
    blob service when ``blob_url`` is set (with the token copied into secrets/)."""
    if not services.blob_url:
        return BlobStore(blob_dir)
    try:
        token = credentials.read(services.run_dir, credentials.BLOB)
    except ServiceError as exc:
        raise ServiceError(
            f"blob_url is {services.blob_url} but its token cannot be read ({exc}): copy "
            "secrets/ from the intake host's run directory"
        ) from None
    return HttpBlobStore(services.blob_url, token)


class ActiveTagger:
    """A Tagger for the active bundle that follows ``models/ACTIVE``: when another bundle is
    activated, the next photo after the check interval is tagged with it (no resubmit).

    A bundle that cannot be loaded (corrupt, altered, a manifest that lies about its id) is
    logged as an error and the previous model keeps serving; loading it is tried again every
    ``retry_secs`` and whenever ``ACTIVE`` names another bundle.
    """

    def __init__(
        self,
        tagging: TaggingSettings,
        limits: LimitsSettings,
        check_every_secs: float = 5.0,
        retry_secs: float = 60.0,
        *,
        load: Callable[[TaggingSettings, LimitsSettings], Tagger] = load_tagger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tagging = tagging
        self.limits = limits
        self.check_every = check_every_secs
        self.retry_secs = retry_secs
        self.load = load
        self.clock = clock
        self.tagger = load(tagging, limits)
        self._checked = clock()
        self.failed: tuple[str, float] | None = None  # (bundle id, when) of the last bad load

    def current(self) -> Tagger:
        now = self.clock()
        if now - self._checked < self.check_every:
            return self.tagger
        self._checked = now
        active = active_bundle_id(self.tagging.models_dir)
        if not active or active == self.tagger.model_version:
            self.failed = None
            return self.tagger
        if self.failed and self.failed[0] == active and now - self.failed[1] < self.retry_secs:
            return self.tagger
        log.info("active model changed: %s -> %s; loading it", self.tagger.model_version, active)
        try:
            self.tagger = self.load(self.tagging, self.limits)
            self.failed = None
        except Exception as exc:  # noqa: BLE001 - whatever breaks the new model, keep the old
            self.failed = (active, now)
            log.error(
                "MODEL NOT LOADED: the active bundle %s cannot be used (%s); still tagging with "
                "%s. Activate a good bundle (`autotag models activate ID`); retrying in %.0fs",
                active,
                exc,
                self.tagger.model_version,
                self.retry_secs,
            )
        return self.tagger


def tag_photo(
    tagger: Tagger,
    blobs: BlobReader,
    photo_id: str,
    max_bytes: int | None = None,
    matcher: PeopleMatcher | None = None,
) -> PhotoResult:
    """Tag one stored photo, found by its id and checked against it; any exception, whatever
    its type, becomes a failed result with a reason. A blob service that cannot be reached is
    not the photo's fault: that ServiceError propagates, so Storm fails the tuple and replays
    it."""
    try:
        data = blobs.read(photo_id, max_bytes)
        outcome = tagger.tag_bytes(data)
        if matcher is not None:  # faces of known people: their person and name tags
            outcome.faces, named = matcher.match(outcome.faces)
            outcome.tags = [*outcome.tags, *named]
        return PhotoResult.tagged(photo_id, outcome)
    except ServiceError:
        raise
    except Exception as exc:  # noqa: BLE001 - one photo's failure must never crash the bolt
        return PhotoResult.failed(photo_id, _reason(exc))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, AutotagError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "not enough memory to tag this photo"
    return f"{type(exc).__name__}: {exc}"


class WorkMarks(Protocol):
    """Where the in-progress mark lives (``storage.item_stream.ItemStream``)."""

    def mark_working(self, photo_id: str, ttl_secs: int) -> None: ...
    def clear_working(self, photo_id: str) -> None: ...


class TagStep:
    """One photo at a time: mark it in progress, tag it, clear the mark.

    ``current`` is the photo being tagged; a bolt stopped from outside (its worker shutting
    down because a neighbouring process crashed) clears that mark before it exits, so the
    photo is not charged for a crash it did not cause. ``before_tagging`` is a test hook.
    """

    def __init__(
        self,
        tagger: ActiveTagger,
        blobs: BlobReader,
        marks: WorkMarks,
        *,
        max_bytes: int | None = None,
        mark_ttl_secs: int = 300,
        before_tagging: Callable[[str], None] | None = None,
        matcher: PeopleMatcher | None = None,
    ) -> None:
        self.tagger = tagger
        self.matcher = matcher  # known people's faces (pipeline.people_match)
        self.blobs = blobs
        self.marks = marks
        self.max_bytes = max_bytes
        self.mark_ttl_secs = mark_ttl_secs
        self.before_tagging = before_tagging
        self.current: str | None = None

    def run(self, photo_id: str) -> PhotoResult:
        tagger = self.tagger.current()  # a model reload is not the photo's doing: unmarked
        try:
            self.marks.mark_working(photo_id, self.mark_ttl_secs)
            self.current = photo_id
        except Exception as exc:  # noqa: BLE001 - Redis away: tag anyway, just unmarked
            log.warning("photo %s: could not mark it in progress (%s)", photo_id, exc)
        try:
            if self.before_tagging is not None:
                self.before_tagging(photo_id)
            return tag_photo(tagger, self.blobs, photo_id, self.max_bytes, self.matcher)
        finally:
            self.release()

    def release(self, marks: WorkMarks | None = None) -> None:
        """Clear the current photo's mark (through ``marks`` if given: a signal handler
        must not reuse a connection it may have interrupted)."""
        photo_id, self.current = self.current, None
        if photo_id is None:
            return
        try:
            (marks or self.marks).clear_working(photo_id)
        except Exception as exc:  # noqa: BLE001 - the mark expires by itself
            log.warning("photo %s: could not clear its in-progress mark (%s)", photo_id, exc)


def people_matcher(tagging: TaggingSettings, services: ServiceSettings) -> PeopleMatcher | None:
    """The bolt's matcher of faces to known people (None when face recognition is off)."""
    if not tagging.face_recognition:
        return None
    return PeopleMatcher(
        lambda: connect(services, migrate_schema=False),
        max_distance=tagging.face_match_distance,
    )
