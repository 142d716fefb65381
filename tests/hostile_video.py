"""A corpus of hostile and awkward video files, written from code, with the outcome each
must get. Used by the probe's unit tests and by the end-to-end test on the cluster.

Outcomes: ``rejected`` (refused at upload with a reason; the video row is 'failed'),
``done`` (analysed; a truncated file keeps the reason), or ``partial`` (done, but some
segments failed with a reason).
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

# name -> (outcome, substring of the reason)
EXPECTED: dict[str, tuple[str, str]] = {
    "empty.mp4": ("rejected", "empty file"),
    "notes.mp4": ("rejected", "not a video: plain text"),
    "picture.avi": ("rejected", "not a video: a still image"),
    "header_only.avi": ("rejected", "AVI video"),
    "huge_frames.avi": ("rejected", "video frames are 4096x2304 = 9.4 Mpx, limit 8.3 Mpx"),
    "endless_header.avi": ("rejected", "long, limit"),
    "clip_named.jpg": ("done", ""),
    "still.avi": ("done", ""),
    "truncated.avi": ("partial", "segments failed"),
}


def write_clip(
    path: Path,
    seconds: float,
    *,
    fps: float = 10.0,
    size: tuple[int, int] = (320, 240),
    moving: bool = True,
    seed: int = 0,
) -> Path:
    """An MJPEG AVI: a textured background with a bright box crossing it (or standing still)."""
    w, h = size
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 3)
    tmp = path.with_name(f".{path.name}.tmp.avi")  # the writer picks its container by suffix
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), path
    n = max(1, round(seconds * fps))
    for i in range(n):
        frame = background.copy()
        x = int((i / n) * (w - 40)) if moving else w // 2
        cv2.rectangle(frame, (x, h // 3), (x + 30, h // 3 + 60), (40, 220, 250), -1)
        writer.write(frame)
    writer.release()
    tmp.replace(path)
    return path


def _patch_frame_count(data: bytes, frames: int) -> bytes:
    """An AVI whose header promises ``frames`` frames (avih total and the stream's length)."""
    out = bytearray(data)
    avih = out.find(b"avih")
    struct.pack_into("<I", out, avih + 8 + 16, frames)  # dwTotalFrames
    strh = out.find(b"strh")
    struct.pack_into("<I", out, strh + 8 + 32, frames)  # dwLength
    return bytes(out)


def make_hostile_videos(folder: Path) -> dict[str, tuple[str, str]]:
    """Write every file of EXPECTED into ``folder``; returns EXPECTED."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("this is not a video\n" * 20)
    ok, png = cv2.imencode(".png", np.full((48, 64, 3), 90, np.uint8))
    (folder / "picture.avi").write_bytes(png.tobytes())
    good = write_clip(folder / "clip_named.jpg", 3.0, seed=1)
    (folder / "header_only.avi").write_bytes(good.read_bytes()[:300])
    write_clip(folder / "huge_frames.avi", 0.3, size=(4096, 2304), moving=False)
    one = write_clip(folder / ".one.avi", 0.1, seed=2)
    (folder / "endless_header.avi").write_bytes(_patch_frame_count(one.read_bytes(), 10**8))
    one.unlink()
    write_clip(folder / "still.avi", 30.0, moving=False, seed=3)
    full = write_clip(folder / ".full.avi", 25.0, seed=4).read_bytes()
    (folder / "truncated.avi").write_bytes(full[: int(len(full) * 0.45)])
    (folder / ".full.avi").unlink()
    return dict(EXPECTED)
