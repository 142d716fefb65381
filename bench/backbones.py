"""Photos/s of the two ImageNet bundles, EfficientNet-Lite0 (cnn) and Lite2 (cnn-lite2),
side by side in one run on the same photos: decode + features + scores + concepts + faces,
each bundle as N processes x 1 thread (N = cores) and as 1 process x N threads.

No cluster needed: it builds both bundles in a temporary models directory. Run it on an
idle machine; tag quality is measured separately (`autotag evaluate-concepts --bundle ID`).

    python bench/backbones.py --n 400
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import tempfile
import time
from pathlib import Path


def _bundles() -> tuple[str, str]:
    from autotag.vision.features import LITE0, LITE2
    from autotag.vision.imagenet import default_bundle_id

    return default_bundle_id(LITE0), default_bundle_id(LITE2)


BUNDLES = _bundles()


def _tagger(models_dir: str, bundle_id: str, threads: int):
    from autotag.config import load_settings
    from autotag.vision.decode import DecodeLimits
    from autotag.vision.feature_sets import FeatureOptions
    from autotag.vision.tagger import Tagger

    s = load_settings()
    return Tagger.load(
        models_dir,
        bundle_id,
        feature_options=FeatureOptions(s.model_dirs, threads),
        limits=DecodeLimits(s.limits.max_file_bytes, s.limits.max_pixels, s.limits.max_dimension),
        min_score=s.tagging.min_tag_score,
        max_tags=s.tagging.max_tags,
    )


def _work(models_dir: str, bundle_id: str, threads: int, paths: list[str], start, out) -> None:
    tagger = _tagger(models_dir, bundle_id, threads)
    tagger.tag_file(paths[0])  # warm-up, before the common start
    start.wait()
    t0 = time.perf_counter()
    for p in paths:
        tagger.tag_file(p)
    out.put(time.perf_counter() - t0)


def photos_per_sec(
    models_dir: str, bundle_id: str, paths: list[str], procs: int, threads: int
) -> float:
    """All photos split over ``procs`` processes of ``threads`` threads each, started together."""
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(procs + 1), ctx.Queue()
    shares = [paths[i::procs] for i in range(procs)]
    workers = [
        ctx.Process(target=_work, args=(models_dir, bundle_id, threads, share, start, out))
        for share in shares
    ]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for _ in workers:
        out.get()
    wall = time.perf_counter() - t0
    for w in workers:
        w.join()
    return len(paths) / wall


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=400, help="photos (distinct, real)")
    ap.add_argument("--long-side", type=int, default=640, help="photo size (longest side, pixels)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    from autotag.config import load_settings
    from autotag.learning import samples
    from autotag.vision.features import LITE0, LITE2, onnx_model_path
    from autotag.vision.imagenet import build_default_bundle

    s = load_settings()
    with tempfile.TemporaryDirectory(prefix="autotag-bench-") as tmp:
        models = Path(tmp) / "models"
        for net in (LITE0, LITE2):
            build_default_bundle(models, onnx_model_path(s.model_dirs, net), backbone=net)
        photos = samples.make_distinct_photos(args.n, Path(tmp) / "photos", args.long_side)
        paths = [str(p) for p in photos]
        print(
            f"{platform.processor() or platform.machine()}, {args.cores} cores, {len(paths)} photos"
        )
        for bundle_id in BUNDLES:
            procs = photos_per_sec(str(models), bundle_id, paths, args.cores, 1)
            threads = photos_per_sec(str(models), bundle_id, paths, 1, args.cores)
            print(
                f"{bundle_id:34} {args.cores} procs x 1 thread: {procs:7.1f} photos/s   "
                f"1 proc x {args.cores} threads: {threads:7.1f} photos/s"
            )


if __name__ == "__main__":
    main()
