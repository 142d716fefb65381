"""Tagging files without the cluster: the autotag bolt's own code in this process, or in N
worker processes of one thread each — ``autotag tag``, and the plain loop the topology is
measured against.

Each worker process loads the model once (as a daemonized bolt does) and tags the files it
is handed; any problem with a file becomes a failed result with its reason, exactly as in
the topology.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from autotag.checksums import bytes_sha256
from autotag.config import LimitsSettings, TaggingSettings
from autotag.contract import PhotoResult
from autotag.errors import AutotagError
from autotag.vision.tagger import Tagger

_tagger: Tagger | None = None
_max_bytes = 0


def _open_regular(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file no larger than max_bytes, opened without following a
    final symlink (the user named the file; a planted link is not followed)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise AutotagError("not a regular file")
        if st.st_size > max_bytes:
            raise AutotagError(f"{st.st_size} bytes is over the {max_bytes}-byte limit")
        return fh.read(max_bytes + 1)


def tag_path(tagger: Tagger, path: Path, max_bytes: int) -> PhotoResult:
    """One file → a PhotoResult (photo id = sha256 of its bytes); never raises for a bad file."""
    try:
        data = _open_regular(path, max_bytes)
    except (OSError, AutotagError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return PhotoResult.failed("", f"cannot read {path.name}: {reason}")
    photo_id = bytes_sha256(data)
    try:
        return PhotoResult.tagged(photo_id, tagger.tag_bytes(data))
    except (AutotagError, ValueError, MemoryError) as exc:
        reason = str(exc) if isinstance(exc, AutotagError) else f"{type(exc).__name__}: {exc}"
        return PhotoResult.failed(photo_id, reason)


def _init_worker(tagging: TaggingSettings, limits: LimitsSettings, loaded: Any = None) -> None:
    global _tagger, _max_bytes
    import cv2

    from autotag.pipeline.tag_step import load_tagger

    cv2.setNumThreads(tagging.tagging_threads)
    _tagger = load_tagger(tagging, limits)
    _max_bytes = limits.max_file_bytes
    if loaded is not None:
        loaded.wait()  # every worker's model is in memory before the first file


def _work(path: Path) -> tuple[Path, PhotoResult]:
    assert _tagger is not None
    return path, tag_path(_tagger, path, _max_bytes)


def tag_paths(
    paths: Sequence[Path],
    tagging: TaggingSettings,
    limits: LimitsSettings,
    *,
    jobs: int = 1,
    on_ready: Callable[[], None] | None = None,
) -> Iterator[tuple[Path, PhotoResult]]:
    """Tag files in input order: in this process (jobs=1) or in ``jobs`` processes, each
    with ``tagging.tagging_threads`` threads. ``on_ready`` is called once every process has
    loaded its model (the benchmark starts its clock there)."""
    if jobs <= 1:
        _init_worker(tagging, limits)
        if on_ready:
            on_ready()
        for p in paths:
            yield _work(p)
        return
    ctx = mp.get_context("spawn")  # a clean interpreter per worker: no inherited threads
    loaded = ctx.Barrier(jobs + 1)
    with ctx.Pool(jobs, initializer=_init_worker, initargs=(tagging, limits, loaded)) as pool:
        loaded.wait()
        if on_ready:
            on_ready()
        yield from pool.imap(_work, paths, chunksize=4)
