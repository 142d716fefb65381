"""Autotag bolt, daemonized: the model bundle is loaded once, in initialize(), and kept
(replaced only when another bundle is activated — no resubmit needed).

Per photo: decode (OpenCV) → features → every classifier in one matrix product → tags.
A photo that cannot be tagged is emitted as a *failed result* with its reason, so the DB
writer records it and Storm never replays it.
"""

from __future__ import annotations

import time

import cv2
from streamparse import Bolt

from autotag.config import settings
from autotag.pipeline.steps import ActiveTagger, tag_blob


class AutotagBolt(Bolt):
    outputs = [
        "photo_id",
        "status",
        "model_version",
        "feature_set",
        "tags",
        "vector",
        "width",
        "height",
        "reason",
    ]

    def initialize(self, stormconf, context) -> None:
        t0 = time.monotonic()
        s = settings()
        # One tagging process per core: OpenCV's own thread pool would only oversubscribe.
        cv2.setNumThreads(s.tagging_threads)
        self.tagger = ActiveTagger(s)
        loaded = self.tagger.current()
        self.logger.info(
            "model %s loaded once in %.2fs (%d classifiers)",
            loaded.model_version,
            time.monotonic() - t0,
            len(loaded.bundle.classes),
        )

    def process(self, tup) -> None:
        photo_id, blob, source, _attempt = tup.values
        result = tag_blob(self.tagger.current(), photo_id, blob)
        if result.status == "failed":
            self.logger.warning("photo %s (%s) failed: %s", photo_id, source, result.reason)
        self.emit(result.to_tuple())
