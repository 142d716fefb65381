"""Video bolt, daemonized: the detectors, the crop embedder and the active bundle are loaded
once, in initialize().

Per segment: find its blob → seek to its first frame → sampled frames → tags, people,
faces, tracks and crop vectors → one result. A segment that cannot be analysed is emitted as
a *failed result* with its reason, so the video writer records it and Storm never replays it.
"""

from __future__ import annotations

import cv2
from streamparse import Bolt

from autotag.config import settings
from autotag.pipeline.tag_step import ActiveTagger
from autotag.pipeline.video_contract import (
    FAILED,
    SEGMENT_RESULT_FIELDS,
    SegmentJob,
    SegmentResult,
    parse_segment_key,
)
from autotag.pipeline.video_step import SamplingOptions, VideoAnalyser
from autotag.storage.blobs import BlobStore
from autotag.vision.features import FeatureOptions, get_feature_set


class VideoBolt(Bolt):
    outputs = SEGMENT_RESULT_FIELDS

    def initialize(self, stormconf, context) -> None:
        s = settings()
        cv2.setNumThreads(s.tagging_threads)
        tagger = ActiveTagger(s)
        options = SamplingOptions(
            sample_secs=s.video_sample_secs,
            static_secs=s.video_static_secs,
            vector_every_secs=s.video_vector_secs,
            budget_secs=s.segment_budget_secs,
            max_pixels=s.max_video_pixels,
        )
        embedder = get_feature_set("cnn", FeatureOptions(s.model_dirs, s.tagging_threads))
        self.analyser = VideoAnalyser(tagger.current, embedder, BlobStore(s.blob_dir), options)
        self.logger.info("video bolt ready (model %s)", tagger.current().model_version)

    def process(self, tup) -> None:
        key, job_json, attempt = tup.values
        try:
            job = SegmentJob.from_json(job_json)
        except (ValueError, KeyError, TypeError) as exc:
            video_id, segment = parse_segment_key(key)
            result = SegmentResult.failed(video_id, segment, f"bad segment job: {exc}")
        else:
            result = self.analyser.analyse(job, int(attempt or 0))
        if result.status == FAILED:
            self.logger.warning("segment %s failed: %s", key, result.reason)
        self.emit(result.to_tuple())
