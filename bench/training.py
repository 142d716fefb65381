"""Benchmark: training time and peak memory vs number of classes (autotag.learning.head.LinearHead).

One-vs-rest tasks on a cached-feature-sized matrix (default 20,000 x 1,280 float32, the
EfficientNet-Lite0 embedding size): the real cached Fashion-MNIST cnn vectors when present,
else Gaussian. Each synthetic class is a noisy "concept" (the ~9% of photos nearest a random
prototype photo, 5% of labels flipped; Flickr's ~10K vs ~100K), so the solver does a
realistic number of iterations. Each class count runs in a fresh child process; peak memory
is sampled over the whole process tree (parent + joblib workers, from /proc) and
reported with the main process's getrusage maxrss.

    nice -n 10 python bench/training.py --classes 10,100,1000 --jobs 2
    python bench/training.py c-sweep --features cnn+hog --C 1,0.1,0.01   # choosing C
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))


def _tree_rss_kb(root: int) -> tuple[int, int, int]:
    """(total VmRSS of root + descendants, root's own, largest single descendant's), in kB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                stat = fh.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        rss[int(d)] = int(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    total, biggest, stack = 0, 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        if pid != root:
            biggest = max(biggest, rss.get(pid, 0))
        stack.extend(children.get(pid, []))
    return total, rss.get(root, 0), biggest


class PeakSampler(threading.Thread):
    """Samples RSS every interval seconds: peaks of the tree, the main process, one worker.

    The tree total counts X's memory-mapped pages once per process that touches them, so it
    over-states physical use; getrusage's children maxrss is useless here (Linux carries a
    parent's maxrss into forked children), hence this sampler.
    """

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = (0, 0, 0)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            now = _tree_rss_kb(os.getpid())
            self.peak = tuple(max(a, b) for a, b in zip(self.peak, now, strict=True))
            self._halt.wait(self.interval)

    def stop(self) -> tuple[int, int, int]:
        self._halt.set()
        self.join()
        return self.peak


def real_features(n: int) -> np.ndarray | None:
    """The first n cached cnn vectors of prepared Fashion-MNIST train photos, if cached."""

    from autotag.checksums import file_sha256
    from autotag.config import settings
    from autotag.learning.datasets import read_labels, resolve_photos
    from autotag.learning.feature_cache import FeatureCache
    from autotag.vision.features import FEATURE_SPECS

    d = settings().run_dir / "datasets" / "fashion-mnist" / "train"
    if not (d / "labels.csv").is_file():
        return None
    labels = read_labels(d / "labels.csv")
    if labels.n_photos < n:
        return None
    paths, _ = resolve_photos(d / "images", labels.photo_ids[:n])
    version, dim = FEATURE_SPECS["cnn"]
    cache = FeatureCache(settings().run_dir / "featcache", "cnn", version, dim)
    shas = [file_sha256(p) for p in paths]
    if not all(s in cache for s in shas):
        return None
    return np.ascontiguousarray(cache.get(shas))


def synthetic(n: int, dim: int, k: int, pos_rate: float, source: str, seed: int = 0):
    """(X float32 (n, dim), LabelSet of k classes, X's source).

    Each class is a "concept": the pos_rate fraction of photos most similar (cosine) to a
    random prototype photo, with 5% of labels flipped - not linearly separable, like real tags,
    so the solver does a realistic number of iterations. X is real cached EfficientNet
    features when available (realistic conditioning), else Gaussian.
    """

    from autotag.learning.datasets import LabelSet

    rng = np.random.default_rng(seed)
    X = real_features(n) if source in ("auto", "real") and dim == 1280 else None
    if X is None:
        if source == "real":
            raise SystemExit("no cached cnn features: run `autotag train` on fashion-mnist first")
        X, source = rng.standard_normal((n, dim), dtype=np.float32), "gaussian"
    else:
        source = "fashion-mnist cnn features (cached)"
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    Y = np.empty((n, k), dtype=np.int8)
    for start in range(0, k, 256):
        stop = min(k, start + 256)
        protos = Xn[rng.integers(0, n, stop - start)]
        S = Xn @ protos.T + 0.05 * rng.standard_normal((n, stop - start), dtype=np.float32)
        cut = np.quantile(S, 1 - pos_rate, axis=0)
        Yb = (S > cut).astype(np.int8)
        flip = rng.random(Yb.shape) < 0.05
        Y[:, start:stop] = np.where(flip, 1 - Yb, Yb)
    return X, LabelSet([f"class{j:04d}" for j in range(k)], [str(i) for i in range(n)], Y), source


def child(args: argparse.Namespace) -> None:
    """One measurement, printed as a JSON line (runs in its own process)."""
    from joblib.externals.loky import get_reusable_executor

    from autotag.cli.training import progress_bars
    from autotag.learning.head import LinearHead

    sampler = PeakSampler()
    sampler.start()
    t0 = time.perf_counter()
    X, labels, source = synthetic(args.n, args.dim, args.k, args.pos_rate, args.source)
    t_data = time.perf_counter() - t0
    t1 = time.perf_counter()
    head = LinearHead(n_jobs=args.jobs)
    head.fit(X, labels.Y, labels.classes, progress=progress_bars(args.progress))
    t_train = time.perf_counter() - t1
    get_reusable_executor().shutdown(wait=True)  # workers gone before the next measurement
    peak_tree, peak_main, peak_worker = sampler.stop()
    metrics = list(head.class_metrics_.values())
    per = [m["seconds"] for m in metrics]
    out = {
        "classes": args.k,
        "n": args.n,
        "dim": args.dim,
        "jobs": args.jobs,
        "data_seconds": round(t_data, 2),
        "train_seconds": round(t_train, 2),
        "seconds_per_class_wall": round(t_train / args.k, 3),
        "seconds_per_class_cpu_median": round(float(np.median(per)), 3),
        "iterations_median": int(np.median([m["n_iter"] for m in metrics])),
        "not_converged": sum(not m["converged"] for m in metrics),
        "val_ap_mean": round(float(np.mean([m["val_ap"] for m in metrics])), 4),
        "peak_tree_rss_mb": round(peak_tree / 1024, 1),
        "peak_main_rss_mb": round(peak_main / 1024, 1),
        "peak_one_worker_rss_mb": round(peak_worker / 1024, 1),
        "maxrss_main_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "X_mb": round(X.nbytes / 2**20, 1),
        "features": source,
        "C": head.C,
    }
    print(json.dumps(out), flush=True)


def c_sweep(argv: list[str]) -> None:
    """Choose C without the test set: fit on Fashion-MNIST train[0:20000], score train[50000:].

    python bench/training.py c-sweep --features cnn+hog --C 1,0.1,0.01,0.003,0.001
    """
    from autotag.cli.training import progress_bars
    from autotag.config import settings
    from autotag.learning.datasets import read_labels, resolve_photos
    from autotag.learning.evaluation import evaluate_scores
    from autotag.learning.feature_cache import featurize
    from autotag.learning.head import LinearHead
    from autotag.pipeline.tag_step import decode_limits, feature_options
    from autotag.vision.feature_sets import get_feature_set

    ap = argparse.ArgumentParser(prog="bench/training.py c-sweep", description=c_sweep.__doc__)
    ap.add_argument("--features", default="cnn+hog")
    ap.add_argument("--C", dest="Cs", default="1,0.1,0.01,0.003,0.001")
    ap.add_argument("--fit", type=int, default=20_000, help="fit on train[0:FIT]")
    ap.add_argument("--val-from", type=int, default=50_000, help="validate on train[VAL_FROM:]")
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args(argv)
    s = settings()
    d = s.run_dir / "datasets" / "fashion-mnist" / "train"
    labels = read_labels(d / "labels.csv")
    paths, _ = resolve_photos(d / "images", labels.photo_ids)
    fs = get_feature_set(args.features, feature_options(s.tagging))
    X = featurize(
        paths,
        fs,
        s.run_dir / "featcache",
        limits=decode_limits(s.limits),
        progress=progress_bars(True),
    ).X
    fit, val = np.arange(args.fit), np.arange(args.val_from, labels.n_photos)
    print("features C seconds val_top1 val_map not_converged")
    for C in [float(c) for c in args.Cs.split(",")]:
        t = time.perf_counter()
        train = labels.subset(fit)
        head = LinearHead(C=C, n_jobs=args.jobs).fit(X[fit], train.Y, train.classes)
        rep = evaluate_scores(head.predict_proba(X[val]), labels.subset(val), head.threshold_)
        summary = rep["summary"]
        print(
            args.features,
            C,
            round(time.perf_counter() - t),
            summary["top1_accuracy"],
            summary["map"],
            sum(not m["converged"] for m in head.class_metrics_.values()),
            flush=True,
        )


def main() -> None:
    if sys.argv[1:2] == ["c-sweep"]:
        c_sweep(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--classes", default="10,100,1000", help="comma-separated class counts")
    ap.add_argument("--n", type=int, default=20_000, help="photos (rows)")
    ap.add_argument("--dim", type=int, default=1280, help="feature dimension")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--pos-rate", type=float, default=0.09)
    ap.add_argument("--out", type=Path, default=HERE / "out" / "training.json")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument(
        "--source",
        choices=["auto", "real", "gaussian"],
        default="auto",
        help="X: cached Fashion-MNIST cnn features (auto = if cached) or Gaussian",
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    results = []
    for k in [int(x) for x in args.classes.split(",")]:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            f"--k={k}",
            f"--n={args.n}",
            f"--dim={args.dim}",
            f"--jobs={args.jobs}",
            f"--pos-rate={args.pos_rate}",
        ]
        if args.progress:
            cmd.append("--progress")
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(res)
        print(json.dumps(res), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "bench": "training",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "results": results,
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
