"""Decoding untrusted bytes: every hostile kind gets its outcome and a specific reason."""

from __future__ import annotations

import importlib.util
import io
import time
from dataclasses import replace
from functools import cache
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageOps

from autotag.errors import ImageError
from autotag.vision.decode import (
    CUTOUT_SCALE,
    DecodeLimits,
    apply_orientation,
    decode,
    decode_file,
    network_view,
    sniff_format,
)

MAX_BYTES = 400_000
LIMITS = DecodeLimits(max_file_bytes=MAX_BYTES, max_pixels=64_000_000, max_dimension=20_000)


def _load_hostile() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "hostile.py"
    spec = importlib.util.spec_from_file_location("autotag_tests_hostile", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hostile = _load_hostile()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("hostile")
    return d, hostile.make_hostile_corpus(d, max_bytes=MAX_BYTES)


def test_corpus_has_every_kind(corpus: tuple[Path, dict[str, str]]) -> None:
    d, expected = corpus
    assert len(expected) >= 20
    assert set(expected.values()) == {"tagged", "failed"}
    assert {n for n, o in expected.items() if o == "failed"} == set(hostile.EXPECTED_REASONS)
    assert all((d / n).is_file() for n in expected)
    assert (d / "oversized.jpg").stat().st_size == MAX_BYTES + 1
    assert (d / "bomb_30000x30000.png").stat().st_size < 200_000


@pytest.mark.parametrize("name", sorted(hostile.hostile_files(MAX_BYTES)))
def test_hostile_file_outcome(corpus: tuple[Path, dict[str, str]], name: str) -> None:
    d, expected = corpus
    if expected[name] == "tagged":
        img = decode_file(d / name, LIMITS)
        assert img.bgr.dtype == np.uint8
        assert img.bgr.ndim == 3 and img.bgr.shape[2] == 3
        assert img.bgr.shape[:2] == (img.height, img.width)
        assert img.bgr.flags["C_CONTIGUOUS"]
    else:
        with pytest.raises(ImageError) as err:
            decode_file(d / name, LIMITS)
        assert hostile.EXPECTED_REASONS[name] in str(err.value)
        assert "\n" not in str(err.value)


def test_bomb_refused_from_header_without_decoding(corpus: tuple[Path, dict[str, str]]) -> None:
    d, _ = corpus
    data = (d / "bomb_30000x30000.png").read_bytes()
    t0 = time.perf_counter()
    with pytest.raises(ImageError) as err:
        decode(data, LIMITS)
    assert time.perf_counter() - t0 < 0.5
    assert str(err.value) == "image is 30000x30000 = 900 Mpx, limit 64 Mpx"


def test_limits_are_parameters() -> None:
    png = _png(np.zeros((100, 200, 3), np.uint8))
    assert decode(png, LIMITS).width == 200
    with pytest.raises(ImageError, match=r"image is 200x100 = 0.0 Mpx, limit 0.0 Mpx"):
        decode(png, replace(LIMITS, max_pixels=10_000))
    with pytest.raises(ImageError, match="limit 150 px per side"):
        decode(png, replace(LIMITS, max_dimension=150))
    with pytest.raises(ImageError, match=r"^file is \d+ bytes, limit 100 bytes$"):
        decode(png, replace(LIMITS, max_file_bytes=100))


def test_decode_budget_is_computed_from_the_header() -> None:
    """Item 9: pixels x channels x bytes per sample, read from the header, is checked before
    decoding: a 16-bit RGB PNG needs twice the bytes of the 8-bit one with the same pixels."""
    import cv2

    rgb8 = np.full((500, 1000, 3), 128, np.uint8)
    ok, png16 = cv2.imencode(".png", rgb8.astype(np.uint16) * 257)
    assert ok
    budget = 1000 * 500 * 3 * 2 - 1  # one byte short of the 16-bit image
    limits = replace(LIMITS, max_file_bytes=8 << 20, max_decode_bytes=budget)
    assert decode(_png(rgb8), limits).width == 1000
    with pytest.raises(ImageError, match=r"1000x500 PNG \(3 channels, 16-bit\) needs 2\.9 MB"):
        decode(png16.tobytes(), limits)
    assert decode(png16.tobytes(), replace(limits, max_decode_bytes=budget + 1)).width == 1000


def test_opencv_pixel_limit_matches_ours() -> None:
    """Item 9: the workers' environment sets OpenCV's own pixel limit to max_pixels."""
    import os
    import subprocess
    import sys

    from autotag.config import child_env, load_settings

    env = child_env(load_settings({**os.environ, "AUTOTAG_MAX_PIXELS": "1000"}))
    assert env["OPENCV_IO_MAX_IMAGE_PIXELS"] == "1000"
    code = (
        "import cv2, numpy as np\n"
        "ok, buf = cv2.imencode('.png', np.zeros((40, 40, 3), np.uint8))\n"
        "try:\n    cv2.imdecode(buf, cv2.IMREAD_COLOR)\nexcept cv2.error:\n    print('refused')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "refused", out.stderr


def _png(rgb: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, mode).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def test_exif_orientation_6_is_applied() -> None:
    rgb = hostile._photo(320, 240)
    ex = Image.Exif()
    ex[0x0112] = 6
    data = _jpeg(Image.fromarray(rgb), quality=95, exif=ex.tobytes())
    img = decode(data, LIMITS)
    assert (img.width, img.height) == (240, 320)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))[:, :, ::-1]
    assert np.abs(img.bgr.astype(int) - upright.astype(int)).mean() < 3


