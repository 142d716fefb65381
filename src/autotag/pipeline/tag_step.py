"""The autotag bolt's work: one stored photo → a ``PhotoResult``.

A photo that cannot be tagged becomes a *failed result* with its reason, never an
exception, so Storm never replays it and its neighbours never pay for it.
"""

from __future__ import annotations

import logging
import time

from autotag.config import Settings
from autotag.errors import AutotagError, ServiceError
from autotag.pipeline.contract import PhotoResult
from autotag.storage.blobs import BlobReader, BlobStore
from autotag.storage.http_blobs import HttpBlobStore
from autotag.vision.bundle import active_bundle_id
from autotag.vision.decode import DecodeLimits
from autotag.vision.features import FeatureOptions
from autotag.vision.tagger import Tagger

log = logging.getLogger(__name__)


def load_tagger(settings: Settings, bundle_id: str | None = None) -> Tagger:
    """A Tagger for bundle ``bundle_id`` (default: the active one) with these settings'
    decode limits, tagging threads and tag cut-offs: the bolt's own, for anyone to build."""
    return Tagger.load(
        settings.models_dir,
        bundle_id,
        feature_options=FeatureOptions(settings.model_dirs, settings.tagging_threads),
        limits=DecodeLimits(settings.max_file_bytes, settings.max_pixels, settings.max_dimension),
        min_score=settings.min_tag_score,
        max_tags=settings.max_tags,
    )


def blob_reader(settings: Settings) -> BlobReader:
    """Where this host's workers read photos: the local blob directory, or the intake host's
    blob service when ``blob_url`` is set (with the token copied into secrets/)."""
    if not settings.blob_url:
        return BlobStore(settings.blob_dir)
    try:
        token = settings.blob_token_file.read_text().strip()
    except OSError as exc:
        raise ServiceError(
            f"blob_url is {settings.blob_url} but its token {settings.blob_token_file} cannot be "
            f"read ({exc.strerror}): copy it from the intake host's run directory"
        ) from None
    return HttpBlobStore(settings.blob_url, token)


class ActiveTagger:
    """A Tagger for the active bundle that follows ``models/ACTIVE``: when another bundle is
    activated, the next photo after the check interval is tagged with it (no resubmit)."""

    def __init__(self, settings: Settings, check_every_secs: float = 5.0) -> None:
        self.settings = settings
        self.check_every = check_every_secs
        self.tagger = load_tagger(settings)
        self._checked = time.monotonic()

    def current(self) -> Tagger:
        if time.monotonic() - self._checked >= self.check_every:
            self._checked = time.monotonic()
            active = active_bundle_id(self.settings.models_dir)
            if active and active != self.tagger.model_version:
                log.info(
                    "active model changed: %s -> %s; loading it", self.tagger.model_version, active
                )
                self.tagger = load_tagger(self.settings)
        return self.tagger


def tag_photo(
    tagger: Tagger, blobs: BlobReader, photo_id: str, max_bytes: int | None = None
) -> PhotoResult:
    """Tag one stored photo, found by its id and checked against it; any problem with the
    photo becomes a failed result with a reason. A blob service that cannot be reached is not
    the photo's fault: that ServiceError propagates, so Storm fails the tuple and replays it."""
    try:
        data = blobs.read(photo_id, max_bytes)
        return PhotoResult.tagged(photo_id, tagger.tag_bytes(data))
    except ServiceError:
        raise
    except (AutotagError, ValueError, MemoryError) as exc:
        return PhotoResult.failed(photo_id, _reason(exc))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, AutotagError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
