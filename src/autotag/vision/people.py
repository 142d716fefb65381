"""People in a frame (OpenCV's HOG + linear SVM pedestrian detector), their crops for
embedding, and tracks that link one walker's boxes across the sampled frames of a segment.

HOG was chosen because no registry package ships a multi-person CNN detector's weights
(mediapipe's pose detector finds one person per image; YOLO and SSD weights are downloaded
at run time). Its window is 64×128 px, so the frame is scaled up by ``upscale`` first to
reach walkers about 100 px tall, and the pyramid stops at ``max_scale`` (people taller than
about half a 576-line frame are rare on a fixed camera) which keeps a frame's cost bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

HOG_WINDOW = (64, 128)


@dataclass(frozen=True)
class Box:
    """A detection in original-frame pixels; ``score`` is in (0, 1)."""

    x: int
    y: int
    w: int
    h: int
    score: float

    def iou(self, other: Box) -> float:
        x1, y1 = max(self.x, other.x), max(self.y, other.y)
        x2 = min(self.x + self.w, other.x + other.w)
        y2 = min(self.y + self.h, other.y + other.h)
        inter = max(0, x2 - x1) * max(0, y2 - y1)
        union = self.w * self.h + other.w * other.h - inter
        return inter / union if union > 0 else 0.0

    def covered_by(self, other: Box) -> float:
        """Share of this box inside ``other``."""
        x1, y1 = max(self.x, other.x), max(self.y, other.y)
        x2 = min(self.x + self.w, other.x + other.w)
        y2 = min(self.y + self.h, other.y + other.h)
        area = self.w * self.h
        return max(0, x2 - x1) * max(0, y2 - y1) / area if area > 0 else 0.0


def svm_score(margin: float) -> float:
    """The SVM's margin (0 … ~5) as a score in (0, 1): m / (1 + m)."""
    m = max(0.0, float(margin))
    return round(m / (1.0 + m), 4)


def suppress(boxes: list[Box], max_iou: float = 0.3, max_inside: float = 0.6) -> list[Box]:
    """Non-maximum suppression: best first, dropping boxes that overlap a kept one."""
    kept: list[Box] = []
    for b in sorted(boxes, key=lambda b: -b.score):
        if all(b.iou(k) <= max_iou and b.covered_by(k) <= max_inside for k in kept):
            kept.append(b)
    return kept


class PeopleDetector:
    """Standing and walking people → boxes, from HOG features and a linear SVM."""

    def __init__(
        self,
        *,
        max_side: int = 800,
        upscale: float = 1.3,
        scale_step: float = 1.2,
        max_scale: float = 2.6,
        min_margin: float = 0.6,
    ) -> None:
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector()))
        self.max_side = max_side
        self.upscale = upscale
        self.scale_step = scale_step
        self.max_scale = max_scale
        self.min_margin = min_margin

    def detect(self, bgr: np.ndarray) -> list[Box]:
        h, w = bgr.shape[:2]
        base = min(1.0, self.max_side / max(h, w)) * self.upscale
        raw: list[Box] = []
        scale = 1.0
        while scale <= self.max_scale + 1e-9:
            f = base / scale
            sw, sh = round(w * f), round(h * f)
            if sw < HOG_WINDOW[0] or sh < HOG_WINDOW[1]:
                break
            interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
            img = cv2.resize(bgr, (sw, sh), interpolation=interp)
            locations, margins = self.hog.detect(
                img, hitThreshold=self.min_margin, winStride=(8, 8), padding=(0, 0)
            )
            for (x, y), m in zip(
                np.asarray(locations).reshape(-1, 2), np.ravel(margins), strict=True
            ):
                raw.append(
                    Box(
                        round(x / f),
                        round(y / f),
                        round(HOG_WINDOW[0] / f),
                        round(HOG_WINDOW[1] / f),
                        svm_score(m),
                    )
                )
            scale *= self.scale_step
        return suppress(raw)


def crop_square(bgr: np.ndarray, box: Box) -> np.ndarray:
    """The box's pixels padded with grey to a square, so the CNN's centre crop keeps the
    whole body (a plain resize-and-crop would cut off head and feet)."""
    h, w = bgr.shape[:2]
    x0, y0 = max(0, box.x), max(0, box.y)
    x1, y1 = min(w, box.x + box.w), min(h, box.y + box.h)
    crop = bgr[y0:y1, x0:x1]
    ch, cw = crop.shape[:2]
    side = max(ch, cw, 1)
    top, left = (side - ch) // 2, (side - cw) // 2
    return cv2.copyMakeBorder(
        crop,
        top,
        side - ch - top,
        left,
        side - cw - left,
        cv2.BORDER_CONSTANT,
        value=(127, 127, 127),
    )


@dataclass
class _Track:
    id: int
    box: Box
    last_frame: int


class Tracker:
    """Greedy IoU tracking over a segment's sampled frames: a box joins the track whose last
    box it overlaps most (IoU ≥ ``min_iou``) if that track was seen within ``max_gap``
    frames; otherwise it starts a new track. Returns one track id per box, in order."""

    def __init__(self, max_gap: int, min_iou: float = 0.3) -> None:
        self.max_gap = max_gap
        self.min_iou = min_iou
        self.tracks: list[_Track] = []
        self._n = 0

    def update(self, frame: int, boxes: list[Box]) -> list[int]:
        live = [t for t in self.tracks if frame - t.last_frame <= self.max_gap]
        pairs = sorted(
            ((b.iou(t.box), i, t) for i, b in enumerate(boxes) for t in live),
            key=lambda p: -p[0],
        )
        ids: list[int | None] = [None] * len(boxes)
        taken: set[int] = set()
        for iou, i, t in pairs:
            if iou < self.min_iou:
                break
            if ids[i] is None and t.id not in taken:
                ids[i] = t.id
                taken.add(t.id)
                t.box, t.last_frame = boxes[i], frame
        out = []
        for i, b in enumerate(boxes):
            tid = ids[i]
            if tid is None:
                track = _Track(len(self.tracks), b, frame)
                self.tracks.append(track)
                tid = track.id
            out.append(int(tid))
        return out
