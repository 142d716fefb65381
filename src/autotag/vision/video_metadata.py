"""When and where a video was taken, from its MP4/MOV container (issue 26): the movie
header's creation time (``moov/mvhd``: seconds since 1904-01-01, UTC by the QuickTime and
ISO specifications) and the position a phone or camera wrote (``moov/udta/©xyz``, an ISO 6709
string such as ``+48.8584+002.2945+035.000/``; Apple's ``moov/meta`` key
``com.apple.quicktime.location.ISO6709`` likewise, with ``com.apple.quicktime.creationdate``
for the local time and its offset).

Only the boxes on the way to those are read, by seeking in the file: a video's media data is
never read, and ``moov`` is read only when it is at most ``MAX_MOOV_BYTES``. Everything is
untrusted: a malformed box costs only what it would have said. Plain values in, a
``PhotoMetadata`` out (the same one photos have, so places and time words follow alike).
"""

from __future__ import annotations

import re
import struct
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo

from autotag.vision.metadata import PhotoMetadata, parse_offset

MAX_MOOV_BYTES = 16 << 20
_EPOCH_1904 = datetime(1904, 1, 1)
_ISO6709 = re.compile(rb"([+-]\d{1,2}(?:\.\d+)?)([+-]\d{1,3}(?:\.\d+)?)([+-]\d+(?:\.\d+)?)?")
_APPLE_LOCATION = b"com.apple.quicktime.location.ISO6709"
_APPLE_DATE = b"com.apple.quicktime.creationdate"


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the boxes in ``data[start:end]``."""
    end = len(data) if end is None else end
    out: list[tuple[bytes, int, int]] = []
    at = start
    while at + 8 <= end and len(out) < 4096:
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        head = 8
        if size == 1 and at + 16 <= end:
            size, head = struct.unpack(">Q", data[at + 8 : at + 16])[0], 16
        elif size == 0:
            size = end - at
        if size < head or at + size > end:
            break
        out.append((kind, at + head, at + size))
        at += size
    return out


def _child(data: bytes, parent: tuple[int, int], kind: bytes) -> tuple[int, int] | None:
    for k, s, e in _boxes(data, *parent):
        if k == kind:
            return s, e
    return None


def _read_moov(fh: BinaryIO, size: int) -> bytes | None:
    """The ``moov`` box's payload, found by walking the top-level boxes with seeks."""
    at = 0
    for _ in range(1024):
        if at + 8 > size:
            return None
        fh.seek(at)
        head = fh.read(16)
        if len(head) < 8:
            return None
        box, kind = struct.unpack(">I4s", head[:8])
        hl = 8
        if box == 1 and len(head) == 16:
            box, hl = struct.unpack(">Q", head[8:16])[0], 16
        elif box == 0:
            box = size - at
        if box < hl:
            return None
        if kind == b"moov":
            if box > MAX_MOOV_BYTES:
                return None
            fh.seek(at + hl)
            return fh.read(box - hl)
        at += box
    return None


def _position(text: bytes) -> tuple[float | None, float | None, float | None]:
    m = _ISO6709.search(text)
    if not m:
        return None, None, None
    lat, lon = float(m.group(1)), float(m.group(2))
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
        return None, None, None
    alt = float(m.group(3)) if m.group(3) else None
    return lat, lon, alt if alt is None or abs(alt) <= 100_000 else None


def _mvhd_time(data: bytes, box: tuple[int, int]) -> datetime | None:
    s, e = box
    version = data[s] if s < e else None
    if version == 1 and e - s >= 12:
        (secs,) = struct.unpack(">Q", data[s + 4 : s + 12])
    elif version == 0 and e - s >= 8:
        (secs,) = struct.unpack(">I", data[s + 4 : s + 8])
    else:
        return None
    if secs == 0:  # not set (many encoders write zero)
        return None
    when = _EPOCH_1904 + timedelta(seconds=secs)
    return when if 1970 <= when.year <= 2100 else None


