"""The video bolt's work: one segment of a stored video → a ``SegmentResult``.

Decode the segment's frames (seeking to its first), keep those the sampler picks, and for
each kept frame: tag it with the active bundle, find people (HOG) and faces (BlazeFace), link the
boxes into tracks, and embed a crop with the CNN for the first box of each track and then one
every ``vector_every_secs``. Each face track keeps one face with its descriptor and the known
person it matched (stored in ``faces`` by the video writer, so people are found in videos
too). Nothing of the pixels leaves this function. A segment that
cannot be analysed becomes a failed result with its reason, never an exception, so Storm
never replays it and the video's other segments never pay for it.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from autotag.contract import FaceFound
from autotag.errors import AutotagError
from autotag.pipeline.people_match import PeopleMatcher
from autotag.pipeline.video_contract import (
    DONE,
    FACE,
    PERSON,
    Detection,
    SegmentFace,
    SegmentJob,
    SegmentResult,
)
from autotag.storage.blobs import BlobError, BlobStore
from autotag.vision.faces import Face, FaceDetector, single_threaded_blas
from autotag.vision.features import FeatureSet, l2_normalize
from autotag.vision.people import Box, PeopleDetector, Tracker, crop_square
from autotag.vision.tagger import Tagger
from autotag.vision.video_frames import FrameSampler, SampledFrame, SegmentReader, VideoError

log = logging.getLogger(__name__)

BATCH = 8  # sampled frames tagged together (one CNN batch); bounds memory too


@dataclass(frozen=True)
class SamplingOptions:
    """How densely a segment is looked at (from settings, passed in by the bolt)."""

    sample_secs: float = 0.5
    static_secs: float = 5.0
    vector_every_secs: float = 1.0
    budget_secs: float = 50.0
    max_pixels: int = 3840 * 2160


def blob_file(blobs: BlobStore, blob_id: str) -> Path:
    """The blob's path, which must be a regular file (not a link, FIFO or device): OpenCV
    opens it by name. Its bytes are checked against the id at upload, not per segment."""
    path = blobs.path_for(blob_id)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise BlobError(f"video file is missing: {path}") from None
    if not stat.S_ISREG(st.st_mode):
        raise BlobError(f"video file is not a regular file: {path}")
    return path


class _Tags:
    """Per tag over a segment's analysed frames: the best score and how many frames had it."""

    def __init__(self) -> None:
        self.best: dict[str, float] = {}
        self.frames: dict[str, int] = {}

    def add(self, tags: list[tuple[str, float]]) -> None:
        for tag, score in dict(tags).items():
            self.best[tag] = max(float(score), self.best.get(tag, 0.0))
            self.frames[tag] = self.frames.get(tag, 0) + 1

    def ranked(self) -> list[tuple[str, float, int]]:
        order = sorted(self.best, key=lambda t: (-self.best[t], t))
        return [(t, round(self.best[t], 6), self.frames[t]) for t in order]


class _FaceTracks:
    """Per face track: its representative face (one with a descriptor, matched to a known
    person at the best score, else the sharpest) and how many frames the track had a face."""

    def __init__(self) -> None:
        self.best: dict[int, SegmentFace] = {}
        self.frames: dict[int, int] = {}

    @staticmethod
    def _rank(f: FaceFound) -> tuple[int, float, float]:
        return (f.person_id is not None, f.person_score or 0.0, f.quality or 0.0)

    def add(self, track: int, frame: int, secs: float, face: FaceFound) -> None:
        self.frames[track] = self.frames.get(track, 0) + 1
        if face.embedding is None:
            return
        old = self.best.get(track)
        if old is None or self._rank(face) > self._rank(old.face):
            self.best[track] = SegmentFace(track, frame, secs, 0, face)

    def faces(self) -> list[SegmentFace]:
        return [
            SegmentFace(f.track, f.frame, f.secs, self.frames[t], f.face)
            for t, f in sorted(self.best.items())
        ]


