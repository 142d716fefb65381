"""What the concept vocabulary costs per photo (issue 28: "tagging cost unchanged within
noise"): the concept step is one product of the class probabilities with the (concepts ×
1,000) 0/1 matrix, timed for the older 59-concept vocabulary and the current one, next to
the whole tagging of the same real photos (the development photos, decoded as uploads).
Busy-machine figures: re-measure idle.

    virtualenvs/autotag/bin/python bench/concept_cost.py --before /tmp/old-concepts.tsv [--n 64]

(``git show 4bdf5c0:src/autotag/vision/concepts.tsv > /tmp/old-concepts.tsv``: the 59.)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np


def per_photo_ms(fn: Callable[[], object], photos: int, repeat: int) -> float:
    """The best of ``repeat`` runs of ``fn`` (which handles ``photos`` photos), per photo."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 1000 * best / photos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, required=True, help="the older concepts.tsv")
    ap.add_argument("--n", type=int, default=64, help="development photos to tag")
    args = ap.parse_args()

    from autotag.config import load_settings
    from autotag.learning import concept_evaluation as ce
    from autotag.pipeline.tag_step import load_tagger
    from autotag.vision.concepts import VOCABULARY_FILE, build_concepts, read_vocabulary
    from autotag.vision.decode import decode, network_view
    from autotag.vision.imagenet import imagenet_synsets
    from autotag.vision.wordnet import WordNet

    s = load_settings()
    tagger = load_tagger(s.tagging, s.limits)
    photos = ce.dev_photos()[: args.n]
    decoded = [decode(p.read_bytes(), ce._LIMITS, min_side=tagger.min_side) for p in photos]
    views = [network_view(d) for d in decoded]
    probs = tagger.bundle.score(tagger.features.extract(views))[:, :1000]
    synsets, wordnet = imagenet_synsets(), WordNet.load()
    n = len(photos)
    print(f"{n} development photos, bundle {tagger.bundle.id}")
    matrices = {}
    for name, path in (("before", args.before), ("now", VOCABULARY_FILE)):
        _, M, _ = build_concepts(read_vocabulary(path), synsets, wordnet)
        matrices[name] = np.ascontiguousarray(M.T)
    best = dict.fromkeys(matrices, float("inf"))
    for _ in range(5):  # interleaved, so that neither gets the warm-up or a busy spell alone
        for name, MT in matrices.items():
            best[name] = min(best[name], per_photo_ms(partial(np.matmul, probs, MT), n, 20))
    for name, MT in matrices.items():
        print(f"  concept product, {name} ({MT.shape[1]} concepts): {best[name]:.4f} ms/photo")
    print(
        f"  (class probabilities {probs.dtype}, bundle has {len(tagger.bundle.concepts)} concepts)"
    )
    ms = per_photo_ms(lambda: tagger.tag_images(views, [d.bgr for d in decoded]), n, 3)
    print(f"  whole tagging (features, classes, concepts, detectors): {ms:.1f} ms/photo")


if __name__ == "__main__":
    main()
