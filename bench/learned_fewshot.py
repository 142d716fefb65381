"""Few-shot quality of learned tags on Tux Paint's photo stamps in categories ImageNet-1k
barely has (flowers, fruit, vegetables, clothing, hats, trees, reef fish).

The universe is the 298 photo stamps of the held-out concept evaluation
(``concept_evaluation.tuxpaint_photo_stamps``: no cartoons, mirrors or flips). For k = 3, 5,
10 labelled examples of a category, drawn at random ``--draws`` times (the draws depend only
on the seed, category and k, so two runs — before and after a learner change — see the same
draws): the learner (``learning.learner.fit_tag``, exactly what ``autotag learn`` runs) is
fitted on the k positives' vectors with every other stamp as the library sample (unlabelled:
the category's other stamps are in it too, as in a real library), and its precision and
recall are measured on the remaining stamps (all other categories as negatives). Beside it:

- the ceiling: a head (logistic regression, the learner's) trained on every stamp's true
  label, scored by 10-fold cross-validation at probability 0.5;
- a nearest-neighbour baseline: a stamp is tagged if its nearest labelled positive is nearer
  than its nearest other stamp (1-NN with the library as negatives).

Also: how often a nonsense tag (one random stamp of each of 5 categories) is published (it
should be "cannot learn yet"), and Tux Paint coverage with learned tags (``--coverage``):
each category's stamps split in half at random; the learner is taught the held-out
half's labels (at most 10) and its tag is counted on the other half only, beside the base
bundle's concept tags (``concept_evaluation``: 52.7% of stamps with their category word).

Vectors are what the DB writer stores (``Tagger.tag_file(...).vector``, L2-normalized, the
cut-out view): computed once and kept in the project's feature cache
(``learning.feature_cache``, ``run/featcache/stored-vector-<features>@<version>``), keyed by
the stamp's content sha256.

    virtualenvs/autotag/bin/python bench/learned_fewshot.py [--draws 10] [--json] [--out F]
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from autotag.checksums import file_sha256
from autotag.config import settings
from autotag.learning import questions
from autotag.learning.concept_evaluation import tuxpaint_photo_stamps
from autotag.learning.feature_cache import FeatureCache
from autotag.learning.learner import LearnOptions, fit_tag, l2

# Category name → the stamp folders whose stamps are its positives.
CATEGORIES = {
    "flower": ("plants/flowers",),
    "fruit": ("food/fruit",),
    "vegetable": ("food/vegetables",),
    "clothing": ("clothes", "clothes/hats"),
    "hat": ("clothes/hats",),
    "tree": ("plants/trees",),
    "reef fish": ("animals/fish",),
}
# For choosing a learner's settings without tuning on the categories above (``--set choose``,
# with another ``--seed``): categories ImageNet-1k mostly has, and hard sub-kinds (rodents,
# bovines among the other mammals).
CHOOSING = {
    "bird": ("animals/birds",),
    "tool": ("household/tools",),
    "bovine": ("animals/mammals/bovines",),
    "insect": ("animals/insects",),
    "sport": ("sports",),
    "music": (
        "hobbies/music/brass",
        "hobbies/music/percussion",
        "hobbies/music/string",
        "hobbies/music/wind",
    ),
    "rodent": ("animals/mammals/rodents",),
    "vehicle": (
        "military/vehicles",
        "vehicles",
        "vehicles/auto",
        "vehicles/construction",
        "vehicles/cycle",
        "vehicles/emergency",
        "vehicles/flight",
        "vehicles/flight/planes",
        "vehicles/masstransit",
        "vehicles/race",
        "vehicles/ship",
    ),
    "mammal (other)": ("animals/mammals",),
}
KS = (3, 5, 10)
# A published draw is "good" at the goal: precision >= 0.85 with recall >= 0.6.
GOOD_PRECISION, GOOD_RECALL = 0.85, 0.6


def _tagger() -> Any:
    from autotag.pipeline.tag_step import load_tagger
    from autotag.vision.bundle import active_bundle_id
    from autotag.vision.features import onnx_model_path
    from autotag.vision.imagenet import build_default_bundle

    s = settings()
    bundle = active_bundle_id(s.models_dir)
    if bundle is None:  # the default bundle, built under run/bench (never activated)
        models = s.run_dir / "bench" / "models"
        bundle = build_default_bundle(models, onnx_model_path(s.model_dirs))
        s = s.override(models_dir=models)
    return load_tagger(s.tagging, s.limits, bundle)


def vectors(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(X, ok): the stored vector of every stamp, from the feature cache (computed once)."""
    s = settings()
    tagger = _tagger()
    fs = tagger.features
    cache = FeatureCache(s.run_dir / "featcache", f"stored-vector-{fs.name}", fs.version, fs.dim)
    shas = [file_sha256(p) for p in paths]
    todo = [(h, p) for h, p in zip(shas, paths, strict=True) if h not in cache]
    todo = [(h, p) for h, p in todo if cache.failed_reason(h) is None]
    if todo:
        keys, rows = [], []
        for h, p in todo:
            try:
                rows.append(tagger.tag_file(p).vector)
                keys.append(h)
            except Exception as exc:  # noqa: BLE001 - a stamp that does not decode is skipped
                cache.mark_failed(h, str(exc))
        if rows:
            cache.put(keys, np.stack(rows))
    ok = np.asarray([h in cache for h in shas])
    X = np.zeros((len(paths), fs.dim), np.float32)
    X[ok] = cache.get([h for h, g in zip(shas, ok, strict=True) if g])
    return X, ok


