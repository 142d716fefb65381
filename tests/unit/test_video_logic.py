"""Video logic without services: container sniffing, the probe's limits on a hostile corpus,
frame sampling and gating, tracks, segment plans and the segment tuple codec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autotag.contract import FaceFound
from autotag.pipeline.camera import display_source, parse_source
from autotag.pipeline.video_contract import (
    DONE,
    Detection,
    SegmentFace,
    SegmentJob,
    SegmentResult,
    parse_segment_key,
)
from autotag.pipeline.video_intake import plan_segments
from autotag.vision.people import Box, Tracker, suppress, svm_score
from autotag.vision.video_frames import (
    FrameSampler,
    VideoError,
    VideoInfo,
    VideoLimits,
    looks_like_video,
    probe,
    sniff_video,
)
from tests.hostile_video import make_hostile_videos, write_clip

LIMITS = VideoLimits(
    max_bytes=64 * 1024 * 1024,
    max_secs=4 * 3600,
    max_segments=2000,
    max_pixels=3840 * 2160,
    segment_secs=10.0,
)


def test_sniff_names_containers_and_refuses_stills() -> None:
    assert sniff_video(b"RIFF\x00\x00\x00\x00AVI LIST") == "AVI"
    assert sniff_video(b"\x00\x00\x00\x18ftypisom\x00\x00") == "MP4"
    assert sniff_video(b"\x00\x00\x00\x18ftypqt  \x00\x00") == "MOV"
    assert sniff_video(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81") == "MKV/WebM"
    assert sniff_video(b"\x00\x00\x00\x18ftypheic\x00\x00") is None  # a HEIC photo
    assert sniff_video(b"\xff\xd8\xff\xe0") is None
    assert looks_like_video(b"hello", "clip.MP4") and not looks_like_video(b"hello", "a.txt")


def test_probe_refuses_the_hostile_corpus_with_reasons(tmp_path: Path) -> None:
    expected = make_hostile_videos(tmp_path)
    for name, (outcome, why) in expected.items():
        if outcome == "rejected":
            with pytest.raises(VideoError) as err:
                probe(tmp_path / name, LIMITS)
            assert why in str(err.value), (name, str(err.value))
        else:
            info = probe(tmp_path / name, LIMITS)
            assert info.fps == pytest.approx(10.0) and info.frames > 0, name


def test_probe_reports_length_and_limits_segments(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.avi", 12.0)
    info = probe(clip, LIMITS)
    assert (info.format, info.width, info.height, info.frames) == ("AVI", 320, 240, 120)
    assert info.segment_count(10.0) == 2
    few = VideoLimits(LIMITS.max_bytes, LIMITS.max_secs, 1, LIMITS.max_pixels, 10.0)
    with pytest.raises(VideoError, match="2 segments, limit 1"):
        probe(clip, few)
    with pytest.raises(VideoError, match="limit 100 bytes"):
        probe(clip, VideoLimits(100, LIMITS.max_secs, 10, LIMITS.max_pixels, 10.0))


def test_plan_covers_every_frame_once() -> None:
    jobs = plan_segments("a" * 64, VideoInfo("AVI", 10.0, 795, 768, 576), 10.0)
    assert [(j.start_frame, j.stop_frame) for j in jobs][-2:] == [(600, 700), (700, 795)]
    assert len(jobs) == 8 and jobs[0].start_frame == 0
    assert all(a.stop_frame == b.start_frame for a, b in zip(jobs, jobs[1:], strict=False))
    assert jobs[-1].end_secs == pytest.approx(79.5)


def _thumbs(n: int, moving: bool) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (90, 160), dtype=np.uint8)
    out = []
    for i in range(n):
        t = base.copy()
        if moving:
            t[30:60, 2 * i : 2 * i + 10] = 255
        out.append(t)
    return out


def test_sampler_keeps_the_grid_while_things_move() -> None:
    sampler = FrameSampler(every=5, static_every=50)
    kept = [i for i, t in enumerate(_thumbs(40, moving=True)) if sampler.consider(t)]
    assert kept == list(range(0, 40, 5))


def test_sampler_looks_at_still_footage_rarely_and_at_cuts_at_once() -> None:
    sampler = FrameSampler(every=5, static_every=50)
    still = _thumbs(120, moving=False)
    kept = [i for i, t in enumerate(still) if sampler.consider(t)]
    assert kept == [0, 50, 100]
    cut = 255 - still[0]
    assert sampler.consider(cut) == "scene"  # frame 120, a new scene: analysed off-grid too


def test_tracker_follows_a_walker_and_splits_strangers() -> None:
    tracker = Tracker(max_gap=15)
    ids = [tracker.update(i * 5, [Box(100 + 4 * i, 50, 60, 120, 0.8)])[0] for i in range(6)]
    assert len(set(ids)) == 1
    both = tracker.update(30, [Box(124, 50, 60, 120, 0.8), Box(400, 60, 60, 120, 0.7)])
    assert both[0] == ids[0] and both[1] != ids[0]
    assert tracker.update(100, [Box(124, 50, 60, 120, 0.8)])[0] not in both  # gap too long


def test_suppress_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = [Box(0, 0, 64, 128, 0.5), Box(4, 4, 64, 128, 0.8), Box(300, 0, 64, 128, 0.6)]
    assert suppress(boxes) == [boxes[1], boxes[2]]
    assert 0 < svm_score(0.6) < svm_score(3.0) < 1


def test_segment_job_and_result_survive_the_tuple_codec() -> None:
    job = SegmentJob("b" * 64, 3, "c" * 64, 25.0, 750, 1000, offset_secs=2.5, camera="gate")
    assert SegmentJob.from_json(job.to_json()) == job
    assert parse_segment_key(job.key) == ("b" * 64, 3)
    assert job.secs(750) == pytest.approx(32.5)
    vec = np.linspace(-1, 1, 1280).astype(np.float32)
    result = SegmentResult(
        job.video_id,
        3,
        DONE,
        model_version="m1",
        feature_set="cnn@1",
        tags=[("person", 0.9, 4)],
        detections=[Detection(750, 32.5, "person", 1, 2, 3, 4, 0.7, 0, vec)],
        stats={"frames_decoded": 250},
        faces=[
            SegmentFace(
                2, 760, 32.9, 5, FaceFound((5, 6, 70, 80), 0.9, 0.4, vec[:128], "d1", 7, 0.8)
            )
        ],
    )
    wire = json.loads(json.dumps(result.to_tuple()))  # Storm's multilang is JSON
    back = SegmentResult.from_tuple(wire)
    assert back.tags == result.tags and back.stats == result.stats
    assert np.array_equal(back.detections[0].vector, vec)
    (face,) = back.faces
    assert (face.track, face.frame, face.secs, face.frames) == (2, 760, 32.9, 5)
    assert face.face.box == (5, 6, 70, 80) and face.face.person_id == 7
    assert np.array_equal(np.asarray(face.face.embedding, np.float32), vec[:128])
    # A tuple from a bolt started before faces travelled: no faces, nothing else lost.
    old = SegmentResult.from_tuple(wire[:10])
    assert old.faces == [] and old.tags == result.tags
    with pytest.raises(ValueError):
        parse_segment_key("no-colon")


def test_camera_sources_are_parsed_and_credentials_never_stored(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.avi", 0.5)
    assert parse_source(str(clip)) == (str(clip.resolve()), True)
    assert parse_source("0") == (0, False)
    assert parse_source("rtsp://cam.local/stream")[1] is False
    assert display_source("rtsp://admin:secret@10.0.0.5/live") == "rtsp://10.0.0.5/live"
    with pytest.raises(Exception, match="camera source"):
        parse_source(str(tmp_path / "missing.avi"))
