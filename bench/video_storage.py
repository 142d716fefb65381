"""Video at ingest, side by side in one run: what is stored per minute of video, frames/s,
and how many people-frames sampling still finds.

- Storage per minute of video: the features autotag keeps (rows of videos, segments,
  detections with their vectors, segment tags, as Postgres stores them) vs the video file
  vs keeping the sampled frames as JPEG (quality 90). SparkWeaver's anchor: ~5.5x.
- Frames/s (decoded frames of video per second of wall time): the running topology, and
  N plain processes x 1 thread (N = cores) each running the same sampled analysis, vs the
  traditional loop that decodes *and analyses every frame*, also in N processes
  (SparkWeaver's anchor: 12.8 vs 7.3 FPS per node).
- People-frames: of the frames where the every-frame loop finds a person, the share within
  half a sampling step of a sampled frame where the sampled analysis found one too.

The storage ratio and the people-frame share do not depend on timing. Frames/s do: run on
an idle machine with the cluster and the topology up (`make up`):

    python bench/video_storage.py                       # vtest.avi (79.5 s), N = cores
    python bench/video_storage.py --seconds 4 --no-topology   # a tiny check, no cluster needed
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2

from autotag.config import settings
from autotag.pipeline.tag_step import load_tagger
from autotag.pipeline.video_contract import PERSON, SegmentJob, SegmentResult
from autotag.pipeline.video_intake import plan_segments, video_limits
from autotag.pipeline.video_step import SamplingOptions, VideoAnalyser
from autotag.storage.blobs import BlobStore
from autotag.vision.faces import FaceDetector
from autotag.vision.feature_sets import FeatureOptions, get_feature_set
from autotag.vision.people import Box
from autotag.vision.video_frames import FrameSampler, SegmentReader, probe

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
JPEG_QUALITY = 90


def cut(src: Path, seconds: float, out_dir: Path) -> Path:
    """The first ``seconds`` of a clip, re-encoded as MJPEG (a tiny input for a check)."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    out = out_dir / f"{src.stem}-{seconds:g}s.avi"
    writer = None
    for _ in range(round(seconds * fps)):
        ok, frame = cap.read()
        if not ok:
            break
        if writer is None:
            size = (frame.shape[1], frame.shape[0])
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
        writer.write(frame)
    cap.release()
    assert writer is not None, f"no frames in {src}"
    writer.release()
    return out


def _analyser(every_frame: bool) -> tuple[VideoAnalyser, BlobStore]:
    s = settings()
    cv2.setNumThreads(1)
    blobs = BlobStore(s.blob_dir)
    options = SamplingOptions(
        sample_secs=1e-6 if every_frame else s.video.video_sample_secs,
        static_secs=1e-6 if every_frame else s.video.video_static_secs,
        vector_every_secs=s.video.video_vector_secs,
        budget_secs=3600.0,
        max_pixels=s.video.max_video_pixels,
    )
    tagger = load_tagger(s.tagging, s.limits)
    embedder = get_feature_set("cnn", FeatureOptions(s.model_dirs, 1))
    faces = FaceDetector.load(s.model_dirs)
    return VideoAnalyser(lambda: tagger, embedder, blobs, options, faces=faces), blobs


def _work(args: tuple[list[str], bool]) -> list[list]:
    """One process: analyse its segments (JSON jobs); returns the results as tuples."""
    jobs, every_frame = args
    analyser, _ = _analyser(every_frame)
    return [analyser.analyse(SegmentJob.from_json(j)).to_tuple() for j in jobs]


