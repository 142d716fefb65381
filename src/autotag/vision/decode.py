"""Photo bytes → BGR pixels, or an ``ImageError`` whose reason a person can act on.

Everything uploaded is untrusted, so the order of checks matters: size on disk first, then
the format from the magic bytes, then the dimensions from the header alone (Pillow's image
classes parse headers lazily), and only then a full decode. A decompression bomb is refused
before a single pixel buffer is allocated.

Decoders: OpenCV for JPEG (it applies EXIF orientation and converts CMYK and grey itself),
PNG, WebP, BMP and TIFF (read unchanged, so that 16-bit depth and alpha are handled here);
Pillow for GIF (first frame, palette transparency), which OpenCV reads poorly; libheif
(``pillow-heif``) for HEIC; LibRaw (``rawpy``) for camera RAW (``_decode_raw``).
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from autotag.errors import ImageError

if TYPE_CHECKING:
    from pillow_heif import HeifFile
    from rawpy import RawPy

SUPPORTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF", "RAW")
# ISO base media brands (bytes 8-12 of the ftyp box) of HEIC/HEIF stills and of AVIF.
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"hevc", b"hevx")
_AVIF_BRANDS = (b"avif", b"avis")

# Header parsers, called directly rather than through Image.open: Image.open runs Pillow's own
# decompression-bomb check, which would pre-empt ours (and its message) with a fixed limit.
_HEADER_CLASSES: dict[str, type[ImageFile.ImageFile]] = {
    "JPEG": JpegImagePlugin.JpegImageFile,
    "PNG": PngImagePlugin.PngImageFile,
    "GIF": GifImagePlugin.GifImageFile,
    "WEBP": WebPImagePlugin.WebPImageFile,
    "BMP": BmpImagePlugin.BmpImageFile,
    "TIFF": TiffImagePlugin.TiffImageFile,
}

_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class DecodeLimits:
    """What one untrusted image may cost before it is refused: bytes on disk, pixels, and
    the longest side. The values come from autotag's settings, passed in by the caller."""

    max_file_bytes: int
    max_pixels: int
    max_dimension: int
    # What decoding may allocate, from the header: pixels x channels x bytes per sample.
    max_decode_bytes: int = 512 << 20


@dataclass(frozen=True)
class DecodedImage:
    """Pixels ready for feature extraction: uint8 BGR, upright, alpha flattened onto white
    (``network_view`` is what the networks see of a cut-out).

    ``width`` and ``height`` are the photo's own (upright) size; ``bgr`` may be smaller when
    the decoder was asked for a reduced copy (see ``decode``'s ``min_side``).
    """

    bgr: np.ndarray
    width: int
    height: int
    format: str
    # (x0, y0, x1, y1) of the visible pixels in ``bgr`` when some pixels were fully
    # transparent: the photo is a cut-out (see ``network_view``).
    cutout: tuple[int, int, int, int] | None = None


def _fmt_bytes(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n} bytes"


def _too_big(size: int, limit: int) -> str:
    a, b = _fmt_bytes(size), _fmt_bytes(limit)
    if a == b:  # rounding would hide the difference
        a, b = f"{size:,} bytes", f"{limit:,} bytes"
    return f"file is {a}, limit {b}"


def _fmt_mpx(pixels: int) -> str:
    mpx = pixels / 1_000_000
    return f"{mpx:.0f} Mpx" if mpx >= 10 else f"{mpx:.1f} Mpx"


