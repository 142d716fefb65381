"""Re-scoring speed of learned tags over stored vectors: the vectorized pass of
``learning.teach.rescore`` (``score_chunk``: one matrix product per chunk, thresholds, hits)
over synthetic 1280-d float32 vectors, as they come out of ``photo_vectors``.

Prints photos/s for the scoring itself, for 1 and 10 learned tags. Reading the vectors
from Postgres (binary cursor) and writing the hits are extra; ``autotag learn --json``
reports the whole pass on a real library (``rescored``: read, score, total seconds).

    virtualenvs/autotag/bin/python bench/learned_rescore.py [--photos 100000] [--chunk 8192]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from autotag.learning.teach import score_chunk


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=8192)
    ap.add_argument("--dim", type=int, default=1280)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.photos, args.dim), dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    for tags in (1, 10):
        W = rng.standard_normal((tags, args.dim), dtype=np.float32)
        b = np.zeros(tags, np.float32)
        a = np.full(tags, 20.0, np.float32)
        c = np.zeros(tags, np.float32)
        thr = np.full(tags, 0.9, np.float32)
        t0 = time.perf_counter()
        hits = 0
        for i in range(0, args.photos, args.chunk):
            rows, _cols, _s = score_chunk(W, b, a, c, thr, X[i : i + args.chunk])
            hits += len(rows)
        secs = time.perf_counter() - t0
        print(
            f"{tags:2d} learned tags: {args.photos} vectors in {secs:.3f}s ="
            f" {args.photos / secs:,.0f} photos/s ({hits} hits; chunk {args.chunk})"
        )


if __name__ == "__main__":
    main()
