"""Camera RAW (vision.decode with LibRaw from the rawpy wheel, vision.metadata): DNG files the
tests write (tests/raw_files.py) decoded from the sensor data or from their embedded preview,
their EXIF read (date, offset, GPS, camera) into places and time words; a RAW bomb, a
truncated and a garbage RAW fail with reasons; a plain TIFF stays a TIFF."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import numpy as np
import pytest

from autotag.errors import ImageError
from autotag.vision.decode import DecodeLimits, camera_raw, decode
from autotag.vision.metadata import read_metadata
from autotag.vision.where_when import describe
from tests.photo_metadata import exif_for, picture
from tests.raw_files import dng

LIMITS = DecodeLimits(max_file_bytes=50 << 20, max_pixels=50_000_000, max_dimension=20_000)


def _likeness(bgr: np.ndarray, seed: int) -> float:
    """Correlation of decoded pixels with test picture ``seed`` at the same size."""
    ref = np.asarray(picture(seed).resize((bgr.shape[1], bgr.shape[0])))[:, :, ::-1]
    return float(np.corrcoef(ref.astype(float).ravel(), bgr.astype(float).ravel())[0, 1])


def test_dng_sensor_data_is_demosaiced_at_half_size() -> None:
    img = decode(dng(11), LIMITS)
    assert img.format == "RAW" and (img.width, img.height) == (640, 480)
    assert img.bgr.shape == (240, 320, 3)  # half size: one pixel per 2x2 Bayer cell
    assert _likeness(img.bgr, 11) > 0.95  # the colours are the picture's, channels in order
    assert _likeness(img.bgr, 12) < 0.5


def test_a_large_enough_preview_is_used_instead_of_the_sensor_data() -> None:
    # the preview shows another picture than the sensor, to tell which one was decoded
    img = decode(dng(11, preview=(640, 480), preview_seed=12), LIMITS, min_side=224)
    assert (img.width, img.height) == (640, 480)  # the photo's own size
    assert img.bgr.shape == (240, 320, 3)  # the preview JPEG decoded reduced (JPEG path)
    assert _likeness(img.bgr, 12) > 0.95
    # a thumbnail too small to stand for the photo: the sensor data is decoded
    small = decode(dng(11, preview=(160, 120), preview_seed=12), LIMITS)
    assert _likeness(small.bgr, 11) > 0.95


def test_raw_exif_date_offset_gps_and_camera_become_place_and_time_tags() -> None:
    data = dng(
        3, taken="2019:07:14 15:30:00", offset="+10:00", lat=-33.8568, lon=151.2153,
        make="NIKON CORPORATION", model="NIKON Z 6", preview=(640, 480),
    )  # fmt: skip
    meta = read_metadata(data, "RAW")
    assert meta.taken_local == datetime(2019, 7, 14, 15, 30)
    assert meta.taken_offset == timedelta(hours=10)
    assert meta.latitude == pytest.approx(-33.8568, abs=1e-4)
    assert meta.camera == "NIKON Z 6" and meta.problems == ()
    _, tags = describe(data, "RAW")
    words = {t.tag for t in tags}
    assert {"sydney", "australia", "2019", "july", "winter", "afternoon"} <= words


def test_a_raw_without_metadata_gets_no_place_or_time_tag() -> None:
    fields, tags = describe(dng(4), "RAW")
    assert tags == [] and fields["taken_local"] is None and fields["latitude"] is None


def test_raw_bomb_is_refused_from_its_header() -> None:
    bomb = dng(5, size=(64, 64), declared=(60_000, 60_000))
    assert len(bomb) < 20_000
    with pytest.raises(ImageError, match=r"60000x60000 = 3600 Mpx, limit 50 Mpx"):
        decode(bomb, LIMITS)


@pytest.mark.parametrize("keep", [0.999, 0.5, 0.05])
def test_truncated_raw_fails_with_a_reason(keep: float) -> None:
    data = dng(6, preview=(640, 480))
    with pytest.raises(ImageError, match=r"truncated DNG file"):
        decode(data[: int(len(data) * keep)], LIMITS)


def test_garbage_raw_fails_with_a_reason() -> None:
    with pytest.raises(ImageError, match=r"corrupt DNG"):
        decode(dng(7, compression=34713), LIMITS)  # NEF's compression inside a DNG
    junk = b"FUJIFILMCCD-RAW 0201FF383501" + np.random.default_rng(1).bytes(4000)
    with pytest.raises(ImageError, match=r"corrupt RAF file"):
        decode(junk, LIMITS)


def test_a_plain_tiff_with_camera_exif_is_still_a_tiff() -> None:
    out = io.BytesIO()
    picture(8).save(out, "TIFF", exif=exif_for(make="Canon", model="Canon EOS R"))
    assert camera_raw(out.getvalue()) is None
    assert decode(out.getvalue(), LIMITS).format == "TIFF"
    assert camera_raw(dng(8)) == "DNG"
    assert camera_raw(dng(8, make="NIKON CORPORATION")) == "DNG"
