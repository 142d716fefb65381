"""Benchmark: seconds per training epoch with 1 and with N data-parallel processes.

Runs the same training (same network, seed, global batch and data order) once per process
count, side by side in one run, and prints the median seconds per epoch (compilation
excluded), the speed-up over one process, and each run's validation and test top-1 (which
must agree within noise: the arithmetic is the same up to the order of float additions).
Only meaningful on an idle machine.

    python bench/train_cnn.py --model lenet5 --procs 1,2 --epochs 2
    python bench/train_cnn.py --model tiny --procs 1,2 --epochs 1 --limit 2048   # smoke test
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from autotag.learning.datasets import FASHION_MNIST_CLASSES, fashion_mnist_arrays
from autotag.learning.network_training import NetworkConfig, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--procs", default="1,2", help="comma-separated process counts")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N training images")
    ap.add_argument("--test-limit", type=int, default=None, help="first N test images [all]")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import numpy as np

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-train-cnn-") as tmp:
        data = Path(tmp)
        for split, limit in (("train", args.limit), ("test", args.test_limit)):
            x, y = fashion_mnist_arrays(split, limit=limit)
            np.save(data / f"x_{split}.npy", x)
            np.save(data / f"y_{split}.npy", y)
        for procs in (int(p) for p in args.procs.split(",")):
            config = NetworkConfig(
                arch=args.model,
                x_train=str(data / "x_train.npy"),
                y_train=str(data / "y_train.npy"),
                x_test=str(data / "x_test.npy"),
                y_test=str(data / "y_test.npy"),
                classes=list(FASHION_MNIST_CLASSES),
                work_dir=str(data / f"p{procs}"),
                procs=procs,
                epochs=args.epochs,
                patience=args.epochs,
                progress=False,
            )
            r = run(config)
            rows.append(
                {
                    "procs": procs,
                    "seconds_per_epoch": r["seconds_per_epoch"],
                    "epoch_seconds": [h["seconds"] for h in r["history"]],
                    "validation_top1": r["validation_accuracy"],
                    "test_top1": r["test_accuracy"],
                    "train_images": r["n_train"],
                    "test_images": r["n_test"],
                }
            )
    base = rows[0]["seconds_per_epoch"]
    for row in rows:
        row["speedup"] = round(base / row["seconds_per_epoch"], 2)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{args.model}, {args.epochs} epoch(s), {rows[0]['train_images']} training images, "
        f"test top-1 on {rows[0]['test_images']}"
    )
    print("procs  s/epoch  speed-up  validation  test    (each epoch, s)")
    for r in rows:
        print(
            f"{r['procs']:>5}  {r['seconds_per_epoch']:>7.1f}  {r['speedup']:>8.2f}"
            f"  {r['validation_top1']:>10.4f}  {r['test_top1']:.4f}  {r['epoch_seconds']}"
        )


if __name__ == "__main__":
    main()
