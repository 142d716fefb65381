"""A corpus of hostile and awkward photo files, with the outcome each must get.

Used by the decoder's unit tests and by the end-to-end test that pushes the same files
through the cluster. Importable without pytest: ``from tests.hostile import
make_hostile_corpus`` (or load this file by path).

Every file is written from code (no fixtures on disk, nothing downloaded). The oversized
file is ``max_bytes + 1`` bytes long, so a test can use a small ``max_bytes`` limit and hand
the same limit to the decoder (``AUTOTAG_MAX_FILE_BYTES`` for a cluster).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

TAGGED = "tagged"
FAILED = "failed"

# Substring each failed file's reason must contain (case-sensitive), by file name.
EXPECTED_REASONS: dict[str, str] = {
    "empty.jpg": "empty file",
    "text_renamed.jpg": "not an image: plain text",
    "random_bytes.png": "not an image: unknown format",
    "svg_renamed.jpg": "SVG",
    "page.html.png": "HTML",
    "truncated.jpg": "truncated JPEG",
    "truncated.png": "truncated PNG",
    "bad_header.png": "corrupt PNG header",
    "bomb_30000x30000.png": "image is 30000x30000 = 900 Mpx, limit",
    "huge_header.gif": "image is 65535x65535",
    "bomb_header.webp": "image is 16383x16383 = 268 Mpx, limit",
    "too_wide_25000x1.png": "px per side",
    "zero_width.png": "zero size",
    "oversized.jpg": "file is",
}


def _photo(width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """A deterministic RGB test picture: gradients, a disc and some noise (not flat)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.zeros((height, width, 3), np.float32)
    img[..., 0] = 255 * x / max(width - 1, 1)
    img[..., 1] = 255 * y / max(height - 1, 1)
    img[..., 2] = 128
    disc = (x - width * 0.6) ** 2 + (y - height * 0.45) ** 2 < (min(width, height) * 0.25) ** 2
    img[disc] = (230, 200, 40)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _save(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid 1-bit grey PNG of zeros: ~110 KB on disk, ``width*height`` pixels decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    parts = []
    rows_per_chunk = 1000
    block = row * rows_per_chunk
    for start in range(0, height, rows_per_chunk):
        n = min(rows_per_chunk, height - start)
        parts.append(comp.compress(block if n == rows_per_chunk else row * n))
    parts.append(comp.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims the given size, with a token IDAT (for header-level checks)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _png_chunk(b"IEND", b"")
    )


def _gif_with_screen(width: int, height: int) -> bytes:
    """A 1x1 GIF whose logical screen descriptor claims ``width`` x ``height``."""
    data = bytearray(_save(Image.new("P", (1, 1), 0), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def _webp_with_canvas(width: int, height: int) -> bytes:
    """A 1x1 extended WebP whose VP8X chunk claims a ``width`` x ``height`` canvas."""
    exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00"
    data = bytearray(_save(Image.new("RGBA", (1, 1)), "WEBP", lossless=True, exif=exif))
    assert data[12:16] == b"VP8X"
    data[24:27] = (width - 1).to_bytes(3, "little")
    data[27:30] = (height - 1).to_bytes(3, "little")
    return bytes(data)


def _animated_gif() -> bytes:
    frames = [Image.fromarray(_photo(160, 120, seed=i)).convert("P") for i in range(3)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _exif(**tags: object) -> bytes:
    ex = Image.Exif()
    for key, value in tags.items():
        ex[int(key.lstrip("t"), 16)] = value
    return ex.tobytes()


def hostile_files(max_bytes: int) -> dict[str, tuple[bytes, str]]:
    """File name → (content, expected outcome ``tagged``/``failed``)."""
    rgb = _photo()
    pil = Image.fromarray(rgb)
    jpeg = _save(pil, "JPEG", quality=90)
    noisy_png = _save(Image.fromarray(_photo(320, 240, seed=7)), "PNG")

    gray16 = (np.linspace(0, 65535, 240 * 320).reshape(240, 320)).astype(">u2")
    gray16_png = _save(Image.frombuffer("I;16B", (320, 240), gray16.tobytes(), "raw"), "PNG")

    rgba = np.dstack([rgb, np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))])
    files: dict[str, tuple[bytes, str]] = {
        # Refused outright.
        "empty.jpg": (b"", FAILED),
        "text_renamed.jpg": (b"Dear diary,\nthis is not a photo.\n" * 20, FAILED),
        "random_bytes.png": (np.random.default_rng(1).bytes(4096), FAILED),
        "svg_renamed.jpg": (
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10"'
            b' height="10"><rect width="10" height="10"/></svg>\n',
            FAILED,
        ),
        "page.html.png": (b"<!DOCTYPE html>\n<html><body><img src=x></body></html>\n", FAILED),
        "truncated.jpg": (jpeg[: len(jpeg) * 6 // 10], FAILED),
        "truncated.png": (noisy_png[: len(noisy_png) * 6 // 10], FAILED),
        "bad_header.png": (b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + b"\xff" * 7, FAILED),
        "bomb_30000x30000.png": (png_bomb(30000, 30000), FAILED),
        "huge_header.gif": (_gif_with_screen(65535, 65535), FAILED),
        "bomb_header.webp": (_webp_with_canvas(16383, 16383), FAILED),
        "too_wide_25000x1.png": (_save(Image.new("L", (25000, 1), 128), "PNG"), FAILED),
        "zero_width.png": (_png_header_only(0, 100), FAILED),
        # Awkward but legitimate: must be tagged.
        "animated.gif": (_animated_gif(), TAGGED),
        "gray16.png": (gray16_png, TAGGED),
        "cmyk.jpg": (_save(pil.convert("CMYK"), "JPEG", quality=90), TAGGED),
        "gray.jpg": (_save(pil.convert("L"), "JPEG", quality=90), TAGGED),
        "rgba.png": (_save(Image.fromarray(rgba, "RGBA"), "PNG"), TAGGED),
        "orientation6.jpg": (_save(pil, "JPEG", exif=_exif(t0112=6)), TAGGED),
        "huge_exif.jpg": (
            _save(pil, "JPEG", exif=_exif(t010e="A" * 60000, t0112=1)),
            TAGGED,
        ),
        "photo.tiff": (_save(pil, "TIFF", compression="tiff_lzw"), TAGGED),
        "photo.webp": (_save(pil, "WEBP", quality=80), TAGGED),
        "photo.bmp": (_save(pil, "BMP"), TAGGED),
        "one_pixel.png": (_save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), TAGGED),
        "palette_transparent.gif": (
            _save(pil.convert("P"), "GIF", transparency=0),
            TAGGED,
        ),
    }
    # A real JPEG padded past the limit (after its end marker): only the size is wrong.
    files["oversized.jpg"] = (jpeg + bytes(max(0, max_bytes + 1 - len(jpeg))), FAILED)
    too_big = [n for n, (d, _) in files.items() if n != "oversized.jpg" and len(d) > max_bytes]
    if too_big:
        raise ValueError(f"max_bytes={max_bytes} is too small for {too_big}")
    return files


def make_hostile_corpus(dirpath: str | Path, *, max_bytes: int | None = None) -> dict[str, str]:
    """Write the corpus into ``dirpath``; return file name → ``"tagged"`` or ``"failed"``.

    ``max_bytes`` is the file-size limit the consumer will enforce (default: the settings');
    ``oversized.jpg`` is one byte over it. Reasons to expect are in ``EXPECTED_REASONS``.
    """
    if max_bytes is None:
        from autotag.config import settings

        max_bytes = settings().limits.max_file_bytes
    out = Path(dirpath)
    out.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (content, outcome) in hostile_files(max_bytes).items():
        (out / name).write_bytes(content)
        expected[name] = outcome
    return expected


if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile")
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else None
    for fname, outcome in sorted(make_hostile_corpus(target, max_bytes=limit).items()):
        print(f"{outcome:7} {fname}")
