"""Video bolt, daemonized: the detectors, the crop embedder and the active bundle are loaded
once, in initialize().

Per segment: find its blob → seek to its first frame → sampled frames → tags, people,
faces, tracks and crop vectors → one result. A segment that cannot be analysed is emitted as
a *failed result* with its reason, so the video writer records it and Storm never replays it.
While a segment is analysed it carries an in-progress mark on the segment stream (as photos
do), so a crash while analysing it charges that segment an attempt and a crash elsewhere does
not.
"""

from __future__ import annotations

import cv2
from streamparse import Bolt

from autotag.config import settings
from autotag.pipeline.tag_step import ActiveTagger, people_matcher
from autotag.pipeline.video_contract import (
    FAILED,
    SEGMENT_RESULT_FIELDS,
    SegmentJob,
    SegmentResult,
    parse_segment_key,
)
from autotag.pipeline.video_step import SamplingOptions, VideoAnalyser
from autotag.storage.blobs import BlobStore
from autotag.storage.item_stream import segment_stream
from autotag.vision.faces import FaceDetector
from autotag.vision.feature_sets import FeatureOptions, get_feature_set


class VideoBolt(Bolt):
    outputs = SEGMENT_RESULT_FIELDS

    def initialize(self, stormconf, context) -> None:
        s = settings()
        cv2.setNumThreads(s.tagging.tagging_threads)
        tagger = ActiveTagger(s.tagging, s.limits)
        options = SamplingOptions(
            sample_secs=s.video.video_sample_secs,
            static_secs=s.video.video_static_secs,
            vector_every_secs=s.video.video_vector_secs,
            budget_secs=s.video.segment_budget_secs,
            max_pixels=s.video.max_video_pixels,
        )
        embedder = get_feature_set("cnn", FeatureOptions(s.model_dirs, s.tagging.tagging_threads))
        faces = FaceDetector.load(s.model_dirs)
        self.analyser = VideoAnalyser(
            tagger.current,
            embedder,
            BlobStore(s.blob_dir),
            options,
            faces=faces,
            matcher=people_matcher(s.tagging, s.services),
        )
        self.marks = segment_stream(s.services, s.queue)
        timeout = int(stormconf.get("topology.message.timeout.secs", 120))
        self.mark_ttl_secs = 2 * timeout + 60  # outlives a worker restart and a tuple timeout
        self.logger.info("video bolt ready (model %s)", tagger.current().model_version)

    def process(self, tup) -> None:
        key, job_json, attempt = tup.values
        try:
            job = SegmentJob.from_json(job_json)
        except (ValueError, KeyError, TypeError) as exc:
            video_id, segment = parse_segment_key(key)
            result = SegmentResult.failed(video_id, segment, f"bad segment job: {exc}")
        else:
            result = self._analyse_marked(key, job, int(attempt or 0))
        if result.status == FAILED:
            self.logger.warning("segment %s failed: %s", key, result.reason)
        self.emit(result.to_tuple())

    def _analyse_marked(self, key: str, job: SegmentJob, attempt: int) -> SegmentResult:
        try:
            self.marks.mark_working(key, self.mark_ttl_secs)
        except Exception as exc:  # noqa: BLE001 - Redis away: analyse anyway, just unmarked
            self.logger.warning("segment %s: could not mark it in progress (%s)", key, exc)
        try:
            return self.analyser.analyse(job, attempt)
        finally:
            try:
                self.marks.clear_working(key)
            except Exception as exc:  # noqa: BLE001 - the mark expires by itself
                self.logger.warning("segment %s: could not clear its mark (%s)", key, exc)