def pr_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """(true positives, predicted, truly positive)."""
    return int((pred & truth).sum()), int(pred.sum()), int(truth.sum())


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def draws(name: str, k: int, members: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), k])
    return [rng.choice(members, k, replace=False) for _ in range(n)]


def nearest_neighbour(X: np.ndarray, pos: np.ndarray, rest: np.ndarray) -> np.ndarray:
    sims = X[rest] @ X[rest].T
    np.fill_diagonal(sims, -np.inf)
    return (X[rest] @ X[pos].T).max(axis=1) > sims.max(axis=1)


def ceiling(X: np.ndarray, truth: np.ndarray, seed: int) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    pred = np.zeros(len(X), bool)
    folds = StratifiedKFold(n_splits=min(10, int(truth.sum())), shuffle=True, random_state=seed)
    for tr, te in folds.split(X, truth):
        clf = LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000)
        clf.fit(X[tr], truth[tr])
        pred[te] = clf.predict_proba(X[te])[:, 1] >= 0.5
    tp, n_pred, n_true = pr_counts(pred, truth)
    return {"precision": _ratio(tp, n_pred), "recall": _ratio(tp, n_true)}


def taught(
    name: str,
    X: np.ndarray,
    pos: np.ndarray,
    truth: np.ndarray,
    opts: LearnOptions,
    seed: list[int],
    retries: int = 0,
    universe: np.ndarray | None = None,
) -> tuple[Any, bool, np.ndarray, np.ndarray]:
    """What ``autotag learn`` does with k positive labels (``teach.learn`` and
    ``learning.questions``: the same functions), the user's answers taken from the truth:
    the learner is fitted (every unlabelled photo of ``universe`` its library); a tag it
    can learn asks yes/no on the photos nearest its threshold, is fitted again with the
    answers, then shows a spot check of photos it would tag and is published if enough are
    right, as it was checked (else, ``retries`` times, it asks again from the nearest
    photos). Every answer is a label: yes a positive, no a negative. Returns (the fit
    published or last made, published, the photos neither labelled nor asked, the photos
    asked)."""
    every = np.arange(len(X)) if universe is None else np.asarray(universe)
    pos_i: list[int] = [int(i) for i in pos]
    neg_i: list[int] = []
    phase, asked, failures = None, np.zeros(0, np.int64), 0
    rng = np.random.default_rng(seed)
    checked = None
    while True:
        labelled = np.asarray(pos_i + neg_i, np.int64)
        left = np.setdiff1d(every, labelled)
        all_asked = np.setdiff1d(labelled, np.asarray(pos, np.int64))
        if phase == "spot":  # all answered: published as it was checked, or asked again
            yes = int(truth[asked].sum())
            if questions.spot_passed(yes, len(asked), opts.spot_check, opts.spot_min_yes):
                return checked, True, left, all_asked
            failures += 1
            if failures > retries:
                return checked, False, left, all_asked
            phase = None
        fit = fit_tag(name, X[pos_i], X[np.asarray(neg_i, np.int64)], X[left], opts)
        if not fit.ok:
            return fit, False, left, all_asked
        if not opts.asks:
            return fit, True, left, all_asked
        p = fit.decide(X[left])
        got = np.zeros(0, np.int64)
        if phase is None and opts.questions > 0:
            order = questions.nearest(p, fit.threshold, -1)
            got = questions.diverse(order, X[left], opts.questions)
            phase = "near"
        if not len(got):
            if opts.spot_check <= 0:
                return fit, True, left, all_asked
            order = questions.spot_sample(p, fit.threshold, -1, rng)
            got = questions.diverse(order, X[left], opts.spot_check)
            phase, checked = "spot", fit
            if not len(got):
                return fit, False, left, all_asked
        asked = left[got]
        for i in asked:
            (pos_i if truth[i] else neg_i).append(int(i))


