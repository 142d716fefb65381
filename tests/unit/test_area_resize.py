"""The cropped area resize must equal OpenCV's INTER_AREA pixel for pixel: the CNN's and the
face detector's inputs (hence every tag) depend on it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from autotag.learning import samples
from autotag.vision.area_resize import area_resize
from autotag.vision.decode import DecodeLimits, decode

LIMITS = DecodeLimits(max_file_bytes=64 << 20, max_pixels=64_000_000, max_dimension=20_000)


def _reference(img: np.ndarray, size: tuple[int, int], crop: tuple[int, int, int, int]):
    x, y, w, h = crop
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)[y : y + h, x : x + w]


@pytest.mark.parametrize("channels", [0, 1, 3, 4])
def test_equals_opencv_on_random_sizes_and_crops(channels: int) -> None:
    rng = np.random.default_rng(channels)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(2, 1500, 2))
        shape = (h, w) if channels == 0 else (h, w, channels)
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        # Mostly shrinking, sometimes one side growing or a whole-number factor (fallbacks).
        size = (int(rng.integers(1, w + 1)), int(rng.integers(1, h + 1)))
        if rng.random() < 0.1:
            size = (w + int(rng.integers(1, 50)), size[1])
        if rng.random() < 0.1 and w >= 4 and h >= 4:
            size = (w // 2, h // 2) if w % 2 == 0 and h % 2 == 0 else size
        cw, ch = int(rng.integers(1, size[0] + 1)), int(rng.integers(1, size[1] + 1))
        crop = (
            int(rng.integers(0, size[0] - cw + 1)),
            int(rng.integers(0, size[1] - ch + 1)),
            cw,
            ch,
        )
        got = area_resize(img, size, crop)
        want = _reference(img, size, crop)
        assert got.shape == want.shape and got.dtype == np.uint8, (shape, size, crop)
        assert np.array_equal(got, want), (shape, size, crop)


def test_whole_result_by_default_and_on_real_photos() -> None:
    """The CNN's geometry (short side 256, centre 224) and the face detector's (long side
    128) on the sample photos as the upload path decodes them."""
    photos = samples.package_photos() + samples.tuxpaint_photos(limit=40)
    assert len(photos) >= 20
    for path in photos:
        bgr = decode(path.read_bytes(), LIMITS).bgr
        h, w = bgr.shape[:2]
        s = 256 / min(h, w)
        nh, nw = max(256, round(h * s)), max(256, round(w * s))
        crop = ((nw - 224) // 2, (nh - 224) // 2, 224, 224)
        assert np.array_equal(area_resize(bgr, (nw, nh), crop), _reference(bgr, (nw, nh), crop))
        f = 128 / max(h, w)
        small = (max(1, round(w * f)), max(1, round(h * f)))
        assert np.array_equal(
            area_resize(bgr, small), cv2.resize(bgr, small, interpolation=cv2.INTER_AREA)
        )


def test_crop_outside_the_result_is_refused() -> None:
    img = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(ValueError, match="not inside"):
        area_resize(img, (60, 60), (50, 0, 20, 20))