@pytest.mark.parametrize("orientation", range(1, 9))
def test_apply_orientation_matches_pillow(orientation: int) -> None:
    rgb = np.random.default_rng(orientation).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    im = Image.fromarray(rgb)
    ex = im.getexif()
    ex[0x0112] = orientation
    im.info["exif"] = ex.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(im))
    assert np.array_equal(apply_orientation(rgb, orientation), expected)


def test_alpha_is_composited_onto_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red, but...
    rgba[:2, :, 3] = 0  # ...transparent on top
    rgba[2:, :, 3] = 255
    img = decode(_png(rgba, "RGBA"), LIMITS)
    assert img.bgr[0, 0].tolist() == [255, 255, 255]
    assert img.bgr[3, 0].tolist() == [0, 0, 255]


def test_a_cut_out_is_shown_whole_and_centred_on_white() -> None:
    """Transparent margins are no part of the photo: the networks see the visible pixels
    centred on a white square wide enough that their 7/8 centre crop keeps all of them."""
    rgba = np.zeros((100, 300, 4), np.uint8)
    rgba[20:60, 50:250] = (0, 0, 255, 255)  # a wide red object, transparent around it
    img = decode(_png(rgba, "RGBA"), LIMITS)
    assert (img.width, img.height) == (300, 100)  # the photo's own size is unchanged
    assert img.cutout == (50, 20, 250, 60)
    view = network_view(img)
    side = int(np.ceil(200 * CUTOUT_SCALE))
    assert view.shape == (side, side, 3)
    red = np.all(view == (255, 0, 0), axis=2)  # BGR of the red object
    rows, cols = np.flatnonzero(red.any(axis=1)), np.flatnonzero(red.any(axis=0))
    assert (cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1) == (200, 40)
    assert abs((cols[0] + cols[-1]) / 2 - (side - 1) / 2) <= 1
    assert abs((rows[0] + rows[-1]) / 2 - (side - 1) / 2) <= 1
    assert red.sum() == 200 * 40 and (view[~red] == 255).all()
    crop = int(side * 7 / 8)  # what a centre crop of 7/8 keeps
    lo = (side - crop) // 2
    assert red[lo : lo + crop, lo : lo + crop].sum() == red.sum()


def test_photos_without_transparent_pixels_are_shown_as_they_are() -> None:
    rgba = np.full((40, 60, 4), 255, np.uint8)
    rgba[..., 3] = 128  # translucent everywhere, but nothing is fully transparent
    for data in (_png(rgba, "RGBA"), _png(np.full((40, 60, 3), 90, np.uint8))):
        img = decode(data, LIMITS)
        assert img.cutout is None
        assert network_view(img) is img.bgr
    empty = np.zeros((40, 60, 4), np.uint8)  # fully transparent: nothing to crop to
    img = decode(_png(empty, "RGBA"), LIMITS)
    assert img.cutout is None and (network_view(img) == 255).all()


def test_16bit_is_scaled_not_clipped() -> None:
    g = np.array([[0, 257 * 128, 65535]], dtype=">u2")
    buf = io.BytesIO()
    Image.frombuffer("I;16B", (3, 1), g.tobytes(), "raw").save(buf, "PNG")
    img = decode(buf.getvalue(), LIMITS)
    assert img.bgr[0, :, 0].tolist() == [0, 128, 255]


