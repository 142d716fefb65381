"""Face detectors side by side: BlazeFace (the default) against the Haar cascade it replaced.

Recall and precision on scikit-image's LFW subset (100 face crops, 100 non-face crops, each
pasted into a textured 320×240 scene), split in two halves: BlazeFace's score threshold (0.6)
is the lowest with no false face on half A; half B is reported as held out. Also the scikit-image sample photos with a
known answer, and the cost per photo at 640 px and at 12 MP (one thread).

    python bench/faces.py
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import skimage.data

from autotag.config import load_settings
from autotag.vision.faces import FaceDetector, HaarFaceDetector


def scene(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = np.clip(rng.normal(128, 30, (240, 320)), 0, 255).astype(np.uint8)
    bg = cv2.GaussianBlur(noise, (0, 0), 3)
    bg[40:130, 100:190] = cv2.resize(patch, (90, 90), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(bg, cv2.COLOR_GRAY2BGR)


def bgr(name: str) -> np.ndarray:
    img = getattr(skimage.data, name)()
    return np.ascontiguousarray(
        cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img[:, :, ::-1]
    )


def main() -> None:
    cv2.setNumThreads(1)
    detectors = {
        "BlazeFace": FaceDetector.load(load_settings().model_dirs),
        "Haar": HaarFaceDetector.load(),
    }
    lfw = (skimage.data.lfw_subset() * 255).astype(np.uint8)
    rng = np.random.default_rng(0)
    faces = [scene(lfw[i], rng) for i in range(100)]
    others = [scene(lfw[100 + i], rng) for i in range(100)]
    halves = {"A (threshold chosen here)": slice(0, 50), "B (held out)": slice(50, 100)}
    # (photo, has a face): the cameraman and the astronaut do; the rest do not.
    known = {
        "astronaut": True,
        "camera": True,
        "chelsea": False,
        "coffee": False,
        "coins": False,
        "rocket": False,
        "page": False,
        "cat": False,
    }
    for name, det in detectors.items():
        print(f"== {name}")
        for half, sl in halves.items():
            tp = sum(bool(det.tags(x)) for x in faces[sl])
            fp = sum(bool(det.tags(x)) for x in others[sl])
            n = sl.stop - sl.start
            prec = tp / (tp + fp) if tp + fp else float("nan")
            print(
                f"  LFW half {half}: recall {tp}/{n} = {tp / n:.2f}, false faces {fp}/{n}, "
                f"precision {prec:.2f}"
            )
        right = [k for k, has in known.items() if bool(det.tags(bgr(k))) == has]
        print(
            f"  sample photos right: {len(right)}/{len(known)} "
            f"(wrong: {sorted(set(known) - set(right)) or 'none'})"
        )
        for label, side in (("640 px", 640), ("12 MP", 4000)):
            img = cv2.resize(bgr("astronaut"), (side, side * 3 // 4))
            det.tags(img)
            t0 = time.perf_counter()
            reps = 30
            for _ in range(reps):
                det.tags(img)
            print(f"  cost at {label}: {1000 * (time.perf_counter() - t0) / reps:.1f} ms/photo")


if __name__ == "__main__":
    main()
