"""What a photo file says about itself: when and where it was taken, with what, and the
words its owner gave it (EXIF, XMP, IPTC).

Read from the same bytes the tagger decodes (no second read of the blob), with Pillow's
header parsers (a JPEG's markers, a TIFF's IFDs: no pixel is decoded), for HEIF/AVIF the
container's EXIF and XMP items, and for a TIFF-based camera RAW its first directory. Everything in a file is untrusted: each part is read
on its own, and a malformed part costs only itself (it is noted in ``problems``). Plain
values in and out; the time zone of a GPS position is found by ``autotag.vision.places``.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from PIL import (
    Image,
    ImageFile,
    IptcImagePlugin,
    JpegImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

# EXIF tags (IFD0, the Exif IFD, the GPS IFD).
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_MAKE, _MODEL, _DESCRIPTION = 0x010F, 0x0110, 0x010E
_XP_TITLE, _XP_KEYWORDS = 0x9C9B, 0x9C9E
_ORIGINAL, _DIGITIZED = 0x9003, 0x9004
_OFFSET_ORIGINAL, _OFFSET_DIGITIZED = 0x9011, 0x9012
_LENS_MAKE, _LENS_MODEL = 0xA433, 0xA434
_XMP_TAG = 700
# IPTC-IIM datasets (record 2).
_IPTC_KEYWORDS, _IPTC_TITLE, _IPTC_HEADLINE, _IPTC_CAPTION = (2, 25), (2, 5), (2, 105), (2, 120)
# An XMP packet larger than this is not read (a hostile file could make regexes slow).
MAX_XMP_BYTES = 1 << 20
MAX_KEYWORDS = 64
MAX_TEXT = 500


@dataclass(frozen=True)
class PhotoMetadata:
    """What the file says. ``taken_local`` is the wall-clock time the photo was taken;
    ``taken_offset`` its UTC offset when known (from the file, or later from the GPS
    position's time zone); ``taken_source`` says where the date came from."""

    taken_local: datetime | None = None
    taken_offset: timedelta | None = None
    taken_source: str | None = None
    time_zone: str | None = None  # an IANA name, when the offset came from the position
    latitude: float | None = None
    longitude: float | None = None
    altitude: float | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    keywords: tuple[str, ...] = ()
    title: str | None = None
    description: str | None = None
    problems: tuple[str, ...] = field(default=())

    @property
    def taken_at(self) -> datetime | None:
        """The instant, when the offset is known (else None: local time only)."""
        if self.taken_local is None or self.taken_offset is None:
            return None
        return self.taken_local.replace(tzinfo=timezone(self.taken_offset))

    @property
    def camera(self) -> str | None:
        make, model = self.camera_make or "", self.camera_model or ""
        if make and model.lower().startswith(make.split()[0].lower()):
            return model  # "Canon" + "Canon EOS 5D" -> "Canon EOS 5D"
        return " ".join(p for p in (make, model) if p) or None

    def with_zone(self, name: str, offset: timedelta) -> PhotoMetadata:
        """The same, its local time placed in a time zone found from the position."""
        base = (self.taken_source or "exif").removesuffix(" (local time)")
        return replace(
            self, taken_offset=offset, time_zone=name, taken_source=base + " + gps time zone"
        )


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.rstrip(b"\x00")
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    text = " ".join(value.replace("\x00", " ").split())
    return text[:MAX_TEXT] or None


def _xp(value: Any) -> str | None:
    """A Windows XP* tag: UTF-16LE bytes (Pillow may give a tuple of ints)."""
    if isinstance(value, tuple):
        value = bytes(value)
    if isinstance(value, bytes):
        return _text(value.decode("utf-16-le", errors="ignore"))
    return _text(value)


def parse_exif_datetime(value: Any) -> datetime | None:
    """``YYYY:MM:DD HH:MM:SS`` (blanks, zeros and junk: None)."""
    text = _text(value)
    if not text:
        return None
    m = re.match(r"(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})", text)
    if not m:
        return None
    try:
        year, month, day, hour, minute, second = (int(g) for g in m.groups())
        when = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    return when if when.year >= 1800 else None


def parse_offset(value: Any) -> timedelta | None:
    """An EXIF OffsetTime (``+02:00``, ``-05:00``, ``Z``)."""
    text = _text(value)
    if not text:
        return None
    if text.upper() == "Z":
        return timedelta(0)
    m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", text)
    if not m:
        return None
    hours, minutes = int(m.group(2)), int(m.group(3))
    if hours > 14 or minutes >= 60:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return -delta if m.group(1) == "-" else delta


def _rational(value: Any) -> float:
    if isinstance(value, tuple) and len(value) == 2:
        num, den = value
        return float(num) / float(den)
    return float(value)


def _degrees(value: Any, ref: Any, negative: str) -> float | None:
    parts = [_rational(v) for v in value]
    if len(parts) != 3 or any(p != p or p < 0 for p in parts):  # NaN or negative
        return None
    deg = parts[0] + parts[1] / 60 + parts[2] / 3600
    return -deg if (_text(ref) or "").upper().startswith(negative) else deg


def _gps(gps: Any) -> tuple[float | None, float | None, float | None]:
    if not gps:
        return None, None, None
    lat = _degrees(gps[2], gps.get(1), "S") if 2 in gps else None
    lon = _degrees(gps[4], gps.get(3), "W") if 4 in gps else None
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        lat = lon = None
    elif lat == 0 and lon == 0:  # "no fix" written as zeros
        lat = lon = None
    alt = None
    if 6 in gps:
        alt = _rational(gps[6])
        ref = gps.get(5, 0)
        if (ref[0] if isinstance(ref, bytes) and ref else ref) == 1:
            alt = -alt
        if alt != alt or abs(alt) > 100_000:
            alt = None
    return lat, lon, alt


def _from_exif(exif: Image.Exif, problems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def part(name: str, fn: Any) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - a malformed part costs only itself
            problems.append(f"{name}: {type(exc).__name__}")

    def camera() -> None:
        out["camera_make"] = _text(exif.get(_MAKE))
        out["camera_model"] = _text(exif.get(_MODEL))
        out["description"] = _text(exif.get(_DESCRIPTION))
        out["title"] = _xp(exif.get(_XP_TITLE))
        words = _xp(exif.get(_XP_KEYWORDS))
        if words:
            out["keywords"] = [w for w in re.split(r"[;,]", words)]

    def when() -> None:
        sub = exif.get_ifd(_EXIF_IFD)
        for tag, offset_tag, source in (
            (_ORIGINAL, _OFFSET_ORIGINAL, "exif DateTimeOriginal"),
            (_DIGITIZED, _OFFSET_DIGITIZED, "exif DateTimeDigitized"),
        ):
            local = parse_exif_datetime(sub.get(tag))
            if local is not None:
                out["taken_local"] = local
                offset = parse_offset(sub.get(offset_tag))
                out["taken_offset"] = offset
                out["taken_source"] = source + (" + offset" if offset is not None else "")
                break
        lens = _text(sub.get(_LENS_MODEL))
        lens_make = _text(sub.get(_LENS_MAKE))
        if lens and lens_make and not lens.lower().startswith(lens_make.lower()):
            lens = f"{lens_make} {lens}"
        out["lens"] = lens

    def where() -> None:
        lat, lon, alt = _gps(exif.get_ifd(_GPS_IFD))
        out["latitude"], out["longitude"], out["altitude"] = lat, lon, alt

    part("EXIF camera", camera)
    part("EXIF date", when)
    part("EXIF GPS", where)
    return out


_XMP_BAG = re.compile(rb"<dc:subject>(.*?)</dc:subject>", re.S)
_XMP_LI = re.compile(rb"<rdf:li[^>]*>([^<]*)</rdf:li>")
_XMP_ALT = {
    "title": re.compile(rb"<dc:title>(.*?)</dc:title>", re.S),
    "description": re.compile(rb"<dc:description>(.*?)</dc:description>", re.S),
}
_XMP_ATTR_DATE = re.compile(rb'(?:exif:DateTimeOriginal|photoshop:DateCreated)="([^"]+)"')


def _unescape(raw: bytes) -> str | None:
    text = _text(raw)
    if text is None:
        return None
    for a, b in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&")):
        text = text.replace(a, b)
    return text


def _from_xmp(xmp: bytes) -> dict[str, Any]:
    """Keywords (dc:subject), title and description from an XMP packet (read with bounded
    regular expressions: no XML parser meets untrusted entities)."""
    if len(xmp) > MAX_XMP_BYTES:
        return {}
    out: dict[str, Any] = {}
    words = []
    for bag in _XMP_BAG.findall(xmp):
        words += [w for w in (_unescape(li) for li in _XMP_LI.findall(bag)) if w]
    if words:
        out["keywords"] = words
    for name, pattern in _XMP_ALT.items():
        m = pattern.search(xmp)
        if m:
            first = _XMP_LI.search(m.group(1))
            value = _unescape(first.group(1) if first else m.group(1))
            if value:
                out[name] = value
    return out


def _from_iptc(info: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    words = info.get(_IPTC_KEYWORDS)
    if words is not None:
        words = words if isinstance(words, list) else [words]
        out["keywords"] = [w for w in (_text(x) for x in words) if w]
    for name, key in (
        ("title", _IPTC_TITLE),
        ("title", _IPTC_HEADLINE),
        ("description", _IPTC_CAPTION),
    ):
        value = info.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        text = _text(value)
        if text and name not in out:
            out[name] = text
    return out


def _header(data: bytes, fmt: str) -> ImageFile.ImageFile | None:
    openers: dict[str, type[ImageFile.ImageFile]] = {
        "JPEG": JpegImagePlugin.JpegImageFile,
        "TIFF": TiffImagePlugin.TiffImageFile,
        "WEBP": WebPImagePlugin.WebPImageFile,
    }
    cls = openers.get(fmt)
    if cls is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(io.BytesIO(data))


def _raw_exif(data: bytes) -> tuple[Image.Exif, bytes | None]:
    """A TIFF-based camera RAW's (DNG, CR2, NEF, ARW, PEF...) first directory read as EXIF
    (Pillow's TIFF reader refuses the sensor image's pixel layout, and no pixel is needed),
    and its XMP packet (TIFF tag 700). RAWs of their own structure (RAF, CR3, ORF, RW2) say
    nothing here."""
    exif = Image.Exif()
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return exif, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exif.load(data)
    xmp = exif.get(_XMP_TAG)
    if isinstance(xmp, tuple):
        xmp = bytes(xmp)
    return exif, xmp if isinstance(xmp, bytes) else None


def _heif_items(data: bytes) -> tuple[bytes | None, bytes | None]:
    import pillow_heif  # the HEIF container's EXIF and XMP items, no pixels decoded

    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
    info = heif.info
    return info.get("exif"), info.get("xmp")


def _merge_keywords(*groups: Any) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for group in groups:
        for word in group or ():
            text = _text(word)
            if text and text.lower() not in seen and len(seen) < MAX_KEYWORDS:
                seen[text.lower()] = text
    return tuple(seen.values())


def read_metadata(data: bytes, fmt: str) -> PhotoMetadata:
    """Everything the file says, for a photo of format ``fmt`` (as ``decode`` named it).
    Never raises for a bad file: what cannot be read is left out and noted in
    ``problems``; a photo without metadata gets an empty ``PhotoMetadata``."""
    problems: list[str] = []
    exif_values: dict[str, Any] = {}
    xmp_values: dict[str, Any] = {}
    iptc_values: dict[str, Any] = {}
    try:
        exif = Image.Exif()
        xmp: bytes | None = None
        if fmt in ("HEIF", "AVIF"):
            raw_exif, xmp = _heif_items(data)
            if raw_exif:
                exif.load(
                    raw_exif[raw_exif.find(b"Exif\x00\x00") :]
                    if b"Exif" in raw_exif[:16]
                    else raw_exif
                )
        elif fmt == "RAW":
            exif, xmp = _raw_exif(data)
        elif fmt == "PNG":
            if b"eXIf" in data[:65536] or b"iTXt" in data[:65536]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    im = Image.open(io.BytesIO(data), formats=["PNG"])
                    exif = im.getexif()
                    xmp = im.info.get("XML:com.adobe.xmp", "").encode() or None
        else:
            header = _header(data, fmt)
            if header is not None:
                exif = header.getexif()
                raw = header.info.get("xmp")
                xmp = raw.encode() if isinstance(raw, str) else raw
                if fmt == "JPEG" and any(a == "APP13" for a, _ in getattr(header, "applist", [])):
                    try:
                        iptc_values = _from_iptc(IptcImagePlugin.getiptcinfo(header) or {})
                    except Exception as exc:  # noqa: BLE001
                        problems.append(f"IPTC: {type(exc).__name__}")
        exif_values = _from_exif(exif, problems)
        if xmp:
            try:
                xmp_values = _from_xmp(bytes(xmp))
            except Exception as exc:  # noqa: BLE001
                problems.append(f"XMP: {type(exc).__name__}")
    except Exception as exc:  # noqa: BLE001 - the photo is still tagged without metadata
        problems.append(f"metadata: {type(exc).__name__}: {str(exc)[:80]}")
    values = {**exif_values}
    for extra in (iptc_values, xmp_values):  # XMP last: what editors write today
        for key in ("title", "description"):
            if extra.get(key):
                values[key] = extra[key]
    values["keywords"] = _merge_keywords(
        exif_values.get("keywords"), iptc_values.get("keywords"), xmp_values.get("keywords")
    )
    if values.get("taken_local") is not None and values.get("taken_offset") is None:
        values["taken_source"] = (values.get("taken_source") or "exif") + " (local time)"
    return PhotoMetadata(problems=tuple(problems), **values)


__all__ = ["PhotoMetadata", "parse_exif_datetime", "parse_offset", "read_metadata"]
