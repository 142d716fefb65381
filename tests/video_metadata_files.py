"""MP4 videos with a creation time and a position, written by the tests: OpenCV writes the
MP4 (mp4v), then a small box writer sets ``moov/mvhd``'s creation time and adds
``moov/udta/©xyz`` (what phones and cameras write), or Apple's ``moov/meta`` keys."""

from __future__ import annotations

import struct
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

_EPOCH_1904 = datetime(1904, 1, 1)


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def write_mp4(path: Path, seconds: float = 2.0, fps: float = 10.0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    frame = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (0, 0), 3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (320, 240))
    assert writer.isOpened(), path
    for i in range(round(seconds * fps)):
        writer.write(np.roll(frame, i * 4, axis=1))
    writer.release()
    return path


def _moov(data: bytes) -> tuple[int, int]:
    at = 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        if kind == b"moov":
            return at, size
        at += size
    raise AssertionError("no moov box")


def with_metadata(
    data: bytes,
    created_utc: datetime | None = None,
    xyz: str | None = None,
    apple: dict[str, str] | None = None,
) -> bytes:
    """The MP4 with mvhd's creation time set, ©xyz added to moov/udta, and Apple's moov/meta
    keys (mdta) added; moov must be the last top-level box (OpenCV writes it last)."""
    at, size = _moov(data)
    assert at + size == len(data), "moov is not last"
    moov = bytearray(data[at + 8 : at + size])
    if created_utc is not None:
        i = moov.find(b"mvhd")
        assert i >= 4 and moov[i + 4] == 0  # version 0: 32-bit times
        secs = int((created_utc - _EPOCH_1904).total_seconds())
        moov[i + 8 : i + 16] = struct.pack(">II", secs, secs)  # creation, modification
    extra = b""
    if xyz is not None:
        text = xyz.encode()
        extra += _box(b"udta", _box(b"\xa9xyz", struct.pack(">HH", len(text), 0x15C7) + text))
    if apple:
        names = list(apple)
        keys = struct.pack(">II", 0, len(names)) + b"".join(
            _box(b"mdta", n.encode()) for n in names
        )
        items = b"".join(
            _box(
                struct.pack(">I", i + 1),
                _box(b"data", struct.pack(">II", 1, 0) + apple[n].encode()),
            )
            for i, n in enumerate(names)
        )
        hdlr = _box(b"hdlr", bytes(8) + b"mdta" + bytes(12) + b"\x00")
        extra += _box(b"meta", hdlr + _box(b"keys", keys) + _box(b"ilst", items))
    body = bytes(moov) + extra
    return data[:at] + struct.pack(">I4s", 8 + len(body), b"moov") + body