def _apple_keys(data: bytes, meta: tuple[int, int]) -> dict[bytes, bytes]:
    """``moov/meta``'s keys and their values (mdta key list + ilst items)."""
    keys_box, ilst = _child(data, meta, b"keys"), _child(data, meta, b"ilst")
    if keys_box is None or ilst is None:
        return {}
    names = []
    for _kind, s, e in _boxes(data, keys_box[0] + 8, keys_box[1]):  # after version/count
        names.append(data[s:e])
    out = {}
    for kind, s, e in _boxes(data, *ilst):
        index = int.from_bytes(kind, "big") - 1
        value = _child(data, (s, e), b"data")
        if 0 <= index < len(names) and value is not None:
            out[names[index]] = data[value[0] + 8 : value[1]]  # after type + locale
    return out


def read_video_metadata(path: str | Path) -> PhotoMetadata:
    """What an MP4/MOV file says about when and where it was taken; never raises for a bad
    file (what cannot be read is left out and noted in ``problems``)."""
    p = Path(path)
    problems: list[str] = []
    taken_local = taken_offset = None
    source = None
    lat = lon = alt = None
    try:
        with p.open("rb") as fh:
            moov = _read_moov(fh, p.stat().st_size)
        if moov is None:
            return PhotoMetadata()
        whole = (0, len(moov))
        mvhd = _child(moov, whole, b"mvhd")
        created = _mvhd_time(moov, mvhd) if mvhd else None
        if created is not None:  # UTC: the local time comes from the position's time zone
            taken_local, taken_offset, source = created, timedelta(0), UTC_SOURCE
        for kind, s, e in _boxes(moov, *whole):  # udta may come more than once
            xyz = _child(moov, (s, e), b"\xa9xyz") if kind == b"udta" else None
            if xyz is not None and lat is None:
                lat, lon, alt = _position(moov[xyz[0] : xyz[1]])
        meta = _child(moov, whole, b"meta")
        keys = _apple_keys(moov, meta) if meta else {}
        if lat is None and _APPLE_LOCATION in keys:
            lat, lon, alt = _position(keys[_APPLE_LOCATION])
        date = keys.get(_APPLE_DATE, b"").decode("ascii", "replace")
        m = re.match(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(.*)", date)
        if m:
            y, mo, d, h, mi, sec = (int(g) for g in m.groups()[:6])
            local = datetime(y, mo, d, h, mi, sec)
            offset = parse_offset(m.group(7).strip() or None)
            if offset is not None:  # the camera's own wall clock and its offset
                taken_local, taken_offset = local, offset
                source = "video creationdate + offset"
    except Exception as exc:  # noqa: BLE001 - the video is still analysed without metadata
        problems.append(f"video metadata: {type(exc).__name__}: {str(exc)[:80]}")
    return PhotoMetadata(
        taken_local=taken_local,
        taken_offset=taken_offset,
        taken_source=source,
        latitude=lat,
        longitude=lon,
        altitude=alt,
        problems=tuple(problems),
    )


UTC_SOURCE = "video creation time (UTC)"


def in_zone(meta: PhotoMetadata, zone: str) -> PhotoMetadata:
    """A creation time given in UTC, as the wall clock of IANA ``zone`` (the position's):
    a video's hour, day and month words are those where it was taken."""
    if meta.taken_local is None or meta.taken_source != UTC_SOURCE:
        return meta
    try:
        local = meta.taken_local.replace(tzinfo=UTC).astimezone(ZoneInfo(zone))
    except (KeyError, ValueError, OSError):
        return meta
    return replace(
        meta,
        taken_local=local.replace(tzinfo=None),
        taken_offset=local.utcoffset(),
        time_zone=zone,
        taken_source="video creation time + gps time zone",
    )


__all__ = ["MAX_MOOV_BYTES", "UTC_SOURCE", "in_zone", "read_video_metadata"]
