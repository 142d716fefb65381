"""The learner: a handful of labelled photos' stored vectors → a calibrated tag, or "not yet".

Plain values in (L2-normalized vectors as stored in ``photo_vectors``, 1 / 0 labels), plain
values out. One tag is one logistic regression on the vectors:

- positives are the photos labelled with the tag; negatives the photos it was removed from,
  photos labelled with other tags, and a sample of the library. A library photo much like
  the positives may be an unlabelled positive and is left out of the negatives (reliable
  negatives, as in PU learning: ``reliable_negatives``);
- out-of-fold scores from a stratified cross-validation (at most ``folds`` folds) give the
  Platt calibration and the threshold: the lowest probability whose out-of-fold precision
  reaches ``target_precision`` (``calibration.choose_threshold``), and with it the estimated
  precision and recall. Below ``min_precision`` or ``min_recall`` the tag is *not yet*
  learnable ("add examples"), never published;
- the head is then fitted on all of them.

``shadow_check`` compares a candidate with the active model on the user's labels: for every
tag, the number of labels each gets wrong; the candidate may not get more wrong on any tag.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autotag.learning.calibration import choose_threshold, platt
from autotag.vision.bundle import calibrated_sigmoid

# A library more than this much in doubt means incoherent positives (see reliable_negatives).
MAX_DOUBT = 0.4


@dataclass(frozen=True)
class LearnOptions:
    min_examples: int = 5  # positive labels before a tag is learned
    target_precision: float = 0.9
    min_precision: float = 0.85  # estimated precision floor
    min_recall: float = 0.5
    folds: int = 5
    C: float = 10.0  # noqa: N815 - scikit-learn's name
    library_sample: int = 2000
    seed: int = 0
    # The share of the library in doubt (``reliable_negatives``) above which the positives
    # are taken for incoherent: no library photo is left out of the negatives.
    max_doubt: float = MAX_DOUBT
    # The strict estimate (``library_precision``), off unless set: the tag's assumed share
    # of the library, used from a library sample of ``strict_from_library`` photos on
    # (smaller ones cannot show a share of a few percent). Off by default because a tag
    # more common than the assumed share is refused (bench/learned_fewshot.py --strict).
    assumed_prevalence: float | None = None
    strict_from_library: int = 200
    # A new tag asks before it is published (learning.questions): yes/no on the photos
    # nearest its threshold, then a spot check of photos it would tag (at least
    # ``spot_min_yes`` of ``spot_check`` right). Both counts 0: published at once.
    questions: int = 10
    spot_check: int = 5
    spot_min_yes: int = 4

    @property
    def asks(self) -> bool:
        return self.questions > 0 or self.spot_check > 0


@dataclass
class TagFit:
    """One tag's outcome: ``ok`` with its row, or not, with the reason."""

    tag: str
    ok: bool
    message: str
    n_pos: int
    n_neg: int
    w: np.ndarray | None = None  # (d,) float32, on L2-normalized vectors
    b: float = 0.0  # z = w·x − b
    calib_a: float = 1.0
    calib_c: float = 0.0
    threshold: float = 1.0
    precision: float | None = None
    recall: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def decide(self, X: np.ndarray) -> np.ndarray:
        """Probabilities of the tag for L2-normalized rows X."""
        assert self.w is not None
        z = np.asarray(X, np.float32) @ self.w - np.float32(self.b)
        return calibrated_sigmoid(z, np.float32(self.calib_a), np.float32(self.calib_c))

    def metrics(self) -> dict[str, Any]:
        return {
            "n_pos": self.n_pos,
            "n_neg": self.n_neg,
            "precision": self.precision,
            "recall": self.recall,
            "threshold": self.threshold,
            **self.info,
        }


