"""``autotag video show | camera | reid``: videos and cameras (upload a video with
``autotag upload``)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import click

from autotag.config import settings
from autotag.errors import AutotagError


def clock(secs: float | None) -> str:
    """Seconds as m:ss.s (h:mm:ss.s past an hour)."""
    if secs is None:
        return "-"
    m, s = divmod(float(secs), 60.0)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"


def _dump(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, default=str))


@click.group()
def video() -> None:
    """Uploaded videos and camera runs: their segments, tags and detections."""


@video.command("list")
@click.option(
    "--status", type=click.Choice(["recording", "queued", "done", "failed"]), default=None
)
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def list_(status: str | None, limit: int, as_json: bool) -> None:
    """Videos and camera runs, newest first, with why any failed."""
    from autotag.storage import database, videos

    s = settings()
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        rows = videos.list_videos(conn, status, limit)
    if as_json:
        _dump(rows)
        return
    if not rows:
        click.echo("no videos", err=True)
    for r in rows:
        where = f"camera {r['camera']}" if r["kind"] == "camera" else (r["source"] or "-")
        line = f"{r['video_id']}  {r['status']:<9} {clock(r['duration_secs']):>9}  {where}"
        click.echo(line + (f"  ({r['reason']})" if r["reason"] else ""))


@video.command("show")
@click.argument("video_id")
@click.option("--detections", "with_detections", is_flag=True, help="List every box too.")
@click.option("--json", "as_json", is_flag=True)
def show(video_id: str, with_detections: bool, as_json: bool) -> None:
    """The timeline of VIDEO_ID (or a unique prefix): tags and detections per segment."""
    from autotag.storage import database, videos

    s = settings()
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        vid = videos.resolve_video_id(conn, video_id)
        info = None if vid is None else videos.show_video(conn, vid)
        if vid is None or info is None:
            raise AutotagError(f"no video {video_id!r} (upload one with `autotag upload`)")
        boxes = videos.detections(conn, vid) if with_detections else []
    if as_json:
        _dump({**info.as_dict(), **({"detections": boxes} if with_detections else {})})
        return
    v = info.video
    where = f"camera {v['camera']}" if v["kind"] == "camera" else "upload"
    click.echo(f"video     {v['video_id']}  ({where}: {v['source'] or '-'})")
    click.echo(f"status    {v['status']}" + (f" ({v['reason']})" if v["reason"] else ""))
    if v["fps"]:
        click.echo(
            f"format    {v['format'] or '-'} {v['width']}x{v['height']} {v['fps']:.2f} fps,"
            f" {clock(v['duration_secs'])}, {v['bytes'] or 0} bytes, {v['segments']} segments"
        )
    for seg in info.segments:
        span = f"{clock(seg['start_secs'])}-{clock(seg['end_secs'])}"
        people = seg["detections"].get("person", {})
        faces = seg["detections"].get("face", {})
        found = f"{people.get('boxes', 0)} person boxes in {people.get('tracks', 0)} tracks"
        if faces:
            found += f", {faces.get('boxes', 0)} face boxes"
        frames = f"{seg['frames_analysed'] or 0}/{seg['frames_decoded'] or 0} frames"
        line = f"  #{seg['segment']:<3d} {span:>15}  {seg['status']:<6} {frames:>12}  {found}"
        click.echo(line)
        if seg["reason"]:
            click.echo(f"        {seg['reason']}")
        if seg["tags"]:
            shown = ", ".join(f"{t['tag']} {t['score']:.2f}" for t in seg["tags"][:6])
            click.echo(f"        {shown}")
    for d in boxes:
        vec = "vector" if d["has_vector"] else ""
        click.echo(
            f"  det {d['detection_id']:<8d} #{d['segment']:<3d} {clock(d['at_secs']):>8}"
            f"  {d['kind']:<6} track {d['track']:<3d} box {d['x']},{d['y']} {d['w']}x{d['h']}"
            f"  {d['score']:.2f}  {vec}".rstrip()
        )


@click.command()
@click.argument("source")
@click.option("--name", required=True, help="The camera's name (kept with its detections).")
@click.option("--segment-secs", type=click.FloatRange(1.0, 600.0), default=None)
@click.option("--max-secs", type=click.FloatRange(0.1), default=None, help="Stop after this.")
@click.option(
    "--stall-secs",
    type=click.FloatRange(0.5, 600.0),
    default=10.0,
    show_default=True,
    help="End the run when no frame arrives for this long.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per segment, then the run.")
def camera(
    source: str,
    name: str,
    segment_secs: float | None,
    max_secs: float | None,
    stall_secs: float,
    as_json: bool,
) -> None:
    """Record SOURCE (a device number, a stream URL, or a file played at its real frame
    rate) as camera NAME: segments are queued for analysis as they are cut.

    Runs until the source ends, --max-secs pass, or Ctrl-C; exits 1 if no frame came.
    """
    from autotag.pipeline.camera import CameraRecorder

    s = settings()
    stop = threading.Event()

    def on_term(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    def report(job: Any) -> None:
        if as_json:
            click.echo(json.dumps({"segment": job.segment, "video_id": job.video_id,
                                   "start_secs": round(job.start_secs, 3),
                                   "end_secs": round(job.end_secs, 3)}))  # fmt: skip
        else:
            click.echo(
                f"segment {job.segment}  {clock(job.start_secs)}-{clock(job.end_secs)} queued"
            )

    recorder = CameraRecorder(
        s.services,
        s.queue,
        s.video,
        source,
        name,
        blob_dir=s.blob_dir,
        work_dir=s.run_dir / "camera",
        segment_secs=segment_secs,
        stall_secs=stall_secs,
        on_segment=report,
    )
    if not as_json:
        click.echo(f"camera {name}: video {recorder.run.video_id}", err=True)
    run = recorder.record(max_secs=max_secs, stop=stop)
    if as_json:
        click.echo(json.dumps(run.__dict__))
    else:
        tail = f" ({run.reason})" if run.reason else ""
        click.echo(f"{run.status}: {run.segments} segments, {run.frames} frames{tail}", err=True)
    if run.status == "failed":
        raise AutotagError(f"camera {name}: {run.reason}")


@click.command()
@click.argument("target")
@click.option("--top", "-k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def reid(target: str, top: int, as_json: bool) -> None:
    """The same person elsewhere: TARGET is a detection id (see `autotag video show
    --detections`) or an image of the person. Lists the best match in each other segment
    of every video and camera, most similar first."""
    from autotag.similarity.reid import ReidIndex, embed_image
    from autotag.storage import database

    s = settings()
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        index = ReidIndex(conn)
        searched = index.load()
        if target.strip().isdigit():
            query, hits = index.like_detection(int(target), top)
        elif Path(target).is_file():
            hits, query = _reid_image(s, index, Path(target), top, embed_image), {"file": target}
        else:
            raise AutotagError(f"{target!r} is neither a detection id nor an image file")
    if as_json:
        _dump({"query": query, "searched": searched, "results": hits})
        return
    click.echo(f"{len(hits)} segments with a similar person ({searched} vectors searched)")
    for h in hits:
        where = f"camera {h['camera']}" if h["camera"] else (h["source"] or "")
        click.echo(
            f"{h['similarity']:.4f}  det {h['detection_id']:<8d} {h['video_id'][:12]} #{h['segment']}"
            f" {clock(h['at_secs'])}  box {h['x']},{h['y']} {h['w']}x{h['h']}  {where}".rstrip()
        )


def _reid_image(s: Any, index: Any, path: Path, top: int, embed: Any) -> list[dict[str, Any]]:
    from autotag.vision.decode import DecodeLimits, decode_file
    from autotag.vision.feature_sets import FeatureOptions, get_feature_set
    from autotag.vision.people import PeopleDetector

    lim = s.limits
    image = decode_file(path, DecodeLimits(lim.max_file_bytes, lim.max_pixels, lim.max_dimension))
    embedder = get_feature_set("cnn", FeatureOptions(s.model_dirs, s.tagging.tagging_threads))
    return index.like_vector(embed(image.bgr, embedder, PeopleDetector()), top)


commands = [video, camera, reid]