def sniff_format(data: bytes) -> str | None:
    """The image format named by the magic bytes, or None when it is none we decode."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM" and len(data) >= 26:
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[4:8] == b"ftyp":
        if data[8:12] in _AVIF_BRANDS:
            return "AVIF"
        if data[8:12] in _HEIF_BRANDS:
            return "HEIF"
    return None


def _describe_unknown(data: bytes) -> str:
    """Why bytes are not an image we take, as specific as a quick look allows."""
    head = data[:512]
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypmsf1", b"ftyphevc"):
        return "unsupported image format: HEIC/HEIF"
    if head[4:12] in (b"ftypavif", b"ftypavis"):
        return "unsupported image format: AVIF"
    if head[:4] in (b"II+\x00", b"MM\x00+"):
        return "unsupported image format: BigTIFF"
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or head[:4] == b"\xff\x4f\xff\x51":
        return "unsupported image format: JPEG 2000"
    if head[:4] == b"%PDF":
        return "not an image: PDF document"
    if head[:4] == b"PK\x03\x04" or head[:2] == b"\x1f\x8b":
        return "not an image: compressed archive"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<?xml") or b"<svg" in text:
        return "not an image: SVG/XML text (vector images are not supported)"
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text:
        return "not an image: HTML text"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        first = " ".join(f"{b:02x}" for b in data[:8])
        return f"not an image: unknown format (first bytes {first})"
    return "not an image: plain text"


def _read_header(data: bytes, fmt: str, limits: DecodeLimits) -> ImageFile.ImageFile:
    # Pillow calls a zero-size PNG/GIF "not identified"; say what is really wrong.
    raw = _raw_size(data, fmt)
    if raw is not None and 0 in raw:
        raise ImageError(f"image has zero size ({raw[0]}x{raw[1]})")
    if raw is not None:
        # Pillow's WebP reader allocates the whole canvas when it opens the file.
        check_dimensions(*raw, max_pixels=limits.max_pixels, max_dimension=limits.max_dimension)
    cls = _HEADER_CLASSES[fmt]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large: {_short(exc)}") from None
    # struct.error and IndexError escape Pillow's parsers on short or odd headers.
    except (SyntaxError, OSError, ValueError, EOFError, struct.error, IndexError) as exc:
        raise ImageError(f"corrupt {fmt} header: {_short(exc)}") from None


def _raw_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) read straight from a PNG, GIF or WebP header; None if not parsed."""
    if fmt == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if fmt == "GIF" and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if fmt == "WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            w = int.from_bytes(data[24:27], "little") + 1
            h = int.from_bytes(data[27:30], "little") + 1
            return w, h
        if chunk == b"VP8L" and data[20] == 0x2F:
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
    return None


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg[:160]


def check_dimensions(width: int, height: int, *, max_pixels: int, max_dimension: int) -> None:
    """Refuse zero-size, too many pixels, or too long a side (in that order of precedence)."""
    if width <= 0 or height <= 0:
        raise ImageError(f"image has zero size ({width}x{height})")
    pixels = width * height
    if pixels > max_pixels:
        raise ImageError(
            f"image is {width}x{height} = {_fmt_mpx(pixels)}, limit {_fmt_mpx(max_pixels)}"
        )
    if max(width, height) > max_dimension:
        raise ImageError(f"image is {width}x{height}, limit {max_dimension} px per side")


def check_decode_budget(header: Image.Image, data: bytes, fmt: str, max_bytes: int) -> None:
    """Refuse, from the header alone, a decode whose pixels would take more than max_bytes:
    width x height x channels (at least the 3 of BGR) x bytes per sample."""
    width, height = header.size
    channels = 4 if fmt == "GIF" or header.mode == "P" else max(3, len(header.getbands()))
    bits = 32 if header.mode in ("I", "F") else 16 if header.mode.startswith("I;16") else 8
    if fmt == "PNG" and len(data) > 24:
        bits = max(bits, data[24])  # IHDR bit depth: Pillow reports 16-bit RGB as "RGB"
    elif fmt == "TIFF":
        tags = getattr(header, "tag_v2", {})
        try:  # BitsPerSample (one per sample) and SamplesPerPixel
            per_sample = tags.get(258, 8)
            bits = max(bits, *(per_sample if isinstance(per_sample, tuple) else (per_sample,)))
            channels = max(channels, int(tags.get(277, 1)))
        except (TypeError, ValueError):
            raise ImageError("corrupt TIFF header: bad BitsPerSample/SamplesPerPixel") from None
    need = width * height * channels * max(1, int(bits) // 8)
    if need > max_bytes:
        raise ImageError(
            f"decoding this {width}x{height} {fmt} ({channels} channels, {bits}-bit) needs "
            f"{_fmt_bytes(need)}, over the {_fmt_bytes(max_bytes)} decode budget"
        )


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """Scale any integer or float depth to 8 bits (16-bit PNG/TIFF, float TIFF)."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return cv2.convertScaleAbs(img, alpha=1.0 / 257.0)  # rounds and saturates
    if np.issubdtype(img.dtype, np.floating):
        f = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        scale = 255.0 if float(f.max(initial=0.0)) <= 1.0 else 1.0
        return np.clip(f * scale + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        wide = (img.astype(np.float64) - info.min) / (info.max - info.min)
        return np.clip(wide * 255.0 + 0.5, 0, 255).astype(np.uint8)
    raise ImageError(f"unsupported pixel type {img.dtype}")


def _to_bgr(img: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Any channel layout → 3-channel BGR, alpha composited onto white; and the mask of
    visible pixels when some are fully transparent (else None)."""
    img = _to_uint8(img)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), None
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR), None
    if channels == 2:  # grey + alpha
        grey = composite_on_white(img[:, :, :1], img[:, :, 1])
        return cv2.cvtColor(grey[:, :, 0], cv2.COLOR_GRAY2BGR), _visible(img[:, :, 1])
    if channels == 3:
        return img, None
    return composite_on_white(img[:, :, :3], img[:, :, 3]), _visible(img[:, :, 3])


