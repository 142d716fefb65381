"""Camera RAW files written by the tests: a minimal, valid DNG (Adobe's TIFF-based RAW) with
a Bayer (RGGB) sensor image, camera EXIF (date, offset, GPS, make, model) and optionally an
embedded JPEG preview, the way cameras and Adobe's converter lay one out (IFD0 = preview or
sensor image; the sensor image in a SubIFD when there is a preview). Written with a small
TIFF writer here: no RAW file ships in a registry package this project can install (Debian's
libraw packages and the PyPI rawpy wheel carry none)."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

from tests.photo_metadata import _dms, picture

BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED, SRATIONAL = 1, 2, 3, 4, 5, 7, 10
_SIZES = {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, UNDEFINED: 1, SRATIONAL: 8}
Entry = tuple[int, int, object]  # tag, type, value(s)


def _values(typ: int, value: object) -> tuple[int, bytes]:
    if typ == ASCII:
        raw = str(value).encode() + b"\x00"
        return len(raw), raw
    if typ in (BYTE, UNDEFINED):
        raw = bytes(value) if not isinstance(value, bytes) else value  # type: ignore[arg-type]
        return len(raw), raw
    items = list(value) if isinstance(value, (list, tuple)) else [value]  # type: ignore[arg-type]
    if typ in (RATIONAL, SRATIONAL):
        code = "<I" if typ == RATIONAL else "<i"
        raw = b"".join(
            struct.pack(code, round(v * 10000)) + struct.pack("<I", 10000) for v in items
        )
        return len(items), raw
    code = "<H" if typ == SHORT else "<I"
    return len(items), b"".join(struct.pack(code, int(v)) for v in items)


def _ifd(entries: list[Entry], start: int) -> bytes:
    """An IFD placed at ``start`` (its out-of-line values right after it), next IFD = 0."""
    entries = sorted(entries)
    table_end = start + 2 + 12 * len(entries) + 4
    table, extra = b"", b""
    for tag, typ, value in entries:
        count, raw = _values(typ, value)
        if len(raw) <= 4:
            field = raw.ljust(4, b"\x00")
        else:
            field = struct.pack("<I", table_end + len(extra))
            extra += raw + (b"\x00" if len(raw) % 2 else b"")
        table += struct.pack("<HHI", tag, typ, count) + field
    return struct.pack("<H", len(entries)) + table + b"\x00\x00\x00\x00" + extra


_XYZ_TO_SRGB = (3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570)


def bayer(seed: int, size: tuple[int, int], white: int = 4095) -> np.ndarray:
    """A smooth picture as an RGGB mosaic of 16-bit photosites (0..white)."""
    rgb = np.asarray(picture(seed, size), dtype=np.float64) / 255.0
    linear = rgb**2.2 * white
    h, w = linear.shape[:2]
    out = np.empty((h, w), np.uint16)
    out[0::2, 0::2] = linear[0::2, 0::2, 0]
    out[0::2, 1::2] = linear[0::2, 1::2, 1]
    out[1::2, 0::2] = linear[1::2, 0::2, 1]
    out[1::2, 1::2] = linear[1::2, 1::2, 2]
    return out


def dng(
    seed: int = 0,
    size: tuple[int, int] = (640, 480),
    *,
    taken: str | None = None,
    offset: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    make: str = "Autotag",
    model: str = "Test DNG",
    preview: tuple[int, int] | None = None,
    declared: tuple[int, int] | None = None,
    preview_seed: int | None = None,
    compression: int = 1,
) -> bytes:
    """A DNG of a ``size`` (width, height) sensor; with ``preview``, an embedded JPEG preview
    of that size (of picture ``preview_seed`` when given, to tell which was decoded);
    ``declared`` writes other dimensions than the data has (a RAW bomb); ``compression`` 7
    (lossless JPEG) over uncompressed photosites makes garbage to LibRaw."""
    w, h = size
    # Laid out as cameras do: the directories first (IFD0 at offset 8), the data after them.
    sensor_data = bayer(seed, size).astype("<u2").tobytes()
    jpeg = b""
    if preview:
        out = io.BytesIO()
        source = picture(seed if preview_seed is None else preview_seed, size)
        source.resize(preview, Image.Resampling.BILINEAR).save(out, "JPEG", quality=90)
        jpeg = out.getvalue()
    exif: list[Entry] = []
    if taken:
        exif += [(0x9003, ASCII, taken), (0x9004, ASCII, taken)]
    if offset:
        exif.append((0x9011, ASCII, offset))
    gps: list[Entry] = []
    if lat is not None and lon is not None:
        gps = [
            (0, BYTE, b"\x02\x03\x00\x00"),
            (1, ASCII, "S" if lat < 0 else "N"),
            (2, RATIONAL, _dms(lat)),
            (3, ASCII, "W" if lon < 0 else "E"),
            (4, RATIONAL, _dms(lon)),
        ]
    dw, dh = declared or size

    def directories(at: dict[str, int]) -> dict[str, list[Entry]]:
        sensor: list[Entry] = [
            (254, LONG, 0),
            (256, LONG, dw),
            (257, LONG, dh),
            (258, SHORT, 16),
            (259, SHORT, compression),
            (262, SHORT, 32803),  # CFA
            (273, LONG, at["sensor_data"]),
            (277, SHORT, 1),
            (278, LONG, dh),
            (279, LONG, w * h * 2),
            (284, SHORT, 1),
            (33421, SHORT, (2, 2)),  # CFARepeatPatternDim
            (33422, BYTE, b"\x00\x01\x01\x02"),  # CFAPattern RGGB
            (50714, LONG, 0),  # BlackLevel
            (50717, LONG, 4095),  # WhiteLevel
        ]
        camera: list[Entry] = [
            (271, ASCII, make),
            (272, ASCII, model),
            (274, SHORT, 1),
            (50706, BYTE, b"\x01\x04\x00\x00"),  # DNGVersion 1.4
            (50707, BYTE, b"\x01\x01\x00\x00"),
            (50708, ASCII, f"{make} {model}"),  # UniqueCameraModel
            # XYZ (D65) -> camera: a camera whose primaries are sRGB's
            (50721, SRATIONAL, _XYZ_TO_SRGB),
            (50778, SHORT, 21),  # CalibrationIlluminant1 D65
            (50728, RATIONAL, (1.0, 1.0, 1.0)),  # AsShotNeutral
        ]
        dirs: dict[str, list[Entry]] = {}
        if exif:
            camera.append((34665, LONG, at["exif"]))
            dirs["exif"] = exif
        if gps:
            camera.append((34853, LONG, at["gps"]))
            dirs["gps"] = gps
        if preview:
            pw, ph = preview
            dirs["ifd0"] = camera + [
                (254, LONG, 1),  # a reduced-resolution image: the preview
                (256, LONG, pw),
                (257, LONG, ph),
                (258, SHORT, (8, 8, 8)),
                (259, SHORT, 7),  # JPEG
                (262, SHORT, 6),  # YCbCr
                (273, LONG, at["jpeg"]),
                (277, SHORT, 3),
                (278, LONG, ph),
                (279, LONG, len(jpeg)),
                (330, LONG, at["sensor"]),  # SubIFDs: the sensor image
            ]
            dirs["sensor"] = sensor
        else:
            dirs["ifd0"] = camera + sensor
        return dirs

    names = ["ifd0", "exif", "gps", "sensor", "jpeg", "sensor_data"]
    blobs = {"jpeg": jpeg, "sensor_data": sensor_data}
    sizes = {k: len(_ifd(v, 0)) for k, v in directories(dict.fromkeys(names, 0)).items()}
    at, pos = {}, 8
    for name in names:
        at[name] = pos
        pos += sizes.get(name, len(blobs.get(name, b"")))
        pos += pos % 2
    buf = bytearray(b"II*\x00" + struct.pack("<I", at["ifd0"]))
    dirs = directories(at)
    for name in names:
        buf += b"\x00" * (at[name] - len(buf))
        buf += _ifd(dirs[name], at[name]) if name in dirs else blobs.get(name, b"")
    return bytes(buf)
