"""OpenCV's INTER_AREA shrink, bit for bit, computing only the part of the result that is kept.

The CNN sees the centre 224×224 of a photo shrunk to 256 on its short side. For scales that
are not whole numbers OpenCV's area resize runs a scalar loop over every output pixel,
including the ones the crop then throws away. This module performs the same arithmetic (the
same weight tables, float32 products summed in the same order: columns first, then rows,
rounded half to even) with whole-row OpenCV and NumPy operations, and only for the kept rows
and columns, so the pixels, and hence the tags, are unchanged.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

Crop = tuple[int, int, int, int]  # x, y, width, height in the resized image
_EPSILON = float(np.finfo(np.float64).eps)  # OpenCV's DBL_EPSILON test for whole factors


def _taps(source: int, target: int, first: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights, (stop − first, taps), of target pixels first…stop − 1:
    OpenCV's ``computeResizeAreaTab`` in float64, weights cast to float32 as it does.
    Unused taps weigh 0 and repeat a valid index (adding 0.0 leaves a sum unchanged)."""
    scale = 1.0 / (target / source)
    start = np.arange(first, stop, dtype=np.float64) * scale
    end = start + scale
    cell = np.minimum(scale, source - start)
    last = np.minimum(np.floor(end), source - 1)
    whole = np.minimum(np.ceil(start), last)
    has_left = (whole - start) > 1e-3
    has_right = (end - last) > 1e-3
    count = has_left.astype(np.int64) + (last - whole).astype(np.int64) + has_right
    t = np.arange(int(count.max()))[None, :]
    used = t < count[:, None]
    index = (whole - has_left).astype(np.int64)[:, None] + t
    weight = np.where(used, (1.0 / cell)[:, None], 0.0)
    weight = np.where(has_left[:, None] & (t == 0), ((whole - start) / cell)[:, None], weight)
    right = np.minimum(np.minimum(end - last, 1.0), cell) / cell
    weight = np.where(has_right[:, None] & (t == count[:, None] - 1), right[:, None], weight)
    index = np.where(used, index, index[:, :1])
    return index, weight.astype(np.float32)


@lru_cache(maxsize=256)
def _plan(
    height: int, width: int, size: tuple[int, int], crop: Crop
) -> tuple[int, int, int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y, w, h = crop
    cols, col_weights = _taps(width, size[0], x, x + w)
    rows, row_weights = _taps(height, size[1], y, y + h)
    r0, r1 = int(rows.min()), int(rows.max()) + 1
    c0, c1 = int(cols.min()), int(cols.max()) + 1
    return r0, r1, c0, c1, cols - c0, col_weights, rows - r0, row_weights


def _generic_area(height: int, width: int, size: tuple[int, int]) -> bool:
    """Whether OpenCV takes its generic area path: shrinking (or keeping) both sides, by
    factors that are not both whole numbers (those have an exact fast path of their own)."""
    sx, sy = 1.0 / (size[0] / width), 1.0 / (size[1] / height)
    if sx < 1 or sy < 1:
        return False
    whole = abs(sx - round(sx)) < _EPSILON and abs(sy - round(sy)) < _EPSILON
    return not whole


def area_resize(img: np.ndarray, size: tuple[int, int], crop: Crop | None = None) -> np.ndarray:
    """``cv2.resize(img, size, interpolation=cv2.INTER_AREA)``, cut to ``crop`` (x, y, w, h;
    default all of it), equal bit for bit; only the kept pixels are computed."""
    height, width = img.shape[:2]
    x, y, w, h = crop if crop is not None else (0, 0, size[0], size[1])
    if not (0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= size[0] and y + h <= size[1]):
        raise ValueError(f"crop {crop} is not inside the {size[0]}×{size[1]} result")
    channels = 1 if img.ndim == 2 else img.shape[2]
    if img.dtype != np.uint8 or channels > 4 or not _generic_area(height, width, size):
        return np.ascontiguousarray(
            cv2.resize(img, size, interpolation=cv2.INTER_AREA)[y : y + h, x : x + w]
        )
    r0, r1, c0, c1, cols, col_w, rows, row_w = _plan(height, width, size, (x, y, w, h))
    # Columns first, as OpenCV: transposed, each tap is a gather of whole rows.
    flipped = cv2.transpose(np.ascontiguousarray(img[r0:r1, c0:c1])).reshape(c1 - c0, r1 - r0, -1)
    part = np.multiply(flipped[cols[:, 0]], col_w[:, 0, None, None], dtype=np.float32)
    for t in range(1, cols.shape[1]):
        part += np.multiply(flipped[cols[:, t]], col_w[:, t, None, None], dtype=np.float32)
    part = cv2.transpose(part).reshape(r1 - r0, w, -1)
    out = part[rows[:, 0]] * row_w[:, 0, None, None]
    for t in range(1, rows.shape[1]):
        out += part[rows[:, t]] * row_w[:, t, None, None]
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out[:, :, 0] if channels == 1 else out  # as OpenCV: one channel comes back 2-d


__all__ = ["area_resize"]