def _visible(alpha: np.ndarray) -> np.ndarray | None:
    visible = alpha > 0
    return None if visible.all() else visible


def _box(visible: np.ndarray | None) -> tuple[int, int, int, int] | None:
    if visible is None:
        return None
    rows, cols = np.flatnonzero(visible.any(axis=1)), np.flatnonzero(visible.any(axis=0))
    if not len(rows):
        return None  # nothing visible: the white square is all there is
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


# A cut-out is shown to the networks centred on a white square this much wider than its
# longer side, so that their centre crop (7/8 of the short side) keeps all of it.
CUTOUT_SCALE = 8 / 7
# Its longer side at most this (the networks look at 224-292 px; memory stays bounded).
CUTOUT_MAX_SIDE = 1024


def network_view(image: DecodedImage) -> np.ndarray:
    """The pixels the networks see. For an ordinary photo: ``bgr``. For a cut-out (a PNG,
    WebP or GIF with fully transparent pixels) the transparent margin is no part of the
    photo, so the visible pixels are cropped and centred on a white square with a margin,
    as ImageNet's objects sit whole inside their frames; the centre crop would otherwise cut
    off the ends of a tightly cropped object (or, for a wide one, most of it)."""
    if image.cutout is None:
        return image.bgr
    x0, y0, x1, y1 = image.cutout
    obj = image.bgr[y0:y1, x0:x1]
    longer = max(obj.shape[:2])
    if longer > CUTOUT_MAX_SIDE:
        f = CUTOUT_MAX_SIDE / longer
        size = (max(1, round(obj.shape[1] * f)), max(1, round(obj.shape[0] * f)))
        obj = cv2.resize(obj, size, interpolation=cv2.INTER_AREA)
    h, w = obj.shape[:2]
    side = int(np.ceil(max(h, w) * CUTOUT_SCALE))
    out = np.full((side, side, 3), 255, np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = obj
    return out


def composite_on_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 colour (HxWxC) over white through uint8 alpha (HxW), rounded to nearest."""
    a = alpha.astype(np.uint16)[:, :, None]
    out = (color.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def apply_orientation(bgr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn pixels upright according to an EXIF orientation value (1-8; others ignored)."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda a: a.transpose(1, 0, 2)[::-1],
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(bgr)) if op else bgr


def _orientation(header: Image.Image, data: bytes, fmt: str) -> int:
    """EXIF orientation of a PNG/WebP/TIFF (JPEG's is applied by OpenCV); 1 when absent/bad."""
    if fmt == "PNG" and b"eXIf" not in data:
        return 1  # Pillow would decode the whole PNG looking for a late eXIf chunk
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = header.getexif().get(_EXIF_ORIENTATION, 1)
        return int(value) if isinstance(value, int) else 1
    except Exception:  # a malformed EXIF block only costs us the rotation
        return 1


def _truncation_hint(data: bytes, fmt: str) -> str:
    tail = data[-64:].rstrip(b"\x00")
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if fmt == "PNG" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    return f"corrupt {fmt} data (decoder failed)"


def _decode_gif(header: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        header.seek(0)
        rgba = np.asarray(header.convert("RGBA"))
    except (OSError, ValueError, EOFError, SyntaxError, IndexError, struct.error) as exc:
        raise ImageError(f"corrupt GIF data: {_short(exc)}") from None
    return composite_on_white(rgba[:, :, 2::-1], rgba[:, :, 3]), _visible(rgba[:, :, 3])


# JPEG's DCT lets OpenCV decode at 1/2, 1/4 or 1/8 scale directly, doing a fraction of the work.
_REDUCED_JPEG_FLAGS = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)


def _jpeg_flags(width: int, height: int, min_side: int | None) -> int:
    """The largest JPEG reduction that still leaves a short side of at least ``min_side``."""
    if min_side:
        for factor, flags in _REDUCED_JPEG_FLAGS:
            if min(width, height) // factor >= min_side:
                return flags
    return cv2.IMREAD_COLOR


def _decode_cv2(
    data: bytes, fmt: str, header: Image.Image, min_side: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    buf = np.frombuffer(data, dtype=np.uint8)
    # JPEG (and CMYK TIFF): IMREAD_COLOR applies EXIF orientation and converts CMYK/grey.
    color_mode = fmt == "JPEG" or (fmt == "TIFF" and header.mode in ("CMYK", "YCbCr", "LAB"))
    if fmt == "JPEG":
        flags = _jpeg_flags(*header.size, min_side)
    else:
        flags = cv2.IMREAD_COLOR if color_mode else cv2.IMREAD_UNCHANGED
    try:
        img = cv2.imdecode(buf, flags)
    except cv2.error as exc:
        raise ImageError(f"corrupt {fmt} data: {_short(exc)}") from None
    if img is None or img.size == 0:
        raise ImageError(_truncation_hint(data, fmt))
    bgr, visible = _to_bgr(img)
    if not color_mode:
        orientation = _orientation(header, data, fmt)
        bgr = apply_orientation(bgr, orientation)
        if visible is not None:
            visible = apply_orientation(visible[:, :, None], orientation)[:, :, 0]
    return bgr, visible


def decode(data: bytes, limits: DecodeLimits, *, min_side: int | None = None) -> DecodedImage:
    """Decode untrusted bytes to upright uint8 BGR, or raise ImageError with the reason.

    With ``min_side``, a JPEG may be decoded reduced (1/2, 1/4 or 1/8 scale, in the DCT
    domain) as long as its short side stays at least ``min_side`` pixels: a 12-megapixel
    photo costs a fraction of a full decode when the features only need 256 px.
    """
    if not data:
        raise ImageError("empty file (0 bytes)")
    if len(data) > limits.max_file_bytes:
        raise ImageError(_too_big(len(data), limits.max_file_bytes))
    fmt = sniff_format(data)
    if fmt is None and camera_raw(data) is not None:
        return _decode_raw(data, limits, min_side)
    if fmt is None:
        raise ImageError(_describe_unknown(data))

    if fmt in ("HEIF", "AVIF"):
        return _decode_heif(data, fmt, limits)
    if fmt == "TIFF" and camera_raw(data) is not None:
        return _decode_raw(data, limits, min_side)
    header = _read_header(data, fmt, limits)
    width, height = header.size
    check_dimensions(
        width, height, max_pixels=limits.max_pixels, max_dimension=limits.max_dimension
    )
    check_decode_budget(header, data, fmt, limits.max_decode_bytes)

    try:
        if fmt == "GIF":
            bgr, visible = _decode_gif(header)
        else:
            bgr, visible = _decode_cv2(data, fmt, header, min_side)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"not enough memory to decode this {width}x{height} {fmt}") from None
    except Exception as exc:  # hostile input must end as a reason, never as a crash
        raise ImageError(f"corrupt {fmt} data: {type(exc).__name__}: {_short(exc)}") from None
    bgr = np.ascontiguousarray(bgr)  # OpenCV calls downstream want C order
    h, w = bgr.shape[:2]
    if h == 0 or w == 0:
        raise ImageError(f"image has zero size ({w}x{h})")
    if (h > w) != (height > width):  # EXIF orientation turned it: report the upright size
        width, height = height, width
    if (w, h) != (width, height) and fmt != "JPEG":
        width, height = w, h  # only a JPEG is ever decoded reduced
    return DecodedImage(
        bgr=bgr, width=int(width), height=int(height), format=fmt, cutout=_box(visible)
    )


def _decode_heif(data: bytes, fmt: str, limits: DecodeLimits) -> DecodedImage:
    """HEIC/HEIF (libheif, in the ``pillow-heif`` wheel) or AVIF (Pillow's own plugin): the
    container is parsed and the size checked before a pixel is decoded; libheif applies
    the container's rotation and mirroring itself."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "HEIF":
                import pillow_heif

                image: HeifFile | Image.Image = pillow_heif.open_heif(
                    io.BytesIO(data), convert_hdr_to_8bit=True
                )
            else:
                from PIL import AvifImagePlugin

                image = AvifImagePlugin.AvifImageFile(io.BytesIO(data))
            width, height = image.size
            mode = str(image.mode)
    except Exception as exc:  # a truncated or hostile container: a reason, never a crash
        raise ImageError(f"corrupt {fmt} file: {_short(exc)}") from None
    check_dimensions(
        width, height, max_pixels=limits.max_pixels, max_dimension=limits.max_dimension
    )
    need = width * height * max(3, len(mode))
    if need > limits.max_decode_bytes:
        raise ImageError(
            f"decoding this {width}x{height} {fmt} needs {_fmt_bytes(need)}, over the "
            f"{_fmt_bytes(limits.max_decode_bytes)} decode budget"
        )
    try:
        if isinstance(image, Image.Image):  # AVIF
            pixels = np.asarray(image.convert("RGBA" if "A" in mode else "RGB"))
        else:  # HEIF: libheif's pixels, 8 bits per sample
            pixels = np.asarray(image)
    except MemoryError:
        raise ImageError(f"not enough memory to decode this {width}x{height} {fmt}") from None
    except Exception as exc:  # noqa: BLE001 - hostile input ends as a reason
        raise ImageError(f"corrupt {fmt} data: {type(exc).__name__}: {_short(exc)}") from None
    if pixels.ndim == 3 and pixels.shape[2] >= 3:  # RGB(A) -> BGR(A)
        pixels = np.ascontiguousarray(pixels[:, :, [2, 1, 0, *range(3, pixels.shape[2])]])
    bgr, visible = _to_bgr(pixels)
    h, w = bgr.shape[:2]
    return DecodedImage(
        bgr=np.ascontiguousarray(bgr), width=int(w), height=int(h), format=fmt, cutout=_box(visible)
    )


# Camera RAW. Most RAW formats are TIFF files (DNG, CR2, NEF, ARW, PEF, SRW...): they are
# told from a plain TIFF by their first directory; a few have their own magic bytes.
_RAW_MAGIC = (
    (0, b"FUJIFILMCCD-RAW", "RAF"),
    (0, b"IIRO", "ORF"),
    (0, b"IIRS", "ORF"),
    (0, b"MMOR", "ORF"),
    (0, b"IIU\x00", "RW2"),
    (4, b"ftypcrx ", "CR3"),
)
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
_DNG_VERSION, _SUBIFDS, _MAKE = 50706, 330, 271
# PhotometricInterpretation CFA and LinearRaw; compressions only RAW files use.
_RAW_PHOTOMETRIC = (32803, 34892)
_RAW_COMPRESSION = (6, 34713, 32767, 32769, 32770, 65000)
# A RAW file's embedded preview is used instead of demosaicing the sensor data when its
# longer side is at least this, or half the sensor's: it is decoded as a JPEG (its limits,
# its reduced decode), many times faster than LibRaw's half-size postprocess.
RAW_PREVIEW_MIN_SIDE = 1024
# LibRaw's orientation codes (sizes.flip) as EXIF orientations, for the preview.
_FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}


def _tiff_ifd0(data: bytes, at: int | None = None) -> dict[int, tuple[int, int, bytes]] | None:
    """A directory of a TIFF (the first by default): tag -> (type, count, value field)."""
    if len(data) < 8 or data[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    e = "<" if data[:2] == b"II" else ">"
    if at is None:
        (at,) = struct.unpack(e + "I", data[4:8])
    if at + 2 > len(data):
        return None
    (n,) = struct.unpack(e + "H", data[at : at + 2])
    tags: dict[int, tuple[int, int, bytes]] = {}
    for i in range(min(n, 512)):
        entry = data[at + 2 + 12 * i : at + 14 + 12 * i]
        if len(entry) < 12:
            break
        tag, typ, count = struct.unpack(e + "HHI", entry[:8])
        tags[tag] = (typ, count, entry[8:12])
    return tags


def _tiff_int(data: bytes, field: tuple[int, int, bytes]) -> int:
    e = "<" if data[:2] == b"II" else ">"
    typ, _, value = field
    fmt = e + ("H" if typ == 3 else "I")
    return int(struct.unpack(fmt, value[: struct.calcsize(fmt)])[0])


def _tiff_text(data: bytes, field: tuple[int, int, bytes]) -> str:
    typ, count, value = field
    if typ != 2:
        return ""
    if count > 4:
        e = "<" if data[:2] == b"II" else ">"
        (at,) = struct.unpack(e + "I", value)
        value = data[at : at + min(count, 64)]
    return value.split(b"\x00")[0].decode("latin-1").strip()


def camera_raw(data: bytes) -> str | None:
    """The camera RAW format of these bytes ("DNG", "CR2", "NEF", "ARW", "RAF", ...), or
    None for anything else, a plain TIFF included."""
    for at, magic, name in _RAW_MAGIC:
        if data[at : at + len(magic)] == magic:
            return name
    try:
        tags = _tiff_ifd0(data)
        if not tags:
            return None
        if data[:2] == b"II" and data[8:10] == b"CR":
            return "CR2"
        if _DNG_VERSION in tags:
            return "DNG"
        make = _tiff_text(data, tags[_MAKE]).upper() if _MAKE in tags else ""
        if not make:
            return None
        photometric = _tiff_int(data, tags[262]) if 262 in tags else None
        compression = _tiff_int(data, tags[259]) if 259 in tags else None
        subfile = _tiff_int(data, tags[254]) if 254 in tags else 0
        if not (
            _SUBIFDS in tags
            or photometric in _RAW_PHOTOMETRIC
            or compression in _RAW_COMPRESSION
            or subfile == 1
        ):
            return None
    except (struct.error, ValueError):
        return None
    for prefix, name in (("NIKON", "NEF"), ("SONY", "ARW"), ("CANON", "CR2"), ("PENTAX", "PEF")):
        if make.startswith(prefix):
            return name
    return "RAW"


def _tiff_raw_sizes(data: bytes) -> tuple[list[tuple[int, int]], int]:
    """The (width, height) of each image a TIFF-based RAW declares in its first directory and
    its SubIFDs (a sensor image is usually in a SubIFD), read before LibRaw sees the file;
    and where the last of their strips ends (past the end of the bytes: truncated)."""
    e = "<" if data[:2] == b"II" else ">"
    found = []
    end = 0
    try:
        ifd0 = _tiff_ifd0(data) or {}
        dirs = [ifd0]
        if _SUBIFDS in ifd0:
            typ, count, value = ifd0[_SUBIFDS]
            offsets = value if count == 1 else data[struct.unpack(e + "I", value)[0] :]
            for i in range(min(count, 8)):
                (at,) = struct.unpack(e + "I", offsets[4 * i : 4 * i + 4])
                dirs.append(_tiff_ifd0(data, at) or {})
        for tags in dirs:
            if 256 in tags and 257 in tags:
                found.append((_tiff_int(data, tags[256]), _tiff_int(data, tags[257])))
            if 273 in tags and 279 in tags and tags[273][1] == tags[279][1]:
                end = max(end, _tiff_last(data, tags[273]) + _tiff_last(data, tags[279]))
    except (struct.error, ValueError):
        pass
    return found, end


def _tiff_last(data: bytes, field: tuple[int, int, bytes]) -> int:
    """The last value of a SHORT/LONG array (StripOffsets, StripByteCounts)."""
    typ, count, value = field
    size = 2 if typ == 3 else 4
    if count * size > 4:
        e = "<" if data[:2] == b"II" else ">"
        (at,) = struct.unpack(e + "I", value)
        value = data[at + (count - 1) * size : at + count * size]
        count = 1
    return _tiff_int(data, (typ, 1, value[(count - 1) * size : count * size].ljust(4, b"\x00")))


def _raw_preview(raw: RawPy, limits: DecodeLimits, min_side: int | None) -> DecodedImage | None:
    """The RAW file's embedded JPEG preview decoded (JPEG path, JPEG limits), or None when
    it has none, it is not a JPEG, or it is too small to stand for the photo."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawError, MemoryError):
        return None
    if thumb.format != rawpy.ThumbFormat.JPEG or sniff_format(bytes(thumb.data[:4])) != "JPEG":
        return None
    try:
        preview = decode(bytes(thumb.data), limits, min_side=min_side)
    except ImageError:
        return None
    sizes = raw.sizes
    enough = min(RAW_PREVIEW_MIN_SIDE, max(sizes.width, sizes.height) // 2)
    return preview if max(preview.width, preview.height) >= enough else None


def _raw_msg(exc: BaseException) -> str:
    """LibRaw's message (rawpy gives it as bytes)."""
    arg = exc.args[0] if exc.args else ""
    return _short(ValueError(arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)))


def _open_raw(data: bytes) -> Any:
    import rawpy

    raw = rawpy.RawPy()
    raw.open_buffer(io.BytesIO(data))  # the header only: nothing is unpacked yet
    return raw


def _decode_raw(data: bytes, limits: DecodeLimits, min_side: int | None) -> DecodedImage:
    """Camera RAW with LibRaw (in the ``rawpy`` wheel). LibRaw parses the header first; the
    sensor's size is checked against the limits (a RAW bomb declares a huge sensor in a few
    bytes) before anything is unpacked. The embedded preview JPEG is used when it is large
    enough, else the sensor data is demosaiced at half size."""
    kind = camera_raw(data) or "RAW"
    import rawpy

    if data[:2] in (b"II", b"MM"):
        declared, end = _tiff_raw_sizes(data)
        for w, h in declared:
            check_dimensions(w, h, max_pixels=limits.max_pixels, max_dimension=limits.max_dimension)
        if end > len(data):
            raise ImageError(
                f"truncated {kind} file: {len(data):,} bytes, its image data runs to {end:,}"
            )
    try:
        raw = _open_raw(data)
        sizes = raw.sizes
    except rawpy.LibRawTooBigError as exc:
        raise ImageError(f"image too large: LibRaw refuses this {kind} ({_raw_msg(exc)})") from None
    except MemoryError:
        raise ImageError(f"not enough memory to read this {kind} file") from None
    except Exception as exc:  # noqa: BLE001 - a truncated or hostile RAW: a reason
        raise ImageError(f"corrupt {kind} file: {_raw_msg(exc)}") from None
    with raw:
        for w, h in ((sizes.raw_width, sizes.raw_height), (sizes.width, sizes.height)):
            check_dimensions(w, h, max_pixels=limits.max_pixels, max_dimension=limits.max_dimension)
        # unpacked sensor data (16 bits a photosite) + the half-size 16-bit RGBA image
        need = sizes.raw_width * sizes.raw_height * 2 + sizes.width * sizes.height * 2
        if need > limits.max_decode_bytes:
            raise ImageError(
                f"decoding this {sizes.width}x{sizes.height} {kind} needs {_fmt_bytes(need)}, "
                f"over the {_fmt_bytes(limits.max_decode_bytes)} decode budget"
            )
        turned = sizes.flip in (5, 6)
        width, height = (sizes.height, sizes.width) if turned else (sizes.width, sizes.height)
        preview = _raw_preview(raw, limits, min_side)
        if preview is not None:
            bgr = preview.bgr
            # The preview is stored as the sensor sees it, unless its own EXIF turned it.
            sensor_view = (bgr.shape[1] > bgr.shape[0]) == (sizes.width > sizes.height)
            if sizes.flip == 3 or (turned and sensor_view):
                bgr = apply_orientation(bgr, _FLIP_TO_ORIENTATION[sizes.flip])
        else:
            try:
                with _open_raw(data) as fresh:  # a failed preview leaves LibRaw unable to unpack
                    fresh.unpack()
                    rgb = fresh.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
            except MemoryError:
                raise ImageError(f"not enough memory to decode this {kind}") from None
            except Exception as exc:  # noqa: BLE001 - hostile input ends as a reason
                raise ImageError(f"corrupt {kind} data: {_raw_msg(exc)}") from None
            bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    if bgr.size == 0:
        raise ImageError(f"image has zero size ({width}x{height})")
    return DecodedImage(
        bgr=np.ascontiguousarray(bgr), width=int(width), height=int(height), format="RAW"
    )


def decode_file(
    path: str | Path, limits: DecodeLimits, *, min_side: int | None = None
) -> DecodedImage:
    """decode() for a file, refusing an oversized one from its size before reading it."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > limits.max_file_bytes:
            raise ImageError(_too_big(size, limits.max_file_bytes))
        data = p.read_bytes()
    except ImageError:
        raise
    except OSError as exc:
        raise ImageError(f"cannot read {p.name}: {exc.strerror or exc}") from None
    return decode(data, limits, min_side=min_side)