class VideoAnalyser:
    """Holds the detectors and the crop embedder; ``analyse`` runs one segment.

    ``tagger`` is called once per batch so a newly activated bundle is picked up.
    """

    def __init__(
        self,
        tagger: Callable[[], Tagger],
        embedder: FeatureSet,
        blobs: BlobStore,
        options: SamplingOptions,
        *,
        faces: FaceDetector,
        people: PeopleDetector | None = None,
        matcher: PeopleMatcher | None = None,
    ) -> None:
        self.tagger = tagger
        # Faces of known people (pipeline.people_match): each face track's representative
        # face is stored with the person it matched (storage.people), whose name the writer
        # makes a segment tag, so `autotag search NAME` lists the segments with their times.
        self.matcher = matcher
        self.embedder = embedder
        self.blobs = blobs
        self.options = options
        self.people = people or PeopleDetector()
        self.faces = faces

    def analyse(self, job: SegmentJob, attempts: int = 0) -> SegmentResult:
        started = time.monotonic()
        run = _SegmentRun(self, job)
        try:
            run.go(started + self.options.budget_secs)
        except (AutotagError, ValueError, MemoryError, cv2.error) as exc:
            reason = str(exc) if isinstance(exc, AutotagError) else f"{type(exc).__name__}: {exc}"
            return SegmentResult.failed(job.video_id, job.segment, reason, attempts, **run.stats())
        stats = {**run.stats(), "elapsed_secs": round(time.monotonic() - started, 3)}
        if run.decoded == 0:
            reason = (
                f"no frames decoded from {job.start_secs:.1f} s"
                " (the file ends before this segment: truncated?)"
            )
            return SegmentResult.failed(job.video_id, job.segment, reason, attempts, **stats)
        expected = job.stop_frame - job.start_frame
        short = None
        # Some containers only estimate their frame count: a few frames short is no news.
        if expected - run.decoded > max(2, expected // 20):
            short = f"truncated: {run.decoded} of {expected} frames decoded"
        return SegmentResult(
            job.video_id,
            job.segment,
            DONE,
            model_version=run.model_version,
            feature_set=self.embedder.key,
            tags=run.tags.ranked(),
            detections=run.detections,
            stats=stats,
            reason=short,
            attempts=attempts,
            faces=run.faces.faces(),
        )


class _SegmentRun:
    """The state of one segment's analysis (tracks, tags, counters)."""

    def __init__(self, analyser: VideoAnalyser, job: SegmentJob) -> None:
        self.a = analyser
        self.job = job
        o = analyser.options
        every = max(1, round(o.sample_secs * job.fps))
        self.sampler = FrameSampler(every, max(every, round(o.static_secs * job.fps)))
        self.trackers = {PERSON: Tracker(3 * every), FACE: Tracker(3 * every)}
        self.vector_every = max(1, round(o.vector_every_secs * job.fps))
        self.last_vector: dict[tuple[str, int], int] = {}
        self.tags = _Tags()
        self.faces = _FaceTracks()
        self.detections: list[Detection] = []
        self.model_version: str | None = None
        self.decoded = 0
        self.analysed = 0
        self.why: dict[str, int] = {}
        self.size = (0, 0)

    def stats(self) -> dict[str, object]:
        return {
            "start_secs": round(self.job.start_secs, 3),
            "end_secs": round(self.job.end_secs, 3),
            "frames_decoded": self.decoded,
            "frames_analysed": self.analysed,
            "why": dict(self.why),
            "width": self.size[0],
            "height": self.size[1],
        }

    def go(self, deadline: float) -> None:
        path = blob_file(self.a.blobs, self.job.blob_id)
        reader = SegmentReader(
            path,
            self.job.fps,
            self.job.start_frame,
            self.job.stop_frame,
            self.sampler,
            self.a.options.max_pixels,
            deadline,
        )
        batch: list[SampledFrame] = []
        try:
            for frame in reader:
                self.decoded = reader.decoded
                batch.append(frame)
                if len(batch) >= BATCH:
                    self._analyse(batch)
                    batch = []
            if batch:
                self._analyse(batch)
        except VideoError as exc:
            if reader.decoded == 0:
                raise
            raise VideoError(f"{exc} (after {reader.decoded} frames)") from None
        finally:
            self.decoded = reader.decoded

    def _analyse(self, frames: list[SampledFrame]) -> None:
        tagger = self.a.tagger()
        self.model_version = tagger.model_version
        images = [f.bgr for f in frames]
        self.size = (images[0].shape[1], images[0].shape[0])
        with single_threaded_blas():
            results = tagger.tag_images(images)
            crops: list[np.ndarray] = []
            wanting: list[Detection] = []
            for f, r in zip(frames, results, strict=True):
                self.analysed += 1
                tags = {t.tag: t.score for t in r.tags}
                self.why[f.why] = self.why.get(f.why, 0) + 1
                # The tagger's faces when its bundle has the detector (the animal-face rule
                # applied, no second pass); otherwise the analyser's own detector.
                own = tagger.face is not None
                scored = (
                    [(Face(*x.box, 1), x.score) for x in r.faces]
                    if own
                    else self.a.faces.detect_scored(f.bgr)
                )
                # The tagger's faces (with their descriptors) matched to known people, in
                # the order of the FACE boxes below.
                matched = list(r.faces)
                if self.a.matcher is not None and matched:
                    matched, _ = self.a.matcher.match(matched)
                found = {
                    PERSON: self.a.people.detect(f.bgr),
                    FACE: [Box(x.x, x.y, x.w, x.h, round(score, 4)) for x, score in scored],
                }
                for kind, boxes in found.items():
                    if boxes:
                        tags[kind] = max(tags.get(kind, 0.0), max(b.score for b in boxes))
                    tracks = self.trackers[kind].update(f.index, boxes)
                    if kind == FACE and own:
                        for track, ff in zip(tracks, matched, strict=True):
                            self.faces.add(track, f.index, self.job.secs(f.index), ff)
                    for box, track in zip(boxes, tracks, strict=True):
                        d = Detection(
                            f.index,
                            self.job.secs(f.index),
                            kind,
                            box.x,
                            box.y,
                            box.w,
                            box.h,
                            box.score,
                            track,
                        )
                        self.detections.append(d)
                        last = self.last_vector.get((kind, track))
                        if last is None or f.index - last >= self.vector_every:
                            self.last_vector[(kind, track)] = f.index
                            crops.append(crop_square(f.bgr, box))
                            wanting.append(d)
                self.tags.add(list(tags.items()))
            if crops:
                vectors = l2_normalize(self.a.embedder.extract(crops))
                for d, v in zip(wanting, vectors, strict=True):
                    d.vector = v
