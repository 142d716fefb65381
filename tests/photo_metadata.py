"""Photos with metadata, written by the tests: EXIF (date, offset, GPS, camera, lens) and
XMP keywords into a JPEG with Pillow, and the same EXIF into a HEIC with pillow-heif."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def _dms(x: float) -> tuple[float, float, float]:
    x = abs(x)
    d = int(x)
    m = int((x - d) * 60)
    return float(d), float(m), round(((x - d) * 60 - m) * 60, 3)


def exif_for(
    taken: str | None = None,
    offset: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    alt: float | None = None,
    make: str | None = None,
    model: str | None = None,
    lens: str | None = None,
) -> Image.Exif:
    ex = Image.Exif()
    if make:
        ex[0x010F] = make
    if model:
        ex[0x0110] = model
    sub = ex.get_ifd(0x8769)
    if taken:
        sub[0x9003] = taken
    if offset:
        sub[0x9011] = offset
    if lens:
        sub[0xA434] = lens
    if lat is not None and lon is not None:
        gps = ex.get_ifd(0x8825)
        gps[1] = "S" if lat < 0 else "N"
        gps[2] = _dms(lat)
        gps[3] = "W" if lon < 0 else "E"
        gps[4] = _dms(lon)
        if alt is not None:
            gps[5] = b"\x01" if alt < 0 else b"\x00"
            gps[6] = abs(alt)
    return ex


def xmp_packet(keywords: list[str], title: str | None = None) -> bytes:
    items = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    t = (
        f'<dc:title><rdf:Alt><rdf:li xml:lang="x-default">{title}</rdf:li></rdf:Alt></dc:title>'
        if title
        else ""
    )
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        'xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>{t}"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    ).encode()


def picture(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A smooth random picture (different per seed, so the photo ids differ)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def jpeg_with(ex: Image.Exif | None, xmp: bytes | None = None, seed: int = 0) -> bytes:
    out = io.BytesIO()
    kwargs: dict = {"quality": 90}
    if ex is not None:
        kwargs["exif"] = ex
    if xmp:
        kwargs["xmp"] = xmp
    picture(seed).save(out, format="JPEG", **kwargs)
    return out.getvalue()


def heic_with(ex: Image.Exif | None, seed: int = 0) -> bytes:
    import pillow_heif

    out = io.BytesIO()
    heif = pillow_heif.from_pillow(picture(seed))
    heif.save(out, format="HEIF", exif=ex.tobytes() if ex is not None else None)
    return out.getvalue()
