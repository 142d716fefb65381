"""Benchmark: which training framework — install size and time, and LeNet-5 speed per epoch.

``install``: for each framework, in a throwaway venv under /tmp (deleted afterwards):
download its wheels from PyPI (``pip download``, timed: the cold-cache cost), then install
them into a fresh venv from those files only (``--no-index``, timed: the warm-cache cost),
and report the wheels' size (with the ``nvidia-*`` CUDA wheels counted apart) and the
installed size. ``train``: one LeNet-5 (the ``autotag train-cnn`` layout: 5×5 convolutions
6 and 16, dense 120-84-10, ReLU, max pooling) on Fashion-MNIST, AdamW 1e-3, batch 128, one
thread, in JAX or PyTorch on the same images and order; prints seconds per epoch (the first
JAX epoch includes compilation and is shown apart) and test top-1. ``all`` does both, running
``train`` inside each framework's venv. This file needs only NumPy (it runs in those venvs),
reading the IDX files of Debian's dataset-fashion-mnist directly. Only meaningful on an idle
machine.

    python bench/frameworks.py all                       # install + train, ~5 GB of downloads
    python bench/frameworks.py install --frameworks jax,tensorflow-cpu
    python bench/frameworks.py train --framework jax --epochs 2 --limit 6400   # smoke test
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SPECS = {
    # What `make deps-train` installs (virtualenvs/train.txt pins these versions).
    "jax": ["jax[cpu]==0.10.2", "optax==0.2.8"],
    "torch": ["torch"],  # PyPI's x86_64 wheel (it requires the CUDA runtime wheels)
    "tensorflow-cpu": ["tensorflow-cpu"],
}
TRAINABLE = {"jax", "torch"}


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist(split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    prefix = {"train": "train", "test": "t10k"}[split]
    x = read_idx(FASHION_MNIST / f"{prefix}-images-idx3-ubyte.gz")[:limit]
    y = read_idx(FASHION_MNIST / f"{prefix}-labels-idx1-ubyte.gz")[:limit].astype(np.int64)
    return (x.astype(np.float32) / 255.0)[:, None], y


# --- install -------------------------------------------------------------------------------


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def measure_install(name: str, root: Path) -> dict:
    wheels, venv = root / f"{name}-wheels", root / f"{name}-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check"]
    t0 = time.perf_counter()
    subprocess.run(
        [*pip, "download", "--no-cache-dir", "-d", str(wheels), *SPECS[name]], check=True
    )
    download_s = time.perf_counter() - t0
    base = du(venv)
    t0 = time.perf_counter()
    subprocess.run(
        [*pip, "install", "--no-index", "--find-links", str(wheels), *SPECS[name]], check=True
    )
    install_s = time.perf_counter() - t0
    files = {f.name: f.stat().st_size for f in wheels.iterdir()}
    cuda = sum(s for n, s in files.items() if n.startswith("nvidia_") or n.startswith("triton"))
    main = max(files, key=files.get)
    return {
        "framework": name,
        "spec": " ".join(SPECS[name]),
        "wheels": len(files),
        "download_mb": round(sum(files.values()) / 1e6, 1),
        "cuda_wheels_mb": round(cuda / 1e6, 1),
        "largest_wheel": f"{main} ({files[main] / 1e6:.1f} MB)",
        "installed_mb": round((du(venv) - base) / 1e6, 1),
        "download_s": round(download_s, 1),
        "install_from_local_wheels_s": round(install_s, 1),
        "venv": str(venv),
    }


# --- train ---------------------------------------------------------------------------------


def train_jax(x, y, xt, yt, epochs: int, batch: int, seed: int) -> dict:
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    import jax
    import jax.numpy as jnp
    import optax

    rng = np.random.default_rng(seed)

    def he(shape, fan_in):
        return jnp.asarray(rng.standard_normal(shape) * np.sqrt(2 / fan_in), jnp.float32)

    params = {
        "c1": he((6, 1, 5, 5), 25), "c1b": jnp.zeros(6), "c2": he((16, 6, 5, 5), 150),
        "c2b": jnp.zeros(16), "d1": he((400, 120), 400), "d1b": jnp.zeros(120),
        "d2": he((120, 84), 120), "d2b": jnp.zeros(84), "d3": he((84, 10), 84), "d3b": jnp.zeros(10),
    }  # fmt: skip

    def pool(h):
        return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def conv(h, w, b, pad):
        dn = ("NCHW", "OIHW", "NCHW")
        out = jax.lax.conv_general_dilated(h, w, (1, 1), [(pad, pad)] * 2, dimension_numbers=dn)
        return out + b[None, :, None, None]

    def logits(p, h):
        h = pool(jax.nn.relu(conv(h, p["c1"], p["c1b"], 2)))
        h = pool(jax.nn.relu(conv(h, p["c2"], p["c2b"], 0))).reshape(h.shape[0], -1)
        h = jax.nn.relu(h @ p["d1"] + p["d1b"])
        h = jax.nn.relu(h @ p["d2"] + p["d2b"])
        return h @ p["d3"] + p["d3b"]

    opt = optax.adamw(1e-3, weight_decay=1e-4)
    state = opt.init(params)

    @jax.jit
    def step(p, s, xb, yb):
        def loss(q):
            return optax.softmax_cross_entropy_with_integer_labels(logits(q, xb), yb).mean()

        g = jax.grad(loss)(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    predict = jax.jit(logits)
    seconds = []
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(y))
        t0 = time.perf_counter()
        for k in range(len(y) // batch):
            rows = order[k * batch : (k + 1) * batch]
            params, state = step(params, state, x[rows], y[rows])
        jax.block_until_ready(params)
        seconds.append(time.perf_counter() - t0)
    pred = np.concatenate([np.asarray(predict(params, xt[s : s + 2000])).argmax(1)
                           for s in range(0, len(yt), 2000)])  # fmt: skip
    return {"framework": f"jax {jax.__version__}", "seconds": seconds,
            "test_top1": float((pred == yt).mean())}  # fmt: skip


def train_torch(x, y, xt, yt, epochs: int, batch: int, seed: int) -> dict:
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    seconds = []
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(y))
        t0 = time.perf_counter()
        for k in range(len(y) // batch):
            rows = torch.from_numpy(order[k * batch : (k + 1) * batch])
            opt.zero_grad(set_to_none=True)
            loss_fn(net(xs[rows]), ys[rows]).backward()
            opt.step()
        seconds.append(time.perf_counter() - t0)
    with torch.no_grad():
        pred = net(torch.from_numpy(xt)).argmax(1).numpy()
    return {"framework": f"torch {torch.__version__}", "seconds": seconds,
            "test_top1": float((pred == yt).mean())}  # fmt: skip


def run_train(args: argparse.Namespace) -> dict:
    x, y = fashion_mnist("train", args.limit)
    xt, yt = fashion_mnist("test", None)
    fn = {"jax": train_jax, "torch": train_torch}[args.framework]
    out = fn(x, y, xt, yt, args.epochs, 128, 0)
    out["seconds"] = [round(s, 2) for s in out["seconds"]]
    out["images_per_epoch"] = len(y) // 128 * 128
    return out


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["install", "train", "all"])
    ap.add_argument("--frameworks", default=",".join(SPECS))
    ap.add_argument("--framework", choices=sorted(TRAINABLE), default="jax")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="first N training images")
    ap.add_argument("--keep", action="store_true", help="keep the venvs under /tmp")
    args = ap.parse_args()
    if args.command == "train":
        print(json.dumps(run_train(args)))
        return
    root = Path(tempfile.mkdtemp(prefix="bench-frameworks-"))
    try:
        for name in args.frameworks.split(","):
            r = measure_install(name, root)
            print(json.dumps({k: v for k, v in r.items() if k != "venv"}), flush=True)
            if args.command == "all" and name in TRAINABLE:
                py = Path(r["venv"]) / "bin" / "python"
                subprocess.run([str(py), "-m", "pip", "-q", "install", "numpy"], check=True)
                cmd = [str(py), __file__, "train", "--framework", name, "--epochs",
                       str(args.epochs)] + (["--limit", str(args.limit)] if args.limit else [])  # fmt: skip
                print(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout,
                      end="", flush=True)  # fmt: skip
            if not args.keep:
                shutil.rmtree(root / f"{name}-venv", ignore_errors=True)
                shutil.rmtree(root / f"{name}-wheels", ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
