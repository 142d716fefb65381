"""Autotag bolt, daemonized: the model bundle is loaded once, in initialize(), and kept
(replaced only when another bundle is activated — no resubmit needed).

Per photo: read the blob by its id → decode (OpenCV) → features → every classifier in one
matrix product → tags. A photo that cannot be tagged is emitted as a *failed result* with
its reason, so the DB writer records it and Storm never replays it.
"""

from __future__ import annotations

import time

import cv2
from streamparse import Bolt

from autotag.config import settings
from autotag.pipeline.contract import FAILED, RESULT_FIELDS
from autotag.pipeline.tag_step import ActiveTagger, blob_reader, tag_photo


class AutotagBolt(Bolt):
    outputs = RESULT_FIELDS

    def initialize(self, stormconf, context) -> None:
        t0 = time.monotonic()
        s = settings()
        # One tagging process per core: OpenCV's own thread pool would only oversubscribe.
        cv2.setNumThreads(s.tagging_threads)
        self.blobs = blob_reader(s)  # local blob directory, or the intake host's blob service
        self.max_bytes = s.max_file_bytes
        self.tagger = ActiveTagger(s)
        loaded = self.tagger.current()
        self.logger.info(
            "model %s loaded once in %.2fs (%d classifiers)",
            loaded.model_version,
            time.monotonic() - t0,
            len(loaded.bundle.classes),
        )

    def process(self, tup) -> None:
        photo_id, source, _attempt = tup.values
        result = tag_photo(self.tagger.current(), self.blobs, photo_id, self.max_bytes)
        if result.status == FAILED:
            self.logger.warning("photo %s (%s) failed: %s", photo_id, source, result.reason)
        self.emit(result.to_tuple())
