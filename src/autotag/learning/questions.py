"""The questions a new learned tag asks before it is published.

A handful of examples says little about the rest of a library: measured on Tux Paint's
stamps (bench/learned_fewshot.py), most tags learned from five examples and published on
the learner's own estimate tag many wrong photos. What tells them apart is the user: a new
tag first asks yes/no on the photos nearest its threshold (``nearest``: the answers that move
it most), is fitted again with those answers, then shows a few random photos it would tag
(``spot_sample``) and is published only if enough of them are right (``spot_passed``); near
copies are asked about once (``diverse``). Every answer is a label (yes: the tag; no: not
the tag), so nothing asked is lost.

Plain arrays in and out: the learner (``teach``) and the bench call the same functions.
"""

from __future__ import annotations

import hashlib

import numpy as np

# Cosine similarity of stored vectors above which two photos are near copies (the same
# scene shot twice, a photo and its resized or recompressed copy).
NEAR_COPY = 0.95


def nearest(probabilities: np.ndarray, threshold: float, n: int) -> np.ndarray:
    """Indices of the ``n`` probabilities nearest ``threshold``, nearest first (ties in
    index order); ``n`` < 0: all of them in that order (for ``diverse``)."""
    p = np.asarray(probabilities, np.float64)
    if n == 0 or not len(p):
        return np.zeros(0, np.int64)
    order = np.argsort(np.abs(p - threshold), kind="stable").astype(np.int64)
    return order if n < 0 else order[:n]


def spot_sample(
    probabilities: np.ndarray, threshold: float, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Indices of up to ``n`` of the photos the tag would get (probability at or above
    ``threshold``), drawn at random; ``n`` < 0: all of them in a random order."""
    tagged = np.flatnonzero(np.asarray(probabilities) >= threshold)
    if n == 0 or not len(tagged):
        return np.zeros(0, np.int64)
    order = rng.permutation(tagged).astype(np.int64)
    return order if n < 0 else order[:n]


def spot_passed(yes: int, asked: int, n: int, min_yes: int) -> bool:
    """Whether a spot check passed: at least ``min_yes`` of ``n`` photos right, i.e. at most
    ``n - min_yes`` wrong. When the tag would get fewer than ``n`` photos (``asked`` < ``n``)
    the same number of wrong answers is allowed, and at least one must be right; a check
    with nothing to ask fails."""
    need = min(min_yes, n) - (n - asked)
    return asked > 0 and yes >= max(need, 1)


def diverse(
    order: np.ndarray, vectors: np.ndarray, n: int, max_cos: float = NEAR_COPY
) -> np.ndarray:
    """The first ``n`` of ``order`` (indices into ``vectors``, L2-normalized rows) skipping
    any within ``max_cos`` cosine of one already taken: a burst of near-identical shots is
    asked about once, not ten times (one answer tells the learner what ten would)."""
    taken: list[int] = []
    for i in np.asarray(order, np.int64):
        v = vectors[i]
        if taken and float(np.max(vectors[taken] @ v)) >= max_cos:
            continue
        taken.append(int(i))
        if len(taken) == n:
            break
    return np.asarray(taken, np.int64)


def seeded_rng(*parts: str) -> np.random.Generator:
    """A generator fixed by these strings (a tag and its labels' signature): asking again
    without new answers shows the same photos."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))