def test_grey_and_cmyk_become_bgr() -> None:
    rgb = hostile._photo(64, 48)
    pil = Image.fromarray(rgb)
    grey = decode(_jpeg(pil.convert("L"), quality=95), LIMITS)
    assert grey.bgr.shape == (48, 64, 3)
    assert np.array_equal(grey.bgr[..., 0], grey.bgr[..., 2])
    cmyk = decode(_jpeg(pil.convert("CMYK"), quality=95), LIMITS)
    assert np.abs(cmyk.bgr[..., ::-1].astype(int) - rgb.astype(int)).mean() < 12


def test_animated_gif_gives_first_frame(corpus: tuple[Path, dict[str, str]]) -> None:
    d, _ = corpus
    img = decode_file(d / "animated.gif", LIMITS)
    first = np.asarray(Image.open(d / "animated.gif").convert("RGB"))[:, :, ::-1]
    assert img.format == "GIF"
    assert np.array_equal(img.bgr, first)


def test_formats_are_sniffed_from_bytes_not_names(corpus: tuple[Path, dict[str, str]]) -> None:
    d, _ = corpus
    assert sniff_format((d / "photo.webp").read_bytes()) == "WEBP"
    assert sniff_format((d / "photo.tiff").read_bytes()) == "TIFF"
    assert sniff_format((d / "text_renamed.jpg").read_bytes()) is None


def test_missing_file_is_an_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot read nothing.jpg"):
        decode_file(tmp_path / "nothing.jpg", LIMITS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_mutated_files_never_crash(fmt: str) -> None:
    """Random byte flips and cuts: decode either succeeds or raises ImageError."""
    buf = io.BytesIO()
    Image.fromarray(hostile._photo(48, 32)).save(buf, fmt)
    good = buf.getvalue()
    rng = np.random.default_rng(42)
    for _ in range(40):
        data = bytearray(good)
        for pos in rng.integers(0, len(data), 8):
            data[pos] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            data = data[: int(rng.integers(1, len(data)))]
        try:
            img = decode(bytes(data), LIMITS)
        except ImageError:
            continue
        assert img.bgr.ndim == 3 and img.bgr.shape[2] == 3


@cache
def _phone_pixels() -> np.ndarray:
    """scikit-image's astronaut enlarged to a phone's 4000×3000, with grain (made once)."""
    rgb = skimage.data.astronaut()
    big = cv2.resize(rgb, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    grain = np.random.default_rng(0).standard_normal(big.shape, dtype=np.float32) * 4
    return np.clip(big + grain, 0, 255).astype(np.uint8)


def _phone_jpeg(orientation: int = 1) -> bytes:
    """A 4000×3000 JPEG like a phone's (scikit-image's astronaut, enlarged, with grain)."""
    big = _phone_pixels()
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(big).save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


PHONE_LIMITS = replace(LIMITS, max_file_bytes=20 << 20)


def test_reduced_jpeg_decode_keeps_the_photo_size() -> None:
    data = _phone_jpeg()
    full = decode(data, PHONE_LIMITS)
    small = decode(data, PHONE_LIMITS, min_side=256)
    assert (full.width, full.height) == (small.width, small.height) == (4000, 3000)
    assert full.bgr.shape[:2] == (3000, 4000)
    assert small.bgr.shape[:2] == (375, 500)  # 1/8 scale: short side 375 >= 256
    # The reduced decode is the full one, shrunk: the same picture within JPEG noise.
    shrunk = cv2.resize(full.bgr, (500, 375), interpolation=cv2.INTER_AREA)
    assert np.abs(shrunk.astype(int) - small.bgr.astype(int)).mean() < 4
    # Never below the requested side: 1/4 when 1/8 would be too small.
    assert decode(data, PHONE_LIMITS, min_side=400).bgr.shape[:2] == (750, 1000)


def test_reduced_decode_follows_exif_orientation() -> None:
    small = decode(_phone_jpeg(orientation=6), PHONE_LIMITS, min_side=256)
    assert (small.width, small.height) == (3000, 4000)  # upright: portrait
    assert small.bgr.shape[:2] == (500, 375)


def test_png_is_never_reduced() -> None:
    png = cv2.imencode(".png", np.zeros((600, 800, 3), np.uint8))[1].tobytes()
    d = decode(png, LIMITS, min_side=256)
    assert d.bgr.shape[:2] == (600, 800) and (d.width, d.height) == (800, 600)
