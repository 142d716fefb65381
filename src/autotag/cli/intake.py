"""``autotag upload | inbox``: getting photos into the pipeline."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import click

from autotag.config import Settings, settings
from autotag.pipeline import intake
from autotag.pipeline.video_intake import VideoUploadRecord

# Above this many files, human output lists only the files that were not taken.
LIST_ALL_UP_TO = 50


def new_intake(s: Settings) -> intake.Intake:
    """What an upload needs of the settings: the services, streams, limits and blob store."""
    return intake.Intake(s.services, s.queue, s.limits, s.video, s.blob_dir)


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
        )


def _line(rec: intake.UploadRecord | VideoUploadRecord) -> str:
    pid = rec.photo_id[:12] if rec.photo_id else "-" * 12
    text = f"{rec.status:<14} {pid}  {rec.path}"
    if isinstance(rec, VideoUploadRecord) and rec.segments:  # a video: queued as segments
        text += f"  (video, {rec.segments} segments)"
    return f"{text}  ({rec.reason})" if rec.reason and rec.status != intake.QUEUED else text


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file on stdout.")
@click.option("--force", is_flag=True, help="Queue photos again even if already tagged/queued.")
@click.option("--no-recursive", is_flag=True, help="Do not descend into sub-folders.")
def upload(paths: tuple[Path, ...], as_json: bool, force: bool, no_recursive: bool) -> None:
    """Store photos (files or folders) and queue them for tagging.

    Exit status is 1 if any file was rejected (over the size limit) or unreadable.
    """
    from tqdm import tqdm

    s = settings()
    inputs = list(intake.iter_inputs(paths, recursive=not no_recursive))
    if not inputs:
        raise click.ClickException("no files found")
    list_all = as_json or len(inputs) <= LIST_ALL_UP_TO
    bar = tqdm(
        total=len(inputs),
        unit="file",
        file=sys.stderr,
        disable=True if len(inputs) < 2 else None,  # None: only on a terminal
        leave=False,
    )

    def progress(rec: intake.UploadRecord | VideoUploadRecord) -> None:
        bar.update(1)
        if as_json:
            tqdm.write(rec.to_json(), file=sys.stdout)
        elif list_all or rec.status in (intake.REJECTED, intake.ERROR):
            tqdm.write(_line(rec), file=sys.stdout)

    try:
        records = intake.upload(paths, new_intake(s), force=force, progress=progress, inputs=inputs)
    finally:
        bar.close()
    counts = Counter(r.status for r in records)
    if not as_json and len(records) > 1:
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        click.echo(f"{len(records)} files: {summary}", err=True)
    if counts[intake.REJECTED] or counts[intake.ERROR]:
        sys.exit(1)


@click.command()
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--once", is_flag=True, help="Take the files that are complete now, then exit.")
@click.option("--poll", "poll_secs", default=2.0, show_default=True, help="Seconds between polls.")
@click.option("--force", is_flag=True, help="Queue photos again even if already tagged.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file on stdout.")
def inbox(directory: Path | None, once: bool, poll_secs: float, force: bool, as_json: bool) -> None:
    """Watch a folder (default <run_dir>/inbox) and upload files dropped into it.

    A file is taken once its size stops changing between two polls; it then moves to
    done/ (or rejected/ with a .reason.txt). Hidden files are ignored: copy into the
    inbox as ``.name.part`` and rename when complete to be safe.
    """
    _setup_logging()
    s = settings()
    folder = (directory or s.run_dir / "inbox").expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def on_term(signum: int, frame: Any) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)

    def report(rec: intake.UploadRecord | VideoUploadRecord) -> None:
        click.echo(rec.to_json() if as_json else _line(rec))

    if not once:
        click.echo(f"watching {folder} every {poll_secs:g}s (Ctrl-C to stop)", err=True)
    intake.watch_inbox(
        folder, new_intake(s), poll_secs, once=once, force=force, stop=stop, on_record=report
    )


commands = [upload, inbox]
