"""Autotag bolt, daemonized: the model bundle is loaded once, in initialize(), and kept.

Per photo: decode (OpenCV) → features → every classifier in one matrix product → tags.
A photo that cannot be tagged is emitted as a *failed result* with its reason, so the DB
writer records it and Storm never replays it.
"""

from __future__ import annotations

import time

from streamparse import Bolt

from autotag.config import settings
from autotag.pipeline import tag_blob
from autotag.tagger import Tagger


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
        self.tagger = Tagger.from_active(settings())
        self.logger.info(
            "model %s loaded once in %.2fs (%d classifiers)",
            self.tagger.model_version,
            time.monotonic() - t0,
            len(self.tagger.bundle.classes),
        )

    def process(self, tup) -> None:
        photo_id, blob, source, _attempt = tup.values
        result = tag_blob(self.tagger, photo_id, blob)
        if result.status == "failed":
            self.logger.warning("photo %s (%s) failed: %s", photo_id, source, result.reason)
        self.emit(result.to_tuple())
