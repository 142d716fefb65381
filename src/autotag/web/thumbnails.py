"""Thumbnails for the grids: made once per photo, cached next to the blobs, never full size.

A thumbnail is a JPEG at most ``SIZE`` pixels on its long side, decoded with the same
checks the bolts use (size, format, dimensions before any pixel is allocated), so a hostile
file costs no more here than there. A file that cannot be decoded gets a cached ``.reason``
instead, shown as a placeholder image that says why. Writes go to a temp file and are
renamed into place, so two requests racing for one photo at worst both do the work.
"""

from __future__ import annotations

import html
import os
import tempfile
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2

from autotag.config import Settings
from autotag.errors import AutotagError
from autotag.pipeline.tag_step import decode_limits
from autotag.storage.blobs import BlobStore
from autotag.vision.decode import decode

SIZE = 320
JPEG_QUALITY = 82
# Decoding a big photo takes memory and a core: a few at a time.
_DECODES = threading.BoundedSemaphore(2)


@dataclass(frozen=True)
class Thumbnail:
    """The bytes to send: a JPEG, or an SVG placeholder carrying ``error``."""

    body: bytes
    media_type: str
    error: str | None = None


def placeholder(reason: str, width: int = SIZE, height: int = SIZE * 3 // 4) -> bytes:
    """An SVG card that says why there is no picture (text escaped; no scripts)."""
    lines = textwrap.wrap(reason, 34)[:6] or ["no picture"]
    text = "".join(
        f'<text x="{width // 2}" y="{height // 2 - 10 * len(lines) + 20 * i + 14}">'
        f"{html.escape(line)}</text>"
        for i, line in enumerate(lines)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><rect width="100%" height="100%" fill="#eee"/>'
        f'<g font-family="sans-serif" font-size="14" fill="#a33" text-anchor="middle">'
        f"{text}</g></svg>"
    ).encode()


class Thumbnails:
    """Cached thumbnails under ``root`` (``<id[:2]>/<id>.jpg`` or ``<id>.reason``)."""

    def __init__(self, blobs: BlobStore, root: Path, settings: Settings) -> None:
        self.blobs = blobs
        self.root = Path(root)
        self.limits = decode_limits(settings.limits)
        self.max_bytes = settings.limits.max_file_bytes

    def _paths(self, photo_id: str) -> tuple[Path, Path]:
        blob = self.blobs.path_for(photo_id)  # validates the id: no path escapes
        folder = self.root / blob.parent.name
        return folder / f"{blob.name}.jpg", folder / f"{blob.name}.reason"

    def get(self, photo_id: str) -> Thumbnail:
        """The photo's thumbnail, made now if it is not cached yet."""
        jpg, reason = self._paths(photo_id)
        try:
            return Thumbnail(jpg.read_bytes(), "image/jpeg")
        except FileNotFoundError:
            pass
        try:
            why = reason.read_text()
            return Thumbnail(placeholder(why), "image/svg+xml", why)
        except FileNotFoundError:
            pass
        return self._make(photo_id, jpg, reason)

    def _make(self, photo_id: str, jpg: Path, reason: Path) -> Thumbnail:
        try:
            with _DECODES:
                data = self.blobs.read(photo_id, self.max_bytes)
                img = decode(data, self.limits, min_side=SIZE)  # a big JPEG decodes reduced
                h, w = img.bgr.shape[:2]
                scale = min(1.0, SIZE / max(h, w))
                small = cv2.resize(
                    img.bgr,
                    (max(1, round(w * scale)), max(1, round(h * scale))),
                    interpolation=cv2.INTER_AREA,
                )
                ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise AutotagError("could not encode the thumbnail")
        except (AutotagError, ValueError, MemoryError, cv2.error) as exc:
            why = str(exc) or type(exc).__name__
            if self.blobs.exists(photo_id):  # a missing blob may still arrive: no verdict
                self._write(reason, why.encode())
            return Thumbnail(placeholder(why), "image/svg+xml", why)
        body = buf.tobytes()
        self._write(jpg, body)
        return Thumbnail(body, "image/jpeg")

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