def loop(jobs: list[SegmentJob], procs: int, every_frame: bool) -> tuple[float, list]:
    """(wall seconds, results) of `procs` processes x 1 thread over the segments."""
    shares = [[j.to_json() for j in jobs[i::procs]] for i in range(procs)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(procs) as pool:
        pool.map(_work, [([jobs[0].to_json()], every_frame)] * procs)  # load models, warm up
        t0 = time.perf_counter()
        parts = pool.map(_work, [(share, every_frame) for share in shares])
        wall = time.perf_counter() - t0
    return wall, [SegmentResult.from_tuple(r) for part in parts for r in part]


def people_frames(results: list[SegmentResult]) -> set[int]:
    return {d.frame for r in results for d in r.detections if d.kind == PERSON}


def track_recall(
    every: list[SegmentResult], sampled: list[SegmentResult], min_len: int
) -> tuple[int, int]:
    """(tracks of the every-frame loop at least ``min_len`` frames long, how many of them a
    sampled detection overlaps: IoU >= 0.3 with the track's box in the same frame)."""
    boxes: dict[int, list[Box]] = {}
    for r in sampled:
        for d in r.detections:
            if d.kind == PERSON:
                boxes.setdefault(d.frame, []).append(Box(d.x, d.y, d.w, d.h, d.score))
    tracks: dict[tuple[int, int], list] = {}
    for r in every:
        for d in r.detections:
            if d.kind == PERSON:
                tracks.setdefault((r.segment, d.track), []).append(d)
    long = [t for t in tracks.values() if t[-1].frame - t[0].frame + 1 >= min_len]
    found = 0
    for t in long:
        if any(Box(d.x, d.y, d.w, d.h, 0).iou(b) >= 0.3 for d in t for b in boxes.get(d.frame, [])):
            found += 1
    return len(long), found


def jpeg_bytes(path: Path, jobs: list[SegmentJob], s) -> tuple[int, int]:
    """(bytes, frames) of the sampled frames as JPEG: the frames the sampler keeps."""
    total = kept = 0
    for j in jobs:
        every = max(1, round(s.video.video_sample_secs * j.fps))
        sampler = FrameSampler(every, max(every, round(s.video.video_static_secs * j.fps)))
        reader = SegmentReader(
            path, j.fps, j.start_frame, j.stop_frame, sampler, s.video.max_video_pixels
        )
        for frame in reader:
            ok, buf = cv2.imencode(".jpg", frame.bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            total += len(buf)
            kept += 1
    return total, kept


def stored_bytes(video_id: str) -> dict[str, int]:
    """Bytes Postgres holds for a video's rows (pg_column_size of each row), by table."""
    from autotag.storage import database

    out = {}
    with database.connect(settings().services) as conn:
        for table in ("videos", "video_segments", "video_detections", "video_segment_tags"):
            row = conn.execute(
                f"SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM {table} t"  # noqa: S608
                " WHERE video_id = %s",
                (video_id,),
            ).fetchone()
            out[table] = int(row[0])
    return out


def estimated_bytes(results: list[SegmentResult]) -> int:
    """Without Postgres: ~row sizes (header + columns; a vector is 4 bytes a dimension)."""
    n = 0
    for r in results:
        n += 200 + 60 * len(r.tags)
        for d in r.detections:
            n += 90 + (0 if d.vector is None else 24 + 4 * len(d.vector))
    return n


def topology_run(clip: Path, timeout: float) -> tuple[float, str]:
    """Upload the clip (forced) and wait until its video settles: (wall seconds, video id)."""
    from autotag.pipeline import intake
    from autotag.storage import database, videos

    s = settings()
    t0 = time.perf_counter()
    up = intake.Intake(s.services, s.queue, s.limits, s.video, s.blob_dir)
    (rec,) = intake.upload([str(clip)], up, force=True)
    assert rec.status == "queued", rec
    with database.connect(s.services) as conn:
        while videos.video_status(conn, rec.photo_id) in ("queued", "recording"):
            if time.perf_counter() - t0 > timeout:
                raise SystemExit(f"video not analysed within {timeout}s")
            time.sleep(0.2)
    return time.perf_counter() - t0, rec.photo_id


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clip", type=Path, default=VTEST)
    ap.add_argument("--seconds", type=float, default=None, help="Use only the first seconds.")
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--no-topology", action="store_true", help="Skip the cluster run.")
    ap.add_argument("--timeout", type=float, default=1800.0)
    args = ap.parse_args()
    s = settings()
    with tempfile.TemporaryDirectory() as tmp:
        clip = cut(args.clip, args.seconds, Path(tmp)) if args.seconds else args.clip
        blobs = BlobStore(s.blob_dir)
        video_id, blob = blobs.put_file(clip)
        info = probe(blob, video_limits(s.video))
        jobs = plan_segments(video_id, info, s.video.segment_secs)
        minutes = info.duration_secs / 60.0
        print(f"clip      {clip.name}: {info.width}x{info.height} {info.fps:g} fps,"
              f" {info.duration_secs:.1f} s, {len(jobs)} segments; {platform.node()},"
              f" {args.procs} processes x 1 thread")  # fmt: skip

        sampled_wall, sampled = loop(jobs, args.procs, every_frame=False)
        every_wall, every = loop(jobs, args.procs, every_frame=True)
        topo_wall = None
        if not args.no_topology:
            topo_wall, topo_id = topology_run(clip, args.timeout)
            by_table = stored_bytes(topo_id)
            kept = sum(by_table.values())
            how = "in Postgres, " + ", ".join(f"{t} {b:,}" for t, b in by_table.items())
        else:
            kept, how = estimated_bytes(sampled), "estimated from the results (no Postgres)"
        jpeg, jpeg_frames = jpeg_bytes(blob, jobs, s)
        file_bytes = clip.stat().st_size

    print("storage per minute of video")
    print(f"  features kept   {kept / minutes:12,.0f} B/min  ({how})")
    print(
        f"  video file      {file_bytes / minutes:12,.0f} B/min  ({file_bytes / kept:.2f}x features)"
    )
    print(f"  sampled JPEGs   {jpeg / minutes:12,.0f} B/min  ({jpeg / kept:.2f}x features;"
          f" {jpeg_frames} frames, quality {JPEG_QUALITY})")  # fmt: skip

    frames = info.frames
    print("frames/s (decoded video frames per second of wall time)")
    if topo_wall is not None:
        print(f"  topology (sampled)       {frames / topo_wall:8.1f}")
    print(
        f"  {args.procs} procs, sampled        {frames / sampled_wall:8.1f}"
        f"  ({sum(r.stats.get('frames_analysed', 0) for r in sampled)} frames analysed)"
    )
    print(
        f"  {args.procs} procs, every frame    {frames / every_wall:8.1f}"
        f"  ({sum(r.stats.get('frames_analysed', 0) for r in every)} frames analysed)"
    )
    if topo_wall is not None:
        print(f"  topology / every-frame   {every_wall / topo_wall:8.2f}x")  # fmt: skip

    truth = people_frames(every)
    found = people_frames(sampled)
    half = max(1, round(s.video.video_sample_secs * info.fps)) // 2
    covered = {f for f in truth if any(g in found for g in range(f - half, f + half + 1))}
    share = len(covered) / len(truth) if truth else 1.0
    print(f"people-frames: {len(truth)} with a person (every-frame loop); the sampled analysis"
          f" finds {len(covered)} of them within ±{half} frames: {share:.1%}")  # fmt: skip
    every_step = max(1, round(s.video.video_sample_secs * info.fps))
    n_tracks, n_found = track_recall(every, sampled, 2 * every_step)
    print(f"walkers: {n_tracks} every-frame tracks of >= {2 * every_step} frames; a sampled"
          f" detection overlaps {n_found} of them ({n_found / max(n_tracks, 1):.1%})")  # fmt: skip


if __name__ == "__main__":
    main()
