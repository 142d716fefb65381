"""Figures: a network bundle's tags as the running topology stores them, against its ONNX
graph run directly on the same files.

Needs the cluster and the autotagger topology running (`make up`). Makes the bundle the
active one (the bolts switch without a resubmit), writes the first N Fashion-MNIST test
images as PNG files, uploads them, waits until every one is tagged, and compares each stored
tag score with the softmax of the logits that onnxruntime computes from the bundle's
``network.onnx`` for the same file read with OpenCV (grey, scaled to [0, 1]): nothing of the
bolt's code on the direct side. Prints the largest difference, how many photos carry the
direct run's best class, and top-1 against the labels both ways. The previously active
bundle is active again afterwards. Accuracy figures, not timings: any machine.

    python bench/network_topology_check.py --bundle ID --n 500
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from autotag.config import settings
from autotag.learning.datasets import FASHION_MNIST_CLASSES, fashion_mnist_arrays
from autotag.learning.network_data import softmax
from autotag.pipeline import intake
from autotag.storage import database, lookups
from autotag.vision import bundle as bundles
from autotag.vision.bundle import load_bundle

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.pipeline import wait_tagged  # noqa: E402

SWITCH_SECONDS = 6  # the bolts look at models/ACTIVE every 5 s


def direct_probabilities(session: ort.InferenceSession, photos: list[Path]) -> np.ndarray:
    """Softmax of the ONNX graph's logits, one file at a time as a user would run it."""
    out = []
    for photo in photos:
        grey = cv2.imread(str(photo), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            raise SystemExit(f"bench: cannot read {photo}")
        (logits,) = session.run(
            ["logits"], {"image": (grey.astype(np.float32) / 255.0)[None, None]}
        )
        out.append(logits[0])
    return softmax(np.stack(out))


def upload(photos: list[Path]) -> list[str]:
    """Queue every file, again if it was tagged before (by whichever model): photo ids."""
    ids = []
    s = settings()
    with intake.Intake(s.services, s.queue, s.limits, s.video, s.blob_dir) as up:
        for photo in photos:
            rec = up.upload_file(photo, force=True)
            if rec.status != intake.QUEUED or rec.photo_id is None:
                raise SystemExit(f"bench: {photo} was not queued ({rec.status}: {rec.reason})")
            ids.append(rec.photo_id)
    return ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, help="bundle id (trained by autotag train-cnn)")
    ap.add_argument("--n", type=int, default=500, help="first N Fashion-MNIST test images")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    s = settings()
    bundle = load_bundle(s.models_dir, args.bundle)
    if bundle.classes != list(FASHION_MNIST_CLASSES):
        raise SystemExit(f"bench: {args.bundle} is not a Fashion-MNIST bundle")
    session = ort.InferenceSession(str(bundle.path / "network.onnx"))
    images, labels = fashion_mnist_arrays("test", limit=args.n)
    previous = bundles.active_bundle_id(s.models_dir)
    with tempfile.TemporaryDirectory(prefix="bench-net-topology-") as tmp:
        photos = []
        for i, image in enumerate(images):
            photos.append(Path(tmp) / f"fashion-mnist-test-{i:05d}.png")
            cv2.imwrite(str(photos[-1]), image)
        direct = direct_probabilities(session, photos)
        bundles.set_active(s.models_dir, args.bundle)
        try:
            time.sleep(SWITCH_SECONDS)
            ids = upload(photos)
            with database.connect(s.services) as conn:
                wait_tagged(conn, ids, args.timeout)
                infos = [lookups.show(conn, photo_id) for photo_id in ids]
        finally:
            if previous:
                bundles.set_active(s.models_dir, previous)
    by_other_model = sum(1 for info in infos if info is None or info.model_version != args.bundle)
    diffs, best_kept, stored_best = [], 0, []
    for info, p in zip(infos, direct, strict=True):
        stored = dict(info.tags) if info else {}
        for tag, score in stored.items():
            diffs.append(abs(score - p[FASHION_MNIST_CLASSES.index(tag)]))
        best = FASHION_MNIST_CLASSES[int(p.argmax())]
        best_kept += best in stored
        top = max(stored, key=stored.__getitem__) if stored else None
        stored_best.append(FASHION_MNIST_CLASSES.index(top) if top else -1)
    result = {
        "bundle": args.bundle,
        "photos": len(ids),
        "tagged_by_another_model": by_other_model,
        "stored_tags_compared": len(diffs),
        "max_abs_diff_stored_vs_direct": float(max(diffs)) if diffs else None,
        "photos_with_direct_best_class": best_kept,
        "top1_stored": float((np.array(stored_best) == labels).mean()),
        "top1_direct": float((direct.argmax(1) == labels).mean()),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"bundle {args.bundle}: {result['photos']} Fashion-MNIST test photos through the topology"
    )
    print(f"  tagged by another model: {by_other_model}")
    print(
        f"  stored tag scores vs direct ONNX softmax: {len(diffs)} compared, "
        f"max |diff| {result['max_abs_diff_stored_vs_direct']:.2g}"
    )
    print(f"  photos carrying the direct run's best class: {best_kept}/{len(ids)}")
    print(
        f"  top-1 vs labels: stored {result['top1_stored']:.2%}, direct {result['top1_direct']:.2%}"
    )


if __name__ == "__main__":
    main()
