"""Training thousands of one-vs-rest linear classifiers, Flickr style: one (w, b) per class.

Per class, only the photos labeled for that class are used (TRUE = positive, FALSE =
negative). They are split into train / validation (stratified, seeded by class name so a
retrain is reproducible). Logistic regression with ``class_weight='balanced'`` (Flickr's
~10K positives vs ~100K negatives) is fitted on standardized features; the standardization is
folded back into ``w`` and ``b`` so the bundle keeps the plain ``z = w.x - b`` form. On the
validation split a Platt sigmoid ``sigmoid(a.z + c)`` turns z into a probability, and the
threshold is the lowest one whose precision reaches the target (best-F1 if it can't).
Classes are independent, so they train in parallel with joblib (X is memory-mapped to the
workers, not copied). Per-class fingerprints of (photo sha256, label) pairs + the recipe let
``--update`` retrain only the classes whose labels changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotag.errors import AutotagError
from autotag.learning.datasets import LabelSet

TRAINED_GROUP = "trained"


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe; part of every class fingerprint (change it and all classes retrain)."""

    C: float = 0.01  # chosen on a Fashion-MNIST training-set split, see MODELS.md
    target_precision: float = 0.9
    val_fraction: float = 0.2
    max_iter: int = 500
    tol: float = 1e-4
    seed: int = 0
    min_positives: int = 2

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Head:
    """One trained class: the bundle row plus what it was trained on."""

    name: str
    w: np.ndarray  # (d,) float32
    b: float
    calib_a: float
    calib_c: float
    threshold: float
    metrics: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically safe logistic function."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def calibrated(z: np.ndarray, a: float | np.ndarray, c: float | np.ndarray) -> np.ndarray:
    """``sigmoid(a.z + c)`` in float32, written as ModelBundle.score writes it (bit for bit)."""
    z = np.asarray(z, dtype=np.float32)
    t = np.asarray(a, dtype=np.float32) * z + np.asarray(c, dtype=np.float32)
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def platt(z: np.ndarray, y: np.ndarray, max_iter: int = 100) -> tuple[float, float]:
    """Fit (a, c) so sigmoid(a.z + c) is calibrated; Platt's smoothed targets avoid a = inf.

    Newton's method with backtracking on the 2-parameter cross-entropy (Platt 1999,
    Lin et al. 2007), z rescaled first for conditioning.
    """
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y) == 1
    npos, nneg = int(y.sum()), int((~y).sum())
    t = np.where(y, (npos + 1.0) / (npos + 2.0), 1.0 / (nneg + 2.0))
    scale = float(z.std()) or 1.0
    zs = z / scale
    a, c = 0.0, float(np.log((npos + 1.0) / (nneg + 1.0)))

    def loss(a: float, c: float) -> float:
        f = a * zs + c
        # -[t log p + (1-t) log(1-p)] with p = sigmoid(f), stably
        return float(np.sum(np.logaddexp(0.0, f) - t * f))

    cur = loss(a, c)
    for _ in range(max_iter):
        p = sigmoid(a * zs + c)
        d = p - t
        g = np.array([np.dot(d, zs), d.sum()])
        wgt = p * (1 - p)
        H = np.array([[np.dot(wgt, zs * zs), np.dot(wgt, zs)], [np.dot(wgt, zs), wgt.sum()]])
        step = np.linalg.solve(H + 1e-12 * np.eye(2), g)
        decrease = float(g @ step)
        lr = 1.0
        while True:  # Armijo backtracking
            na, nc = a - lr * step[0], c - lr * step[1]
            new = loss(na, nc)
            if new <= cur - 1e-4 * lr * decrease:
                break
            lr /= 2
            if lr < 1e-10:
                return a / scale, c
        a, c = na, nc
        if cur - new < 1e-12 * max(1.0, abs(cur)):
            break
        cur = new
    return a / scale, c


