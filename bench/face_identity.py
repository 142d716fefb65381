"""Face verification: are two photos the same person? dlib's descriptor on BlazeFace's boxes.

On ../shared/data/faces (64 photos, master.csv: 300 pairs, 38 same / 262 different), each
photo's biggest face found by the tagger's detector (BlazeFace; dlib's own HOG face finder
as a second finder) is aligned and described (``autotag.vision.face_identity``); a pair is
"same" when the distance is below the threshold. Prints the accuracy at the chosen
threshold (``MATCH_DISTANCE``), the best threshold, the ROC (TPR/FPR per threshold) and its
AUC, faces not found, and the milliseconds per descriptor (busy machine: re-measure idle).

    python bench/face_identity.py [--data ../shared/data/faces] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import cv2
import numpy as np

from autotag.vision.face_identity import MATCH_DISTANCE, FaceDescriber
from autotag.vision.faces import FaceDetector

ROOT = Path(__file__).resolve().parents[1]


def biggest(boxes: list[tuple[float, float, float, float]]):
    return max(boxes, key=lambda b: b[2] * b[3]) if boxes else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "faces")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    pairs = list(csv.DictReader((args.data / "master.csv").open()))
    names = sorted({p["file_x"] for p in pairs} | {p["file_y"] for p in pairs})
    blaze = FaceDetector.load([ROOT / "models"])
    describer = FaceDescriber.load(min_face_px=20)
    import dlib

    hog = dlib.get_frontal_face_detector()
    finders = {
        "blazeface": lambda img: [(f.x, f.y, f.w, f.h) for f, _ in blaze.detect_scored(img)],
        "dlib-hog": lambda img: [
            (r.left(), r.top(), r.width(), r.height()) for r in hog(img[:, :, ::-1].copy(), 1)
        ],
    }
    report: dict[str, object] = {"pairs": len(pairs), "threshold": MATCH_DISTANCE}
    for finder_name, find in finders.items():
        emb: dict[str, np.ndarray] = {}
        times = []
        missing = []
        for n in names:
            img = cv2.imread(str(args.data / n), cv2.IMREAD_COLOR)
            box = biggest(find(img)) if img is not None else None
            if box is None:
                missing.append(n)
                continue
            t0 = time.perf_counter()
            d = describer.describe(img, [box])[0]
            times.append((time.perf_counter() - t0) * 1000)
            if d is None:
                missing.append(n)
            else:
                emb[n] = d.embedding
        same, dist = [], []
        unanswered = 0
        for p in pairs:
            a, b = emb.get(p["file_x"]), emb.get(p["file_y"])
            if a is None or b is None:
                unanswered += 1
                continue
            same.append(p["Decision"] == "Yes")
            dist.append(float(np.linalg.norm(a - b)))
        y, d = np.array(same), np.array(dist)

        def acc(t: float, d: np.ndarray = d, y: np.ndarray = y) -> float:
            # A pair with a face missing counts as wrong.
            return float(((d < t) == y).sum() / len(pairs))

        grid = np.round(np.arange(0.30, 0.801, 0.05), 2)
        roc = [
            {
                "threshold": float(t),
                "tpr": round(float(((d < t) & y).sum() / max(1, y.sum())), 4),
                "fpr": round(float(((d < t) & ~y).sum() / max(1, (~y).sum())), 4),
                "accuracy": round(acc(t), 4),
            }
            for t in grid
        ]
        order = np.argsort(d)
        tpr = np.concatenate([[0], np.cumsum(y[order]) / max(1, y.sum())])
        fpr = np.concatenate([[0], np.cumsum(~y[order]) / max(1, (~y).sum())])
        auc = float(np.trapezoid(tpr, fpr))
        best_t = max(np.arange(0.3, 0.8, 0.01), key=acc)
        report[finder_name] = {
            "accuracy_at_threshold": round(acc(MATCH_DISTANCE), 4),
            "best_threshold": round(float(best_t), 2),
            "best_accuracy": round(acc(best_t), 4),
            "auc": round(auc, 4),
            "photos_without_face": missing,
            "pairs_unanswered": unanswered,
            "ms_per_descriptor_median": round(float(np.median(times)), 1) if times else None,
            "roc": roc,
        }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{len(pairs)} pairs, threshold {MATCH_DISTANCE} (busy machine timings: re-measure idle)")
    for finder_name in finders:
        r = report[finder_name]
        assert isinstance(r, dict)
        print(
            f"== {finder_name}: accuracy {r['accuracy_at_threshold']:.2%} at {MATCH_DISTANCE}, "
            f"best {r['best_accuracy']:.2%} at {r['best_threshold']}, AUC {r['auc']}, "
            f"no face in {len(r['photos_without_face'])} photos {r['photos_without_face']}, "
            f"{r['pairs_unanswered']} pairs unanswered, "
            f"{r['ms_per_descriptor_median']} ms per descriptor (alignment + embedding)"
        )
        print("   threshold  TPR     FPR     accuracy")
        for row in r["roc"]:
            print(
                f"   {row['threshold']:.2f}       {row['tpr']:.4f}  {row['fpr']:.4f}  "
                f"{row['accuracy']:.4f}"
            )


if __name__ == "__main__":
    main()
