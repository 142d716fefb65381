"""Few-shot quality of learned tags on Tux Paint's photo stamps in categories ImageNet-1k
barely has (flowers, fruit, vegetables, clothing, reef fish).

For k = 3, 5, 10 labelled examples of a category, drawn at random 10 times: the learner
(``learning.learner.fit_tag``, exactly what ``autotag learn`` runs) is fitted on the k
positives' vectors with every other stamp as the library sample, and its precision and
recall are measured on the remaining stamps (all other categories as negatives). Beside it:
the ceiling (a head trained on every stamp of the category but the one evaluated,
leave-one-out) and a nearest-neighbour baseline (a stamp is tagged if its nearest labelled
positive is nearer than its nearest other stamp in the library, i.e. 1-NN with the library
as negatives). Also: how often a nonsense tag (k random stamps of different categories) is
published (it should be "cannot learn yet").

Vectors are computed once with the default bundle's feature set (the L2-normalized vector
the DB writer stores) and cached in ``run/bench/tuxpaint_vectors.npz``.

    virtualenvs/autotag/bin/python bench/learned_fewshot.py [--draws 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from autotag.config import settings
from autotag.learning.learner import LearnOptions, fit_tag, l2
from autotag.learning.samples import TUXPAINT_STAMPS, tuxpaint_photos

CATEGORIES = {
    "flower": "plants/flowers",
    "fruit": "food/fruit",
    "vegetable": "food/vegetables",
    "clothing": "clothes",
    "reef fish": "animals/fish",
}


def vectors(cache: Path) -> tuple[list[str], np.ndarray]:
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            return [str(p) for p in z["paths"]], z["X"]
    from autotag.pipeline.tag_step import load_tagger
    from autotag.vision.bundle import active_bundle_id
    from autotag.vision.features import onnx_model_path
    from autotag.vision.imagenet import build_default_bundle

    s = settings()
    bundle = active_bundle_id(s.models_dir)
    if bundle is None:  # the default bundle, built beside the cache (never activated)
        models = cache.parent / "models"
        bundle = build_default_bundle(models, onnx_model_path(s.model_dirs))
        s = s.override(models_dir=models)
    tagger = load_tagger(s.tagging, s.limits, bundle)
    paths, rows = [], []
    for p in tuxpaint_photos():
        try:
            rows.append(tagger.tag_file(p).vector)
        except Exception:  # noqa: BLE001 - a stamp that does not decode is skipped
            continue
        paths.append(str(p.relative_to(TUXPAINT_STAMPS)))
    X = np.stack(rows).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, paths=np.asarray(paths), X=X)
    return paths, X


def pr(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    tp = int((pred & truth).sum())
    return (tp / max(int(pred.sum()), 1), tp / max(int(truth.sum()), 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    s = settings()
    paths, X = vectors(s.run_dir / "bench" / "tuxpaint_vectors.npz")
    X = l2(X)
    cat = np.asarray(
        [
            next((c for c, d in CATEGORIES.items() if str(Path(p).parent) == d), "")
            for p in paths
        ]
    )
    opts = LearnOptions()
    rng = np.random.default_rng(0)
    out: dict[str, dict[str, object]] = {}
    t0 = time.perf_counter()
    for name in CATEGORIES:
        truth_all = cat == name
        members = np.flatnonzero(truth_all)
        res: dict[str, object] = {"stamps": int(len(members))}
        for k in (3, 5, 10):
            if len(members) <= k:
                continue
            ps, rs, nn_p, nn_r, published = [], [], [], [], 0
            for _ in range(args.draws):
                pos = rng.choice(members, k, replace=False)
                rest = np.setdiff1d(np.arange(len(X)), pos)
                fit = fit_tag(name, X[pos], X[:0], X[rest], LearnOptions(min_examples=min(k, 5)))
                truth = truth_all[rest]
                if fit.ok:
                    published += 1
                    p, r = pr(fit.decide(X[rest]) >= fit.threshold, truth)
                else:
                    p, r = (float("nan"), 0.0)
                ps.append(p)
                rs.append(r)
                sims = X[rest] @ X[rest].T
                np.fill_diagonal(sims, -np.inf)
                near_pos = (X[rest] @ X[pos].T).max(axis=1)
                q, r2 = pr(near_pos > sims.max(axis=1), truth)
                nn_p.append(q)
                nn_r.append(r2)
            res[f"k={k}"] = {
                "published": f"{published}/{args.draws}",
                "precision": round(float(np.nanmean(ps)), 3) if published else None,
                "recall": round(float(np.mean(rs)), 3),
                "nn_precision": round(float(np.mean(nn_p)), 3),
                "nn_recall": round(float(np.mean(nn_r)), 3),
            }
        # Ceiling: leave-one-out over every stamp, trained on all the others' labels.
        pred = np.zeros(len(X), bool)
        for i in range(len(X)):
            others = np.setdiff1d(np.arange(len(X)), [i])
            pos = others[truth_all[others]]
            neg = others[~truth_all[others]]
            if i % 7 and not truth_all[i]:
                continue  # every positive, a seventh of the negatives (time)
            fit = fit_tag(name, X[pos], X[neg], X[:0], opts)
            pred[i] = fit.ok and bool(fit.decide(X[i : i + 1])[0] >= fit.threshold)
        sub = truth_all | (np.arange(len(X)) % 7 == 0)
        tp = int((pred & truth_all).sum())
        fp_rate = float((pred & ~truth_all & sub).sum()) / max(int((~truth_all & sub).sum()), 1)
        fp = fp_rate * int((~truth_all).sum())  # scaled to every negative
        res["ceiling"] = {
            "precision": round(tp / max(tp + fp, 1e-9), 3),
            "recall": round(tp / max(len(members), 1), 3),
        }
        out[name] = res
    nonsense = 0
    for _ in range(args.draws):
        pos = np.asarray(
            [rng.choice(np.flatnonzero(cat == c)) for c in CATEGORIES]
        )  # one stamp of each category
        rest = np.setdiff1d(np.arange(len(X)), pos)
        nonsense += fit_tag("nonsense", X[pos], X[:0], X[rest], opts).ok
    summary = {
        "stamps": len(X),
        "categories": out,
        "nonsense_published": f"{nonsense}/{args.draws}",
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{len(X)} Tux Paint photo stamps; learner vs 1-NN vs ceiling (leave-one-out)")
    for name, res in out.items():
        print(f"{name} ({res['stamps']} stamps)")
        for key, v in res.items():
            if key.startswith("k="):
                assert isinstance(v, dict)
                print(
                    f"  {key:5s} published {v['published']:5s} precision {v['precision']}"
                    f" recall {v['recall']}   1-NN precision {v['nn_precision']}"
                    f" recall {v['nn_recall']}"
                )
        print(f"  ceiling {res['ceiling']}")
    print(f"nonsense tag (one stamp of each category) published: {summary['nonsense_published']}")


if __name__ == "__main__":
    main()
