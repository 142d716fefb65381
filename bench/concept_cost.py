"""What the wider vocabulary costs a photo: the bolt's own tagging (``Tagger.tag_bytes``, one
thread) with today's default bundle against the same bundle built from the 59-concept
vocabulary of before issue 28 (``git show 7fc55b7:src/autotag/vision/concepts.tsv``), on the
same photos, the two taggers alternated photo by photo so that drift hits both alike.

Run on an idle machine only; the load average is printed before and after.

    virtualenvs/autotag/bin/python bench/concept_cost.py [--photos 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from autotag.config import load_settings
from autotag.learning import samples
from autotag.pipeline.tag_step import load_tagger
from autotag.vision.concepts import VOCABULARY_FILE
from autotag.vision.features import onnx_model_path
from autotag.vision.imagenet import build_default_bundle
from autotag.vision.tagger import Tagger

ROOT = Path(__file__).resolve().parents[1]
OLD_VOCABULARY = "7fc55b7:src/autotag/vision/concepts.tsv"


def per_photo_ms(tagger: Tagger, photos: list[bytes]) -> float:
    t0 = time.perf_counter()
    for data in photos:
        tagger.tag_bytes(data)
    return 1000 * (time.perf_counter() - t0) / len(photos)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    s = load_settings()
    with tempfile.TemporaryDirectory(prefix="autotag-concept-cost-") as tmp:
        old_file = Path(tmp) / "concepts-59.tsv"
        old_file.write_text(
            subprocess.run(
                ["git", "show", OLD_VOCABULARY], cwd=ROOT, capture_output=True, text=True,
                check=True,
            ).stdout
        )  # fmt: skip
        onnx = onnx_model_path(s.model_dirs)
        taggers = {}
        for name, vocabulary in (("59 concepts", old_file), ("today", VOCABULARY_FILE)):
            models = Path(tmp) / name.replace(" ", "-")
            bundle_id = build_default_bundle(models, onnx, vocabulary=vocabulary)
            tagging = s.override(models_dir=models).tagging
            taggers[name] = load_tagger(tagging, s.limits, bundle_id)
            print(f"{name}: {bundle_id}, {len(taggers[name].bundle.concepts)} concepts")
        paths = samples.make_distinct_photos(args.photos, Path(tmp) / "photos", seed=7)
        photos = [p.read_bytes() for p in paths]
        for t in taggers.values():
            t.tag_bytes(photos[0])  # warm-up
        times: dict[str, list[float]] = {name: [] for name in taggers}
        tags: dict[str, list[int]] = {name: [] for name in taggers}
        for _ in range(args.rounds):
            for name, t in taggers.items():
                times[name].append(per_photo_ms(t, photos))
        for name, t in taggers.items():
            tags[name] = [len(t.tag_bytes(d).tags) for d in photos[:50]]
    for name in taggers:
        print(
            f"{name:<12} {statistics.median(times[name]):6.2f} ms/photo (rounds "
            f"{', '.join(f'{x:.2f}' for x in times[name])}); "
            f"{np.mean(tags[name]):.2f} tags per photo on the first 50"
        )
    a, b = (statistics.median(times[n]) for n in taggers)
    print(f"today / 59 concepts: {b / a:.3f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
