"""Exact properties of a photo read from its pixels, tagged only where they are certain.

``black and white``: a photo whose pixels are (almost) all grey. Chroma is
``max(R, G, B) − min(R, G, B)``; a grey pixel has 0, JPEG noise on a grey photo stays in
single digits, while a colour photo has most pixels far above. The tag needs 99% of the
pixels at chroma ≤ 12 (counted on a nearest-neighbour copy at most 256 px across: a sample
of the pixels themselves, which averaging would blur), so a colour object on a white
background, or a sepia print, is not black and white. Its score is that share of grey pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from autotag.vision.features import as_bgr

MONOCHROME = "black and white"
# What else a search may type for each property.
PROPERTY_WORDS = {MONOCHROME: ["monochrome", "grayscale", "greyscale", "b&w", "black-and-white"]}
MAX_GREY_CHROMA = 12
MIN_GREY_SHARE = 0.99
_SIDE = 256


def grey_share(img: np.ndarray) -> float:
    """The share of pixels whose chroma is at most ``MAX_GREY_CHROMA``."""
    bgr = as_bgr(img)
    h, w = bgr.shape[:2]
    scale = _SIDE / max(h, w)
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_NEAREST)
    # Per-pixel max/min over the channels with OpenCV: numpy's reduction over a last axis
    # of 3 costs more than the rest of the photo's properties together.
    b, g, r = cv2.split(bgr)
    chroma = cv2.subtract(cv2.max(cv2.max(b, g), r), cv2.min(cv2.min(b, g), r))
    return float(np.count_nonzero(chroma <= MAX_GREY_CHROMA)) / chroma.size


def property_tags(img: np.ndarray) -> list[tuple[str, float]]:
    """``[("black and white", share)]`` for a grey photo, else nothing."""
    share = grey_share(img)
    return [(MONOCHROME, round(share, 4))] if share >= MIN_GREY_SHARE else []