def l2(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def reliable_negatives(
    pos: np.ndarray,
    library: np.ndarray,
    C: float,  # noqa: N803
    seed: int,
    max_doubt: float = MAX_DOUBT,
) -> np.ndarray:
    """Mask of library rows kept as negatives. A library photo may be an unlabelled positive:
    one nearly as like the positives as the least typical positive is like the others, or
    that a first head (positives against the whole library) scores at least as high as its
    lowest positive, is left out (unless that is more than ``max_doubt`` of the library)."""
    if len(library) == 0 or len(pos) < 2:
        return np.ones(len(library), bool)
    pp = pos @ pos.T
    np.fill_diagonal(pp, -np.inf)
    sim = (library @ pos.T).max(axis=1)
    typical = float(pp.max(axis=1).min())
    bar = typical - 0.25 * max(typical - float(np.median(sim)), 0.0)  # a margin below it
    X = np.concatenate([pos, library])
    y = np.concatenate([np.ones(len(pos), np.int8), np.zeros(len(library), np.int8)])
    w, b = _fit(X, y, np.ones(len(X)), C, seed)
    z_lib = library @ w - b
    z_min = float((pos @ w - b).min())
    doubt = (sim >= bar) | (z_lib >= z_min)
    if doubt.sum() > max_doubt * len(library):
        # Positives that much of the library resembles say nothing coherent: every library
        # photo stays a negative (so the cross-validation shows it: "cannot learn yet").
        return np.ones(len(library), bool)
    return ~doubt


def training_set(
    pos: np.ndarray,
    neg: np.ndarray,
    library: np.ndarray,
    C: float = 10.0,  # noqa: N803
    seed: int = 0,
    max_doubt: float = MAX_DOUBT,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, weight): positives, labelled negatives, reliable library negatives (weighted
    so the library counts as much as the labelled negatives, at most)."""
    pos, neg = l2(pos), l2(neg) if len(neg) else np.zeros((0, pos.shape[1]), np.float32)
    lib = l2(library) if len(library) else np.zeros((0, pos.shape[1]), np.float32)
    lib = lib[reliable_negatives(pos, lib, C, seed, max_doubt)]
    X = np.concatenate([pos, neg, lib])
    y = np.concatenate([np.ones(len(pos), np.int8), np.zeros(len(neg) + len(lib), np.int8)])
    w = np.ones(len(X), np.float64)
    return X, y, w


def _fit(
    X: np.ndarray, y: np.ndarray, w: np.ndarray, C: float, seed: int
) -> tuple[np.ndarray, float]:  # noqa: N803
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=1000, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y, sample_weight=w)
    return clf.coef_[0].astype(np.float32), float(-clf.intercept_[0])


def fit_tag(
    tag: str,
    pos: np.ndarray,
    neg: np.ndarray,
    library: np.ndarray,
    options: LearnOptions = LearnOptions(),  # noqa: B008 - frozen
) -> TagFit:
    """Learn one tag from its positives' and negatives' vectors and a library sample."""
    n_pos, n_neg = len(pos), len(neg)
    if n_pos < options.min_examples:
        return TagFit(
            tag,
            False,
            f"add examples: {n_pos} of {options.min_examples} positive labels",
            n_pos,
            n_neg,
        )
    X, y, w = training_set(pos, neg, library, options.C, options.seed, options.max_doubt)
    if int((y == 0).sum()) < 2:
        return TagFit(tag, False, "add examples: no negatives (label more photos)", n_pos, n_neg)
    folds = max(2, min(options.folds, n_pos))
    rng = np.random.default_rng(options.seed)
    fold_of = np.empty(len(y), np.int64)
    for lab in (0, 1):
        idx = np.flatnonzero(y == lab)
        rng.shuffle(idx)
        fold_of[idx] = np.arange(len(idx)) % folds
    z_oof = np.empty(len(y), np.float64)
    for f in range(folds):
        te = fold_of == f
        wf, bf = _fit(X[~te], y[~te], w[~te], options.C, options.seed)
        z_oof[te] = X[te] @ wf - bf
    a, c = platt(z_oof, y)
    p_oof = calibrated_sigmoid(z_oof.astype(np.float32), np.float32(a), np.float32(c))
    thr, tinfo = choose_threshold(y, p_oof, options.target_precision)
    prec, rec = float(tinfo["val_precision"]), float(tinfo["val_recall"])
    wt, bt = _fit(X, y, w, options.C, options.seed)
    estimate = "cross-validated"
    strict = options.assumed_prevalence is not None
    if strict and len(library) >= options.strict_from_library:
        pos_n, neg_n, lib_n = l2(pos), l2(neg) if n_neg else pos[:0], l2(library)
        t_z, prec, rec, z_pos, z_neg = library_precision(pos_n, neg_n, lib_n, options)
        z_all = np.concatenate([z_pos, z_neg])
        y_all = np.concatenate([np.ones(len(z_pos), np.int8), np.zeros(len(z_neg), np.int8)])
        a, c = platt(z_all, y_all)
        thr = float(
            calibrated_sigmoid(np.asarray([t_z], np.float32), np.float32(a), np.float32(c))[0]
        )
        X = np.concatenate([pos_n, neg_n, lib_n])
        y = np.concatenate([np.ones(n_pos, np.int8), np.zeros(len(X) - n_pos, np.int8)])
        wt, bt = _fit(X, y, np.ones(len(X)), options.C, options.seed)
        # The head fitted on every library photo scores them in-sample (pushed down), so its
        # threshold is the one that tags as many of them as the out-of-fold heads did at t_z:
        # z is shifted to put that point at t_z, where the calibration was fitted.
        hits = int((z_neg[len(neg_n) :] >= t_z).sum())
        z_lib_full = np.sort(lib_n @ wt - bt)[::-1]
        if 0 < hits <= len(z_lib_full):
            bt += float(z_lib_full[hits - 1]) - t_z
        estimate = f"library, assumed share {options.assumed_prevalence:g}"
    fit = TagFit(
        tag,
        True,
        "learned",
        n_pos,
        n_neg,
        wt,
        bt,
        float(a),
        float(c),
        float(thr),
        prec,
        rec,
        {
            "folds": folds,
            "library_negatives": int(len(y) - n_pos - n_neg),
            "threshold_rule": tinfo["threshold_rule"],
            "estimate": estimate,
        },
    )
    if prec < options.min_precision or rec < options.min_recall:
        fit.ok = False
        fit.message = (
            f"cannot learn yet: estimated precision {prec:.2f}, recall {rec:.2f} "
            f"(needs {options.min_precision:.2f} / {options.min_recall:.2f}); add examples"
        )
    return fit


def library_precision(
    pos: np.ndarray,
    neg: np.ndarray,
    library: np.ndarray,
    options: LearnOptions,
) -> tuple[float, float, float, np.ndarray, np.ndarray]:
    """The strict estimate of what a published tag will meet: the library itself.

    Every library photo stays a negative (no "reliable negatives": the hard ones are exactly
    where junk comes from). Each positive is scored by a head fitted without it
    (leave-one-out: its recall ``r(t)``), each library photo by a head fitted without its
    fold (the share ``q(t)`` of the library above ``t``). A tag covering a share ``π`` of
    the library tags ``π·r(t)`` of it rightly, so its precision there is ``π·r(t)/q(t)`` at
    most; with ``π`` = ``assumed_prevalence`` (a tag covering more of the library is
    underestimated: it refuses rather than publishes), and labelled negatives above ``t``
    counted as plain false positives. Returns (raw threshold, precision, recall, the
    out-of-sample scores of positives and of negatives + library, for the calibration)."""
    k = len(pos)
    share = options.assumed_prevalence or 0.03
    negs = np.concatenate([neg, library])
    z_pos = np.empty(k, np.float64)
    for i in range(k):
        X = np.concatenate([np.delete(pos, i, axis=0), negs])
        y = np.concatenate([np.ones(k - 1, np.int8), np.zeros(len(negs), np.int8)])
        w, b = _fit(X, y, np.ones(len(X)), options.C, options.seed)
        z_pos[i] = float(pos[i] @ w - b)
    folds = max(2, min(options.folds, len(negs)))
    fold_of = np.random.default_rng(options.seed).permutation(len(negs)) % folds
    z_neg = np.empty(len(negs), np.float64)
    for f in range(folds):
        te = fold_of == f
        X = np.concatenate([pos, negs[~te]])
        y = np.concatenate([np.ones(k, np.int8), np.zeros(int((~te).sum()), np.int8)])
        w, b = _fit(X, y, np.ones(len(X)), options.C, options.seed)
        z_neg[te] = negs[te] @ w - b
    z_lab, z_lib = z_neg[: len(neg)], z_neg[len(neg) :]
    reached, best = None, (float(z_pos.max()) + 1.0, 0.0, 0.0)
    for t in np.sort(z_pos)[::-1]:  # high to low: the last that reaches the target wins
        r = float((z_pos >= t).mean())
        q = max(float((z_lib >= t).mean()), 1.0 / max(len(z_lib), 1))
        tp = share * r * max(len(z_lib), 1)
        fp_lab = float((z_lab >= t).sum())
        p = min(1.0, share * r / q) * tp / (tp + fp_lab)
        if p >= options.target_precision:
            reached = (float(t), p, r)
        if p > best[1]:
            best = (float(t), p, r)
    best = reached or best
    return best[0], best[1], best[2], z_pos, z_neg


def recalibrated_threshold(
    threshold: float, pos_scores: np.ndarray, neg_scores: np.ndarray
) -> float | None:
    """A model tag's corrections → its new threshold, or None (nothing to change).

    ``neg_scores`` are the model's stored scores on the photos the user removed the tag from,
    ``pos_scores`` those on the photos the user says have it (scores below ``threshold`` are
    photos the model did not tag). The threshold is raised to the cut, among the removed
    photos' scores, that gets the fewest of these labels wrong (the lowest such cut; never
    below ``threshold``); None when no raise gets fewer wrong than today."""
    pos = np.asarray(pos_scores, np.float64)
    neg = np.asarray(neg_scores, np.float64)
    neg = neg[neg >= threshold]
    if not len(neg):
        return None

    def wrong(t: float) -> int:
        return int((pos < t).sum() + (neg >= t).sum())

    now = wrong(threshold)
    cuts = np.unique(np.nextafter(neg.astype(np.float32), np.float32(2.0)).astype(np.float64))
    best = min(cuts, key=lambda t: (wrong(float(t)), float(t)))
    return float(best) if wrong(float(best)) < now else None


def errors(y: np.ndarray, predicted: np.ndarray) -> int:
    """Labels a model gets wrong: a positive it misses, a negative it tags."""
    return int(np.count_nonzero(np.asarray(y, bool) != np.asarray(predicted, bool)))


def shadow_check(
    by_tag: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> dict[str, tuple[int, int]]:
    """``{tag: (labels y, active's decisions, candidate's decisions)}`` → the tags on which
    the candidate gets more of the user's labels wrong: ``{tag: (active, candidate errors)}``."""
    worse = {}
    for tag, (y, active, candidate) in by_tag.items():
        ea, ec = errors(y, active), errors(y, candidate)
        if ec > ea:
            worse[tag] = (ea, ec)
    return worse