def choose_threshold(
    y: np.ndarray, p: np.ndarray, target_precision: float
) -> tuple[float, dict[str, Any]]:
    """Lowest threshold with precision >= target (max recall); else the best-F1 threshold.

    Prediction rule everywhere is ``score >= threshold``.
    """
    from sklearn.metrics import precision_recall_curve

    y = np.asarray(y) == 1
    if y.sum() == 0:
        return 1.0, {"threshold_rule": "no-positives", "val_precision": 0.0, "val_recall": 0.0}
    prec, rec, thr = precision_recall_curve(y, p)
    prec, rec = prec[:-1], rec[:-1]  # the last point has no threshold
    ok = np.flatnonzero(prec >= target_precision)
    if ok.size:
        i = ok[np.lexsort((-prec[ok], -rec[ok]))[0]]
        rule = f"precision>={target_precision:g}"
    else:
        f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)
        i = int(np.argmax(f1))
        rule = "best-f1"
    return float(thr[i]), {
        "threshold_rule": rule,
        "val_precision": float(prec[i]),
        "val_recall": float(rec[i]),
    }


def _class_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "little")


def split_rows(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/val split of positions into y; at least one of each label on each side."""
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for lab in (1, 0):
        idx = np.flatnonzero(y == lab)
        rng.shuffle(idx)
        n_val = min(max(1, int(round(len(idx) * val_fraction))), len(idx) - 1)
        va.append(idx[:n_val])
        tr.append(idx[n_val:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))


def fit_class(
    X: np.ndarray,
    y_all: np.ndarray,
    name: str,
    cfg: TrainConfig,
    mu: np.ndarray,
    sigma: np.ndarray,
) -> Head:
    """Train, calibrate and threshold one class on its labeled rows (y_all: 1 / 0 / -1)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score

    t0 = time.perf_counter()
    rows = np.flatnonzero(y_all >= 0)
    y = (y_all[rows] == 1).astype(np.int8)
    npos, nneg = int(y.sum()), int(len(y) - y.sum())
    d = X.shape[1]
    base = {"n_pos": npos, "n_neg": nneg}
    if npos < max(2, cfg.min_positives) or nneg < 2:
        # Not trainable: a head that never fires, kept so the class list stays stable.
        return Head(
            name,
            np.zeros(d, np.float32),
            0.0,
            0.0,
            -20.0,
            1.0,
            {**base, "status": "skipped: too few labeled examples", "threshold_rule": "never"},
        )
    seed = _class_seed(cfg.seed, name)
    tr, va = split_rows(y, cfg.val_fraction, seed)
    Xtr = np.asarray(X[rows[tr]], dtype=np.float32)  # a copy: standardize it in place
    Xtr -= mu
    Xtr /= sigma
    clf = LogisticRegression(
        C=cfg.C, class_weight="balanced", max_iter=cfg.max_iter, tol=cfg.tol, random_state=seed
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(Xtr, y[tr])
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    del Xtr
    coef = clf.coef_[0].astype(np.float64)
    w64 = coef / sigma
    b64 = float(np.dot(coef, mu / sigma) - clf.intercept_[0])
    w = w64.astype(np.float32)
    b = np.float32(b64)
    # Validate with exactly what the bolt will compute: float32 z = W.x - b, then the bundle's
    # float32 sigmoid, so the chosen threshold sits on the same side of every validation score.
    zva = np.asarray(X[rows[va]], dtype=np.float32) @ w - b
    a, c = (float(np.float32(v)) for v in platt(zva.astype(np.float64), y[va]))
    pva = calibrated(zva, a, c)
    thr, tinfo = choose_threshold(y[va], pva, cfg.target_precision)
    metrics = {
        **base,
        "status": "trained",
        "n_train": int(len(tr)),
        "n_val": int(len(va)),
        "val_pos": int(y[va].sum()),
        "val_ap": float(average_precision_score(y[va], pva)) if y[va].any() else 0.0,
        **tinfo,
        "converged": bool(converged),
        "n_iter": int(np.max(clf.n_iter_)),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return Head(name, w, float(b), float(a), float(c), float(thr), metrics)


def standardizer(X: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std over all training photos (constant dims get std 1)."""
    n, d = X.shape
    s = np.zeros(d)
    ss = np.zeros(d)
    for i in range(0, n, chunk):
        blk = np.asarray(X[i : i + chunk], dtype=np.float64)
        s += blk.sum(0)
        ss += (blk * blk).sum(0)
    mu = s / max(n, 1)
    var = np.maximum(ss / max(n, 1) - mu * mu, 0.0)
    sd = np.sqrt(var)
    sd[sd < 1e-6 * max(float(sd.max(initial=0.0)), 1e-12)] = 1.0
    return mu.astype(np.float32), sd.astype(np.float32)


def _fit_job(
    X: np.ndarray, ycol: np.ndarray, name: str, cfg: TrainConfig, mu: np.ndarray, sigma: np.ndarray
) -> Head:
    """Module-level entry point, so joblib's worker processes can import it."""
    return fit_class(X, ycol, name, cfg, mu, sigma)


def fit_heads(
    X: np.ndarray,
    labels: LabelSet,
    cfg: TrainConfig | None = None,
    *,
    only: Sequence[str] | None = None,
    jobs: int = 1,
    progress: bool = True,
) -> list[Head]:
    """Train a head per class (or only the named ones), in parallel over classes.

    Returns heads in the order of ``labels.classes`` (restricted to ``only``).
    """
    from joblib import Parallel, delayed
    from tqdm import tqdm

    cfg = cfg or TrainConfig()
    if X.shape[0] != labels.n_photos:
        raise ValueError(f"X has {X.shape[0]} rows for {labels.n_photos} photos")
    names = list(labels.classes if only is None else only)
    if not names:
        return []
    X = np.ascontiguousarray(X, dtype=np.float32)
    mu, sigma = standardizer(X)
    cols = [labels.classes.index(n) for n in names]
    bar = tqdm(total=len(names), desc="training", unit="class", disable=not progress)
    heads: dict[str, Head] = {}
    if jobs == 1 or len(names) == 1:
        for n, j in zip(names, cols, strict=True):
            heads[n] = fit_class(X, labels.Y[:, j], n, cfg, mu, sigma)
            bar.update(1)
    else:
        par = Parallel(n_jobs=jobs, return_as="generator_unordered", max_nbytes="1M")
        tasks = (
            delayed(_fit_job)(X, np.ascontiguousarray(labels.Y[:, j]), n, cfg, mu, sigma)
            for n, j in zip(names, cols, strict=True)
        )
        for h in par(tasks):
            heads[h.name] = h
            bar.update(1)
    bar.close()
    return [heads[n] for n in names]


def class_fingerprints(
    labels: LabelSet, shas: Sequence[str], feature_key: str, cfg: TrainConfig
) -> dict[str, str]:
    """Per class: sha256 of its sorted (photo sha256, label) pairs + feature set + recipe.

    Content hashes, not file names, so moving or renaming photos changes nothing.
    """
    if len(shas) != labels.n_photos:
        raise ValueError("one sha per photo")
    # 60 bits of each photo hash, shifted to make room for the label bit: sortable integers.
    h64 = np.asarray([int(s[:15], 16) for s in shas], dtype=np.int64)
    recipe = json.dumps({"features": feature_key, **cfg.as_dict()}, sort_keys=True).encode()
    out = {}
    for j, c in enumerate(labels.classes):
        col = labels.Y[:, j]
        m = col >= 0
        keys = np.unique(h64[m] * 2 + col[m].astype(np.int64))
        h = hashlib.sha256(recipe)
        h.update(keys.astype("<i8").tobytes())
        out[c] = h.hexdigest()
    return out


def stack_heads(heads: Sequence[Head], dim: int) -> dict[str, np.ndarray]:
    """Heads to the bundle's arrays (W, b, thresholds, calib_a, calib_c)."""
    k = len(heads)
    W = np.zeros((k, dim), dtype=np.float32)
    for i, h in enumerate(heads):
        W[i] = h.w
    return {
        "W": W,
        "b": np.asarray([h.b for h in heads], dtype=np.float32),
        "thresholds": np.asarray([h.threshold for h in heads], dtype=np.float32),
        "calib_a": np.asarray([h.calib_a for h in heads], dtype=np.float32),
        "calib_c": np.asarray([h.calib_c for h in heads], dtype=np.float32),
    }


def score_heads(X: np.ndarray, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Calibrated sigmoid probabilities (n, k) for stacked heads (same maths as the bundle)."""
    z = np.asarray(X, dtype=np.float32) @ arrays["W"].T - arrays["b"]
    return calibrated(z, arrays["calib_a"], arrays["calib_c"])


def summarize(heads: Sequence[Head]) -> dict[str, Any]:
    """Bundle-level training summary (what ``models list`` shows)."""
    trained = [h for h in heads if h.metrics.get("status") == "trained"]
    reached = [
        h for h in trained if str(h.metrics.get("threshold_rule", "")).startswith("precision")
    ]
    aps = [h.metrics["val_ap"] for h in trained if "val_ap" in h.metrics]
    return {
        "classes": len(heads),
        "trained": len(trained),
        "skipped": len(heads)
        - len(trained)
        - sum(1 for h in heads if h.metrics.get("status") == "reused"),
        "val_map": round(float(np.mean(aps)), 4) if aps else None,
        "target_precision_reached": len(reached),
        "not_converged": sum(1 for h in trained if not h.metrics.get("converged", True)),
    }


# ---------------------------------------------------------------------------------------------
# From labeled photos to an installed bundle


@dataclass
class TrainResult:
    """What ``train_bundle`` did: the saved bundle and which classes it (re)trained."""

    bundle: Any  # autotag.vision.bundle.ModelBundle
    path: Path
    heads: list[Head]
    retrained: list[str]
    reused: list[str]
    kept: list[str]
    features: dict[str, Any]
    seconds: float
    test: dict[str, Any] | None = None


def load_bundle_ref(ref: str | Path, models_dir: Path) -> Any:
    """A bundle by id (under models_dir/bundles), by directory path, or ``active``."""
    from autotag.vision import bundle as bundles

    p = Path(ref)
    if (p / bundles.MANIFEST_FILE).is_file():
        return bundles.ModelBundle.load(p)
    if str(ref) == "active":
        return bundles.load_active(models_dir)
    return bundles.load_bundle(models_dir, str(ref))


def bundle_feature_set(bundle: Any) -> Any:
    """The feature set a bundle was trained on; refuse a version or dim mismatch."""
    from autotag.errors import ModelError
    from autotag.vision.features import get_feature_set

    fs = get_feature_set(str(bundle.feature_set["name"]))
    want = (str(bundle.feature_set["version"]), int(bundle.feature_set["dim"]))
    if (str(fs.version), int(fs.dim)) != want:
        raise ModelError(
            f"bundle {bundle.id} needs {bundle.feature_key} (dim {want[1]}); "
            f"this code has {fs.name}@{fs.version} (dim {fs.dim}): retrain it"
        )
    return fs


def bundle_probabilities(bundle: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (n, k), thresholds (k,)): exactly what the bolt's tagger uses."""
    return bundle.score(X), np.asarray(bundle.thresholds)


def dataset_name(labels: LabelSet) -> str:
    """``fashion-mnist/train`` from a prepared dataset's dataset.json, else the folder name."""
    src = labels.source.removeprefix("folders:")
    p = Path(src) if src else Path.cwd()
    for d in (p.parent, p) if p.is_file() else (p,):
        meta = d / "dataset.json"
        if meta.is_file():
            try:
                m = json.loads(meta.read_text())
                return "/".join(x for x in (m.get("name"), m.get("split")) if x)
            except (OSError, ValueError):
                pass
    return (p.parent if p.is_file() else p).name or "dataset"


def _safe_name(text: str) -> str:
    out = "".join(ch if ch.isalnum() or ch in "._+-" else "-" for ch in text).strip("-._+")
    return (out or "model")[:80]


def load_training_data(
    labels: LabelSet,
    images_dir: Path,
    fs: Any,
    *,
    cache_root: Path | None = None,
    progress: bool = True,
    allow_missing: bool = False,
) -> tuple[LabelSet, np.ndarray, list[str], dict[str, Any]]:
    """Resolve photos, featurize them (cached), drop missing/undecodable ones.

    Returns (labels of the usable photos, X, their content sha256s, data info).
    """
    from autotag.learning.datasets import resolve_photos
    from autotag.learning.feature_cache import featurize

    paths, missing = resolve_photos(images_dir, labels.photo_ids, allow_missing=allow_missing)
    have = [i for i, p in enumerate(paths) if p is not None]
    labels = labels.subset(have)
    fr = featurize([paths[i] for i in have], fs, cache_root=cache_root, progress=progress)
    ok = np.flatnonzero(fr.ok)
    if ok.size == 0:
        raise AutotagError(f"none of the {len(have)} photos under {images_dir} could be decoded")
    info = {
        "photos_missing": len(missing),
        "photos_undecodable": int(len(have) - ok.size),
        "undecodable_examples": [
            f"{labels.photo_ids[i]}: {why}" for i, why in list(fr.reasons.items())[:5]
        ],
        "features": fr.stats(),
    }
    return labels.subset(ok), fr.X[ok], [fr.shas[i] for i in ok], info


def _head_from_bundle(bundle: Any, name: str) -> Head:
    """Copy a class's row out of an existing bundle, bit for bit."""
    i = bundle.classes.index(name)
    per = (bundle.metrics or {}).get("per_class", {}).get(name, {})
    return Head(
        name,
        np.array(bundle.W[i], dtype=np.float32, copy=True),
        float(bundle.b[i]),
        float(bundle.calib_a[i]),
        float(bundle.calib_c[i]),
        float(bundle.thresholds[i]),
        {**{k: v for k, v in per.items() if k != "threshold"}, "reused_from": bundle.id},
    )


def _stack_exact(heads: Sequence[Head], dim: int, reused: dict[str, tuple[Any, int]]) -> dict:
    """stack_heads, but reused rows are copied straight from the old bundle's float32 arrays."""
    arrays = stack_heads(heads, dim)
    for i, h in enumerate(heads):
        if h.name in reused:
            old, j = reused[h.name]
            for key in ("W", "b", "thresholds", "calib_a", "calib_c"):
                arrays[key][i] = getattr(old, key)[j]
    return arrays


def _with_rows(bundle: Any, heads: list[Any], cols: list[int]) -> Any:
    """A copy of bundle keeping only rows ``cols`` (in order), laid out as ``heads``."""
    from autotag.vision.bundle import ModelBundle

    idx = np.asarray(cols, dtype=np.int64)
    return ModelBundle.create(
        name=bundle.name,
        feature_set=bundle.feature_set,
        classes=[bundle.classes[i] for i in idx],
        heads=heads,
        W=bundle.W[idx],
        b=bundle.b[idx],
        thresholds=bundle.thresholds[idx],
        calib_a=bundle.calib_a[idx],
        calib_c=bundle.calib_c[idx],
        detectors=bundle.detectors,
        metrics=bundle.metrics,
        dataset=bundle.dataset,
        provenance=bundle.provenance,
        id=bundle.id,
        version=bundle.version,
        created=bundle.created,
    )


def _sub_bundle(bundle: Any, groups: Sequence[str]) -> Any:
    """Only the named head groups of a bundle (to carry them into a new one)."""
    heads, cols, pos = [], [], 0
    for h in bundle.heads:
        if h.group in groups:
            n = h.stop - h.start
            heads.append(dataclasses.replace(h, start=pos, stop=pos + n))
            cols.extend(range(h.start, h.stop))
            pos += n
    return _with_rows(bundle, heads, cols)


def _drop_classes(bundle: Any, names: set[str]) -> Any:
    """A copy of bundle without some classes (trained tags replace same-named default ones)."""
    if not names:
        return bundle
    heads, cols, pos = [], [], 0
    for h in bundle.heads:
        keep = [i for i in range(h.start, h.stop) if bundle.classes[i] not in names]
        if keep:
            heads.append(dataclasses.replace(h, start=pos, stop=pos + len(keep)))
            cols.extend(keep)
            pos += len(keep)
    return _with_rows(bundle, heads, cols)


def _unique_id(models_dir: Path, name: str) -> str:
    from autotag.vision.bundle import bundle_dir, new_bundle_id

    base = new_bundle_id(name)
    candidate, n = base, 1
    while bundle_dir(models_dir, candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def train_bundle(
    labels: LabelSet,
    images_dir: Path | str,
    *,
    features: str | None = None,
    cfg: TrainConfig | None = None,
    recipe_overrides: dict[str, Any] | None = None,
    name: str | None = None,
    merge_default: bool = False,
    update: str | Path | None = None,
    activate: bool = False,
    jobs: int = -1,
    progress: bool = True,
    cache_root: Path | None = None,
    allow_missing: bool = False,
    models_dir: Path | None = None,
    test: tuple[Path, LabelSet] | None = None,
) -> TrainResult:
    """Labels + images -> a new versioned bundle under models_dir/bundles/ (see module doc).

    With ``update``, classes whose fingerprint matches the old bundle are copied bit for bit,
    classes absent from these labels are kept as they were, the rest are retrained; the old
    recipe is reused unless overridden. ``test`` = (images dir, labels) adds held-out test
    metrics to the manifest.
    """
    from autotag.config import settings
    from autotag.vision import bundle as bundles
    from autotag.vision.features import get_feature_set

    t0 = time.perf_counter()
    models_dir = Path(models_dir or settings().models_dir)
    images_dir = Path(images_dir)
    old = None
    old_fps: dict[str, str] = {}
    old_group = None
    if update is not None:
        old = load_bundle_ref(update, models_dir)
        ds = old.dataset if isinstance(old.dataset, dict) else {}
        old_fps = ds.get("fingerprints") or {}
        old_group = ds.get("head_group")
        if not old_fps or old_group is None:
            raise AutotagError(
                f"bundle {old.id} was not made by `autotag train`: nothing to update"
            )
        old_features = str(old.feature_set["name"])
        if features is not None and features != old_features:
            raise AutotagError(f"--update {old.id} uses {old_features} features, not {features}")
        features = old_features
        if cfg is None:
            cfg = TrainConfig(**{**ds.get("recipe", {}), **(recipe_overrides or {})})
    features = features or "cnn"
    cfg = cfg or TrainConfig(**(recipe_overrides or {}))
    if merge_default and features != "cnn":
        raise AutotagError("--merge-default needs --features cnn (the ImageNet heads read cnn)")
    fs = get_feature_set(features)
    feature_key = f"{fs.name}@{fs.version}"
    if old is not None:
        bundle_feature_set(old)  # same version and dim, or retrain from scratch

    labels, X, shas, data_info = load_training_data(
        labels,
        images_dir,
        fs,
        cache_root=cache_root,
        progress=progress,
        allow_missing=allow_missing,
    )
    fps = class_fingerprints(labels, shas, feature_key, cfg)
    reused_names = [c for c in labels.classes if old is not None and old_fps.get(c) == fps[c]]
    kept_names = [c for c in old_fps if c not in fps]
    todo = [c for c in labels.classes if c not in set(reused_names)]
    if progress and old is not None:
        print(
            f"update {old.id}: retrain {len(todo)}, reuse {len(reused_names)}, "
            f"keep {len(kept_names)} classes"
        )
    new_heads = {
        h.name: h for h in fit_heads(X, labels, cfg, only=todo, jobs=jobs, progress=progress)
    }
    heads: list[Head] = []
    reused_rows: dict[str, tuple[Any, int]] = {}
    for c in [*labels.classes, *kept_names]:
        if c in new_heads:
            h = new_heads[c]
            h.fingerprint = fps[c]
        else:
            h = _head_from_bundle(old, c)
            h.fingerprint = old_fps[c]
            reused_rows[c] = (old, old.classes.index(c))
        heads.append(h)
    arrays = _stack_exact(heads, fs.dim, reused_rows)

    bundle_name = _safe_name(
        name or (old.name if old is not None else f"{dataset_name(labels)}-{features}")
    )
    group = old_group or bundle_name
    bundle_id = _unique_id(models_dir, bundle_name)
    counts = labels.counts()
    summary = summarize(heads)
    per_class = {h.name: {**h.metrics, "threshold": round(h.threshold, 6)} for h in heads}
    metrics: dict[str, Any] = {}
    dataset = {
        "name": dataset_name(labels),
        "labels": labels.source,
        "images": str(images_dir),
        "photos": labels.n_photos,
        **{k: v for k, v in data_info.items() if k != "features"},
        "classes": len(heads),
        "positives": int(sum(v["pos"] for v in counts.values())),
        "negatives": int(sum(v["neg"] for v in counts.values())),
        "feature_set": feature_key,
        "head_group": group,
        "recipe": cfg.as_dict(),
        "fingerprints": {h.name: h.fingerprint for h in heads},
    }
    import sklearn

    provenance = {
        "trainer": "autotag.learning.training.train_bundle",
        "classifier": "one-vs-rest sklearn LogisticRegression(lbfgs, class_weight='balanced') "
        "on standardized features, folded into z = W.x - b",
        "calibration": "Platt sigmoid(calib_a*z + calib_c) fitted on each class's validation split",
        "thresholds": f"calibrated probability; lowest reaching precision "
        f">= {cfg.target_precision:g} on validation, else best F1 (per_class threshold_rule)",
        "sklearn": sklearn.__version__,
    }
    if old is not None:
        provenance["updated_from"] = old.id
    trained = bundles.ModelBundle.create(
        id=bundle_id,
        name=bundle_name,
        feature_set=fs.spec()
        if hasattr(fs, "spec")
        else {"name": fs.name, "version": str(fs.version), "dim": fs.dim},
        classes=[h.name for h in heads],
        heads=[
            bundles.HeadGroup(group, "sigmoid", 0, len(heads), source=f"autotag train ({bundle_id})")
        ],
        metrics=metrics,
        dataset=dataset,
        provenance=provenance,
        **arrays,
    )
    test_report = None
    if test is not None:
        from autotag.learning.evaluation import evaluate_bundle

        test_report = evaluate_bundle(
            trained,
            Path(test[0]),
            test[1],
            cache_root=cache_root,
            progress=progress,
            allow_missing=allow_missing,
        )
        ts = test_report["summary"]
        for key in ("top1_accuracy", "map", "macro_f1"):
            if ts.get(key) is not None:
                metrics[f"test_{key}"] = ts[key]
    metrics["val_map"] = summary["val_map"]
    metrics["validation"] = summary
    if test_report is not None:
        metrics["test"] = {**test_report["summary"], "data": test_report["data"]}
    metrics["training"] = {
        "seconds": round(time.perf_counter() - t0, 1),
        "jobs": jobs,
        "retrained": len(todo),
        "reused": len(reused_names),
        "kept": len(kept_names),
        "features": data_info["features"],
    }
    metrics["per_class"] = per_class
    trained.metrics = metrics  # create() copied the dict before it was filled in

    final = trained
    extra_groups: list[str] = []
    if old is not None:
        extra_groups = [h.group for h in old.heads if h.group != old_group]
    if extra_groups or merge_default:
        if extra_groups:
            other = _sub_bundle(old, extra_groups)
        else:
            from autotag.vision.imagenet import DEFAULT_BUNDLE_ID, build_default_bundle

            build_default_bundle(models_dir)
            other = bundles.load_bundle(models_dir, DEFAULT_BUNDLE_ID)
        clash = set(trained.classes) & set(other.classes)
        other = _drop_classes(other, clash)
        final = trained.merge(other, id=bundle_id, name=bundle_name)
        final.metrics = metrics
        final.dataset = dataset
        final.provenance = {
            **provenance,
            "merged_with": other.id,
            "merged_heads": [h.group for h in other.heads],
            "replaced_default_tags": sorted(clash),
            "merged_provenance": other.provenance.get("parts", {}).get(other.id, other.provenance),
        }
    path = final.install(models_dir)
    if activate:
        bundles.set_active(models_dir, final.id)
    return TrainResult(
        bundle=final,
        path=path,
        heads=heads,
        retrained=todo,
        reused=reused_names,
        kept=kept_names,
        features=data_info["features"],
        seconds=time.perf_counter() - t0,
        test=test_report,
    )