def few_shot(
    X: np.ndarray,
    cat: dict[str, np.ndarray],
    n_draws: int,
    seed: int,
    opts: LearnOptions,
    retries: int = 0,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in cat:
        truth_all = cat[name]
        members = np.flatnonzero(truth_all)
        res: dict[str, Any] = {"stamps": int(len(members))}
        for k in KS:
            if len(members) < k + 2:
                continue
            published = good = 0
            tp = npred = ntrue = 0  # pooled over the published draws
            p_each: list[float] = []
            r_each: list[float] = []
            est_p: list[float] = []
            n_asked: list[int] = []
            nn_tp = nn_pred = nn_true = 0
            for d, pos in enumerate(draws(name, k, members, n_draws, seed)):
                rest = np.setdiff1d(np.arange(len(X)), pos)
                fit, published_now, left, asked = taught(
                    name,
                    X,
                    pos,
                    truth_all,
                    replace(opts, min_examples=min(k, opts.min_examples)),
                    [seed, k, d],
                    retries,
                )
                n_asked.append(len(asked))
                if published_now:
                    published += 1
                    a, b, c = pr_counts(fit.decide(X[left]) >= fit.threshold, truth_all[left])
                    tp, npred, ntrue = tp + a, npred + b, ntrue + c
                    p_each.append(a / b if b else 1.0)
                    r_each.append(a / c if c else 1.0)  # answers may have found them all
                    good += p_each[-1] >= GOOD_PRECISION and r_each[-1] >= GOOD_RECALL
                    est_p.append(float(fit.precision or 0.0))
                a, b, c = pr_counts(nearest_neighbour(X, pos, rest), truth_all[rest])
                nn_tp, nn_pred, nn_true = nn_tp + a, nn_pred + b, nn_true + c
            res[f"k={k}"] = {
                "published": published,
                "good": good,
                "draws": n_draws,
                "precision": _ratio(tp, npred) if published else None,
                "recall": _ratio(tp, ntrue) if published else None,
                "precision_mean": round(float(np.mean(p_each)), 3) if p_each else None,
                "precision_min": round(float(np.min(p_each)), 3) if p_each else None,
                "estimated_precision": round(float(np.mean(est_p)), 3) if est_p else None,
                "questions_answered_mean": round(float(np.mean(n_asked)), 1),
                "nn_precision": _ratio(nn_tp, nn_pred),
                "nn_recall": _ratio(nn_tp, nn_true),
            }
        res["ceiling"] = ceiling(X, truth_all, seed)
        out[name] = res
    return out


def nonsense(
    X: np.ndarray,
    cat: dict[str, np.ndarray],
    n_draws: int,
    seed: int,
    opts: LearnOptions,
    retries: int = 0,
) -> int:
    rng = np.random.default_rng([seed, 7])
    names = list(cat)[:5]
    published = 0
    for i in range(n_draws):
        pos = np.asarray([rng.choice(np.flatnonzero(cat[c])) for c in names])
        truth = np.zeros(len(X), bool)
        truth[pos] = True
        published += taught("nonsense", X, pos, truth, opts, [seed, 7, i], retries)[1]
    return published


def coverage(
    X: np.ndarray, stamps: list[Any], seed: int, opts: LearnOptions, retries: int = 0
) -> dict[str, Any]:
    """Stamps whose category word is among their tags: the base bundle's concept tags plus
    learned tags, each category's learned tag taught on a held-out half of its stamps (at
    most 10 labels) and counted on the other half only (the evaluation half, the learner's
    library). A stamp the learner asked about carries the tag if the (true) answer was yes,
    as a label does in the product."""
    from autotag.learning.concept_evaluation import concept_scores

    tagger = _tagger()
    scores = concept_scores(tagger, stamps)
    base = scores.tags()
    rng = np.random.default_rng([seed, 11])
    words = sorted({p.category for p in stamps if p.category})
    word_of = np.asarray([p.category or "" for p in stamps])
    teach = np.zeros(len(stamps), bool)
    for w in words:
        idx = np.flatnonzero(word_of == w)
        rng.shuffle(idx)
        teach[idx[: len(idx) // 2]] = True
    evaluate = ~teach
    learned: list[set[str]] = [set() for _ in stamps]
    published_tags: list[str] = []
    answered = 0
    asked_any: set[int] = set()
    for w in words:
        pos = np.flatnonzero((word_of == w) & teach)[:10]
        if len(pos) < 3:
            continue
        universe = np.union1d(pos, np.flatnonzero(evaluate))
        fit, published, left, asked = taught(
            w,
            X,
            pos,
            word_of == w,
            replace(opts, min_examples=3),
            [seed, 11, len(published_tags)],
            retries,
            universe,
        )
        answered += len(asked)
        asked_any.update(int(i) for i in asked)
        for i in asked:
            if word_of[i] == w:
                learned[i].add(w)
        if not published:
            continue
        published_tags.append(w)
        for i in left[fit.decide(X[left]) >= fit.threshold]:
            learned[i].add(w)
    ev = np.flatnonzero(evaluate)
    hit_base = sum(word_of[i] in base[i] for i in ev)
    hit_all = sum(word_of[i] in (base[i] | learned[i]) for i in ev)
    wrong = sum(len(learned[i] - stamps[i].right) for i in ev)
    n_learned = sum(len(learned[i]) for i in ev)
    unasked = [i for i in ev if i not in asked_any]
    return {
        "evaluated_stamps": int(len(ev)),
        "base_share": _ratio(hit_base, len(ev)),
        "with_learned_share": _ratio(hit_all, len(ev)),
        "learned_tags": n_learned,
        "learned_wrong": wrong,
        "tags_published": published_tags,
        "questions_answered": answered,
        "unasked_stamps": len(unasked),
        "unasked_base_share": _ratio(sum(word_of[i] in base[i] for i in unasked), len(unasked)),
        "unasked_with_learned_share": _ratio(
            sum(word_of[i] in (base[i] | learned[i]) for i in unasked), len(unasked)
        ),
        "unasked_learned_wrong": sum(len(learned[i] - stamps[i].right) for i in unasked),
        "unasked_learned_tags": sum(len(learned[i]) for i in unasked),
        "all_stamps_base_share": _ratio(
            sum(p.category in t for p, t in zip(stamps, base, strict=True)), len(stamps)
        ),
    }


def ranking(X: np.ndarray, cat: dict[str, np.ndarray], n_draws: int, seed: int) -> dict[str, Any]:
    """How well other representations of the same stored vector, and other classifiers,
    rank the remaining stamps at k = 5 (threshold-free): mean average precision, and the best
    recall at precision >= 0.85 with the threshold set by an oracle."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score

    from autotag.learning.learner import training_set

    bundle = _tagger().bundle
    W, b = np.asarray(bundle.W, np.float32), np.asarray(bundle.b, np.float32)
    Z = X @ W.T  # the logits up to each photo's norm (the stored vector is normalized)
    zs = 15.6 * Z - b  # the median raw-feature norm
    m = zs.max(axis=1, keepdims=True)
    logsoft = zs - m - np.log(np.exp(zs - m).sum(axis=1, keepdims=True))
    sq = l2(np.sqrt(np.maximum(X, 0.0)))
    mu = X.mean(axis=0)
    _, S, Vt = np.linalg.svd(X - mu, full_matrices=False)
    white = l2((X - mu) @ (Vt[:128].T / np.sqrt(S[:128] ** 2 / len(X) + 1e-2)))
    reps = {"l2": X, "sqrt": sq, "logits": Z / Z.std(), "log-softmax": logsoft / 10.0}
    reps |= {"l2+sqrt": np.hstack([X, sq]), "pca-white-128": white}

    def lr(R: np.ndarray, pos: np.ndarray, rest: np.ndarray, C: float) -> np.ndarray:  # noqa: N803
        Xt, y, _ = training_set(R[pos], R[:0], R[rest], C, 0)
        clf = LogisticRegression(C=C, class_weight="balanced", max_iter=1000).fit(Xt, y)
        return np.asarray(R[rest] @ clf.coef_[0])

    def spread(pos: np.ndarray, rest: np.ndarray, knn: int = 5, alpha: float = 0.9) -> np.ndarray:
        sims = X @ X.T
        np.fill_diagonal(sims, -np.inf)
        nearest = np.argsort(-sims, axis=1)[:, :knn]
        A = np.zeros_like(sims)
        np.put_along_axis(A, nearest, np.maximum(np.take_along_axis(sims, nearest, 1), 0), 1)
        A = np.maximum(A, A.T)
        d = 1.0 / np.sqrt(np.maximum(A.sum(axis=1), 1e-12))
        A = A * d[:, None] * d[None, :]
        y0 = np.zeros(len(X))
        y0[pos] = 1.0
        f = y0.copy()
        for _ in range(30):
            f = alpha * (A @ f) + (1 - alpha) * y0
        return f[rest]

    methods: dict[str, Any] = {}
    for name, R in reps.items():
        for C in (1.0, 10.0):
            methods[f"logistic {name} C={C:g}"] = lambda p, r, R=R, C=C: lr(R, p, r, C)
        methods[f"prototype {name}"] = lambda p, r, R=R: R[r] @ l2(R[p].mean(0, keepdims=True))[0]
    methods["label spreading kNN 5"] = spread
    out: dict[str, Any] = {}
    for method, score in methods.items():
        aps, recalls = [], []
        for name, truth_all in cat.items():
            members = np.flatnonzero(truth_all)
            if len(members) < 7:
                continue
            for pos in draws(name, 5, members, n_draws, seed):
                rest = np.setdiff1d(np.arange(len(X)), pos)
                s, truth = score(pos, rest), truth_all[rest]
                aps.append(average_precision_score(truth, s))
                hit = truth[np.argsort(-s, kind="stable")]
                tp = np.cumsum(hit)
                good = tp / np.arange(1, len(hit) + 1) >= GOOD_PRECISION
                recalls.append(float((tp / hit.sum())[good].max()) if good.any() else 0.0)
        out[method] = {"mAP": round(float(np.mean(aps)), 3), "oracle_recall": np.mean(recalls)}
        out[method]["oracle_recall"] = round(float(out[method]["oracle_recall"]), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--coverage", action="store_true", help="also the coverage with learned tags")
    ap.add_argument(
        "--strict",
        type=float,
        metavar="SHARE",
        help="the learner's strict library estimate with this assumed share (e.g. 0.03)",
    )
    ap.add_argument(
        "--set",
        choices=("eval", "choose"),
        default="eval",
        help="the issue's categories (eval) or others to choose settings on (use another --seed)",
    )
    ap.add_argument("--C", type=float, help="the learner's regularization (default: LearnOptions)")
    ap.add_argument("--max-doubt", type=float, help="LearnOptions.max_doubt")
    ap.add_argument(
        "--questions",
        type=int,
        help="yes/no answers on the photos nearest the threshold (default: LearnOptions)",
    )
    ap.add_argument(
        "--spot-check",
        type=int,
        nargs=2,
        metavar=("N", "MIN_YES"),
        help="publish only if at least MIN_YES of N random photos it would tag are right",
    )
    ap.add_argument(
        "--no-questions",
        action="store_true",
        help="publish on the learner's estimates alone (learn_questions = learn_spot_check = 0)",
    )
    ap.add_argument(
        "--retries",
        type=int,
        default=0,
        help="after a failed spot check, ask again this many times (the product: as long as"
        " the user answers)",
    )
    ap.add_argument(
        "--ranking",
        action="store_true",
        help="only the ranking of other representations and classifiers (k = 5, no threshold)",
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", type=Path, help="also write the JSON summary here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    stamps = tuxpaint_photo_stamps()
    X, ok = vectors([p.path for p in stamps])
    stamps = [p for p, g in zip(stamps, ok, strict=True) if g]
    X = l2(X[ok])
    folder = [p.name.rsplit("/", 1)[0] for p in stamps]
    chosen = CATEGORIES if args.set == "eval" else CHOOSING
    cat = {name: np.asarray([f in dirs for f in folder], bool) for name, dirs in chosen.items()}
    t_vec = time.perf_counter() - t0
    opts = LearnOptions(assumed_prevalence=args.strict)
    if args.C is not None:
        opts = replace(opts, C=args.C)
    if args.max_doubt is not None:
        opts = replace(opts, max_doubt=args.max_doubt)
    if args.ranking:
        ranks = ranking(X, cat, args.draws, args.seed)
        if args.json:
            print(json.dumps(ranks, indent=2))
            return
        print(f"k=5, {args.set} categories, seed {args.seed}: mean AP | oracle R at P 0.85")
        for method, v in ranks.items():
            print(f"  {method:32s} {v['mAP']:.3f} | {v['oracle_recall']:.3f}")
        return
    if args.questions is not None:
        opts = replace(opts, questions=args.questions)
    if args.spot_check is not None:
        opts = replace(opts, spot_check=args.spot_check[0], spot_min_yes=args.spot_check[1])
    if args.no_questions:
        opts = replace(opts, questions=0, spot_check=0)
    summary: dict[str, Any] = {
        "stamps": len(X),
        "set": args.set,
        "seed": args.seed,
        "learner": {
            "assumed_prevalence": opts.assumed_prevalence,
            "C": opts.C,
            "max_doubt": opts.max_doubt,
        },
        "questions": opts.questions,
        "spot_check": {"asked": opts.spot_check, "min_yes": opts.spot_min_yes},
        "retries": args.retries,
        "categories": few_shot(X, cat, args.draws, args.seed, opts, args.retries),
        "nonsense_published": (
            f"{nonsense(X, cat, args.draws, args.seed, opts, args.retries)}/{args.draws}"
        ),
    }
    if args.coverage:
        summary["coverage"] = coverage(X, stamps, args.seed, opts, args.retries)
    summary["seconds"] = {
        "vectors": round(t_vec, 1),
        "total": round(time.perf_counter() - t0, 1),
    }
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{len(X)} Tux Paint photo stamps; learned tag vs 1-NN, ceiling (10-fold, all labels)")
    print("  published n/draws; P / R pooled over published draws; est = learner's estimate")
    for name, res in summary["categories"].items():
        c = res["ceiling"]
        print(f"{name} ({res['stamps']} stamps)  ceiling P {c['precision']} R {c['recall']}")
        for key, v in res.items():
            if key.startswith("k="):
                print(
                    f"  {key:5s} published {v['published']:2d}/{v['draws']} good {v['good']:2d}"
                    f"  P {v['precision']} R {v['recall']} (min P {v['precision_min']},"
                    f" est {v['estimated_precision']}, asked {v['questions_answered_mean']})"
                    f"   1-NN P {v['nn_precision']} R {v['nn_recall']}"
                )
    for key in (f"k={k}" for k in KS):
        rows = [r[key] for r in summary["categories"].values() if key in r]
        print(
            f"{key}: good (P >= {GOOD_PRECISION}, R >= {GOOD_RECALL}) "
            f"{sum(r['good'] for r in rows)}, published below it "
            f"{sum(r['published'] - r['good'] for r in rows)}, of {sum(r['draws'] for r in rows)} draws"
        )
    print(
        f"nonsense tag (one stamp of each of 5 categories) published: {summary['nonsense_published']}"
    )
    if "coverage" in summary:
        print(f"coverage: {json.dumps(summary['coverage'])}")
    print(f"seconds (busy machine): {summary['seconds']}")


if __name__ == "__main__":
    main()
