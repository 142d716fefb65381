"""A face as the People page shows it: cut from the photo's blob by the face's box when
asked, never stored apart from the photo (issue 25's privacy rule: forgetting a person or
deleting the photo leaves no face picture behind).

The blob is decoded with the bolts' checks (``thumbnails`` shares its decode semaphore),
the box (in the photo's own pixels) is widened by ``MARGIN`` on each side, clipped to the
photo and scaled to at most ``SIZE`` pixels, and sent as a JPEG the browser may keep a
short while only. A video's face is cut the same way from the one frame it was seen in,
decoded from the segment's blob when asked (``crop_video``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from autotag.errors import AutotagError
from autotag.storage.blobs import BlobStore
from autotag.vision.decode import DecodeLimits, decode
from autotag.vision.video_frames import check_frame_size, open_capture
from autotag.web.thumbnails import _DECODES

SIZE = 160
MARGIN = 0.25
JPEG_QUALITY = 85


def crop(
    blobs: BlobStore,
    photo_id: str,
    box: tuple[int, int, int, int],
    limits: DecodeLimits,
    max_bytes: int,
) -> bytes:
    """The JPEG of one face of a stored photo (AutotagError: no blob, undecodable)."""
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise AutotagError("the face box is empty")
    with _DECODES:
        data = blobs.read(photo_id, max_bytes)
        img = decode(data, limits)  # full size: the box is in the photo's own pixels
    sy = img.bgr.shape[0] / max(img.height, 1)
    sx = img.bgr.shape[1] / max(img.width, 1)
    return _cut(img.bgr, box, sx, sy)


def crop_video(path: Path, frame: int, box: tuple[int, int, int, int], max_pixels: int) -> bytes:
    """The JPEG of one face of a video, from frame ``frame`` of the video file at ``path``
    (AutotagError: unreadable, or the frame is not there)."""
    if box[2] <= 0 or box[3] <= 0:
        raise AutotagError("the face box is empty")
    with _DECODES:
        cap = open_capture(path)
        try:
            if not cap.isOpened():
                raise AutotagError("cannot open the video")
            if frame > 0 and not cap.set(cv2.CAP_PROP_POS_FRAMES, float(frame)):
                raise AutotagError(f"cannot seek to frame {frame}")
            ok, bgr = cap.read()
        finally:
            cap.release()
    if not ok or bgr is None or bgr.size == 0:
        raise AutotagError(f"no frame {frame} in the video")
    check_frame_size(bgr.shape[1], bgr.shape[0], max_pixels)
    return _cut(bgr, box, 1.0, 1.0)


def _cut(bgr: np.ndarray, box: tuple[int, int, int, int], sx: float, sy: float) -> bytes:
    """The box (in pixels scaled by sx, sy to ``bgr``'s) widened by MARGIN, as a JPEG."""
    x, y, w, h = box
    mx, my = w * MARGIN, h * MARGIN
    left = max(0, int((x - mx) * sx))
    top = max(0, int((y - my) * sy))
    right = min(bgr.shape[1], int((x + w + mx) * sx) + 1)
    bottom = min(bgr.shape[0], int((y + h + my) * sy) + 1)
    if right <= left or bottom <= top:
        raise AutotagError("the face box lies outside the picture")
    face = bgr[top:bottom, left:right]
    scale = min(1.0, SIZE / max(face.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(face.shape[1] * scale)), max(1, round(face.shape[0] * scale)))
        face = cv2.resize(face, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise AutotagError("could not encode the face")
    return bytes(buf.tobytes())
