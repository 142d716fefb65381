"""Data-parallel network training with JAX's own distributed runtime, one process per core.

Every worker process reads the images itself (the data lives where the training runs),
draws the same seeded permutation each epoch and feeds its own slice of every global batch.
``jax.distributed`` joins the workers (coordinator on 127.0.0.1, CPU collectives over gloo);
the train step is one ``jit`` over a mesh of all workers' devices with the batch sharded
and the parameters replicated, so XLA all-reduces the gradients and every worker holds the
same parameters after every step. Each worker runs XLA single-threaded: N processes × 1
thread is the plain use of N cores.

A validation split of the training images picks the epoch (early stopping, best weights
kept); a checkpoint (npz: parameters, optimizer state, epoch, history; never pickle) is
written after every epoch and ``resume`` continues from it. Worker 0 shows the progress bar,
scores the test images, writes the ONNX graph and checks it against JAX.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from autotag.errors import AutotagError
from autotag.learning.network_data import SHIFT, augment, softmax, split_validation, to_input
from autotag.learning.network_export import run_onnx, write_onnx
from autotag.learning.networks import (
    batchnorm_statistics,
    embedding_dim,
    forward,
    forward_float64,
    has_batchnorm,
    init_params,
    layers_of,
    trainable,
)

INSTALL_HINT = "the training framework is not installed: pip install -r virtualenvs/train.txt"
CHECKPOINT = "checkpoint.npz"
RESULT = "result.json"
PARAMS = "params.npz"
ONNX_FILE = "network.onnx"
TEST_LOGITS = "test_logits.npy"  # JAX's, float32: what the bundle is checked against
BN_IMAGES = 5000  # training images (not augmented) that batch norm's statistics are measured on


@dataclass(frozen=True, kw_only=True)
class TrainingSchedule:
    """How a network is trained: the choices ``autotag train-cnn`` offers, passed unchanged
    from the request to every worker."""

    procs: int = 1
    epochs: int = 15
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    patience: int = 4
    seed: int = 0
    augment: bool = False  # random horizontal flip and shift by up to 2 px (training only)
    until_epoch: int | None = None  # stop this run after that epoch; the schedule spans epochs
    resume: bool = False
    progress: bool = True

    def schedule(self) -> dict[str, Any]:
        """Just the schedule's fields, to hand on to another dataclass that has them."""
        return {f.name: getattr(self, f.name) for f in fields(TrainingSchedule)}


@dataclass(frozen=True, kw_only=True)
class NetworkConfig(TrainingSchedule):
    """Everything a worker needs; written beside the checkpoint so resume can check it."""

    arch: str
    x_train: str  # npy files (uint8 N×H×W) and int64 labels, written by the parent
    y_train: str
    x_test: str
    y_test: str
    classes: list[str]
    work_dir: str
    port: int = 0

    @property
    def input_shape(self) -> tuple[int, int, int]:
        h, w = np.load(self.x_test, mmap_mode="r").shape[1:]
        return (1, int(h), int(w))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(config: NetworkConfig) -> dict[str, Any]:
    """Train with ``config.procs`` worker processes; return worker 0's result."""
    try:
        import jax  # noqa: F401
        import optax  # noqa: F401
    except ImportError:
        raise AutotagError(INSTALL_HINT) from None
    work = Path(config.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / RESULT).unlink(missing_ok=True)
    config = NetworkConfig(**{**asdict(config), "port": config.port or free_port()})
    env_flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    saved = os.environ.get("XLA_FLAGS")
    os.environ["XLA_FLAGS"] = env_flags  # inherited by the spawned workers
    workers: list[Any] = []
    stop = _TermAsInterrupt()
    try:
        ctx = mp.get_context("spawn")
        workers = [
            ctx.Process(target=_worker, args=(config, r), daemon=True) for r in range(config.procs)
        ]
        for p in workers:
            p.start()
        _join(workers)
    finally:
        for p in workers:  # interrupted or killed: no worker outlives the command
            if p.is_alive():
                p.kill()
                p.join()
        stop.restore()
        if saved is None:
            os.environ.pop("XLA_FLAGS", None)
        else:
            os.environ["XLA_FLAGS"] = saved
    failed = [r for r, p in enumerate(workers) if p.exitcode != 0]
    if failed or not (work / RESULT).is_file():
        raise AutotagError(f"training worker(s) {failed or [0]} failed (see messages above)")
    return json.loads((work / RESULT).read_text())


class _TermAsInterrupt:
    """SIGTERM raises KeyboardInterrupt in the main thread while workers run, so the cleanup
    above stops them (daemonic children are not stopped by a signal to their parent)."""

    def __init__(self) -> None:
        self.old: Any = None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGTERM, self._raise)

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def restore(self) -> None:
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)


def _join(workers: list[Any]) -> None:
    """Wait for all workers; if one fails, stop the others (they would wait for it forever
    in the next all-reduce)."""
    while any(p.is_alive() for p in workers):
        if any(p.exitcode not in (None, 0) for p in workers):
            for p in workers:
                if p.is_alive():
                    p.kill()
        time.sleep(0.5)
    for p in workers:
        p.join()


# --- worker -----------------------------------------------------------------------------------


def _worker(config: NetworkConfig, rank: int) -> None:
    # Gloo's C++ code prints its connection lines on stdout; the command's stdout is for its
    # result (--json), so a worker's stdout goes to stderr.
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    import jax

    if config.procs > 1:
        try:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        except (AttributeError, ValueError):  # newer JAX: gloo is already the default
            pass
        jax.distributed.initialize(
            f"127.0.0.1:{config.port}", num_processes=config.procs, process_id=rank
        )
    try:
        _train(config, rank)
    finally:
        if config.procs > 1:
            jax.distributed.shutdown()


def _train(config: NetworkConfig, rank: int) -> None:
    import jax
    import optax
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    work = Path(config.work_dir)
    layers = layers_of(config.arch, len(config.classes))
    x_all = np.load(config.x_train, mmap_mode="r")
    y_all = np.load(config.y_train)
    train_rows, val_rows = split_validation(y_all, config.val_fraction, config.seed)
    x_val, y_val = to_input(x_all[val_rows]), y_all[val_rows]
    x_bn = None  # the images batch-norm statistics are measured on
    if has_batchnorm(layers):
        rows = np.random.default_rng([config.seed, 2]).permutation(train_rows)[:BN_IMAGES]
        x_bn = to_input(x_all[np.sort(rows)])

    mesh = Mesh(np.array(jax.devices()), ("data",))
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    local_batch = config.batch_size // config.procs
    global_batch = local_batch * config.procs
    steps = len(train_rows) // global_batch
    if steps == 0:
        raise AutotagError(f"{len(train_rows)} training images: fewer than one batch")
    schedule = optax.cosine_decay_schedule(config.lr, steps * config.epochs)
    optimizer = optax.adamw(schedule, weight_decay=config.weight_decay)

    params = init_params(layers, config.input_shape, config.seed)
    opt_state = optimizer.init(trainable(params))
    history: list[dict[str, Any]] = []
    start, best = 0, {"val_accuracy": -1.0, "epoch": -1}
    best_params = params
    ckpt = work / CHECKPOINT
    if config.resume and ckpt.is_file():
        params, opt_state, best_params, start, history, best = _load_checkpoint(
            ckpt, config, params, opt_state
        )

    def put(tree: Any) -> Any:
        return jax.tree_util.tree_map(
            lambda a: jax.make_array_from_callback(
                np.shape(a), replicated, lambda i: np.asarray(a)[i]
            ),
            tree,
        )

    def loss_fn(p: Any, x: Any, y: Any, key: Any) -> Any:
        _, logits = forward(layers, p, x, train_key=key)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(p: Any, s: Any, x: Any, y: Any, key: Any) -> tuple[Any, Any, Any]:
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y, key)
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    predict = jax.jit(lambda p, x: forward(layers, p, x))
    p_dev, s_dev = put(trainable(params)), put(opt_state)
    compiled = None  # compiled before the first epoch's clock starts
    stopped_early = False
    last = config.epochs if config.until_epoch is None else min(config.epochs, config.until_epoch)
    for epoch in range(start, last):
        if epoch - best["epoch"] > config.patience and best["epoch"] >= 0:
            stopped_early = True
            break
        order = np.random.default_rng([config.seed, epoch]).permutation(train_rows)
        bar = _bar(config, rank, steps, f"{config.arch} epoch {epoch + 1}/{config.epochs}")
        t0, losses = time.perf_counter(), []
        for k in range(steps):
            rows, images = _local_batch(config, x_all, order, epoch, k, rank, local_batch)
            x = jax.make_array_from_process_local_data(sharded, to_input(images))
            y = jax.make_array_from_process_local_data(sharded, y_all[rows])
            key = jax.random.fold_in(jax.random.key(config.seed), epoch * steps + k)
            if compiled is None:
                compiled = step.lower(p_dev, s_dev, x, y, key).compile()
                t0 = time.perf_counter()
            p_dev, s_dev, loss = compiled(p_dev, s_dev, x, y, key)
            if bar is not None:
                bar.update(1)
            if k % 50 == 0 or k == steps - 1:
                losses.append(float(_local(loss)))
                if bar is not None:
                    bar.set_postfix(loss=f"{losses[-1]:.3f}")
        jax.block_until_ready(p_dev)
        seconds = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        params = jax.tree_util.tree_map(_local, p_dev)
        if x_bn is not None:
            params |= batchnorm_statistics(layers, params, x_bn)
        val_acc = _accuracy(predict, params, x_val, y_val)
        history.append(
            {"epoch": epoch + 1, "seconds": round(seconds, 2), "loss": losses[-1],
             "val_accuracy": round(val_acc, 5)}
        )  # fmt: skip
        if val_acc > best["val_accuracy"]:
            best, best_params = {"val_accuracy": val_acc, "epoch": epoch}, params
        if rank == 0:
            print(
                f"epoch {epoch + 1}: {seconds:.1f} s, loss {losses[-1]:.4f}, "
                f"validation accuracy {val_acc:.4f}",
                file=sys.stderr,
                flush=True,
            )
            _save_checkpoint(ckpt, config, params, s_dev, best_params, epoch + 1, history, best)
    if rank == 0:
        _finish(config, layers, best_params, history, best, stopped_early, len(train_rows),
                len(val_rows), predict)  # fmt: skip


def _local_batch(
    config: NetworkConfig,
    x_all: np.ndarray,
    order: np.ndarray,
    epoch: int,
    k: int,
    rank: int,
    local_batch: int,
) -> tuple[np.ndarray, np.ndarray]:
    """This worker's rows of global batch ``k`` and their (augmented) images. The random
    flips and shifts are drawn for the whole global batch, so 1 and N processes see the
    same images."""
    global_batch = local_batch * config.procs
    rows = order[k * global_batch : (k + 1) * global_batch]
    if config.augment:
        rng = np.random.default_rng([config.seed, epoch, k, 1])
        flips = rng.random(len(rows)) < 0.5
        shifts = rng.integers(-SHIFT, SHIFT + 1, (len(rows), 2))
    mine = slice(rank * local_batch, (rank + 1) * local_batch)
    local = rows[mine]
    by_row = np.argsort(local, kind="stable")  # sorted rows read the memory map in order
    images = x_all[local[by_row]]
    if config.augment:
        images = augment(images, flips[mine][by_row], shifts[mine][by_row])
    return local[by_row], images


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max()) if len(a) else 0.0


def _allclose(a: np.ndarray, b: np.ndarray, tol: float = 1e-5) -> bool:
    """``np.allclose(a, b, rtol=tol, atol=tol)``: equal up to float32 rounding of values that
    are large (logits of tens), where an absolute bound alone is tighter than float32."""
    return bool(np.allclose(np.asarray(a, np.float64), b, rtol=tol, atol=tol))


def _local(a: Any) -> np.ndarray:
    """A replicated global array's value on this process."""
    return np.asarray(a.addressable_data(0))


def _accuracy(predict: Any, params: Any, x: np.ndarray, y: np.ndarray, batch: int = 2000) -> float:
    if len(y) == 0:
        return float("nan")
    right = 0
    for s in range(0, len(y), batch):
        _, logits = predict(params, x[s : s + batch])
        right += int((np.asarray(logits).argmax(1) == y[s : s + batch]).sum())
    return right / len(y)


def _bar(config: NetworkConfig, rank: int, total: int, desc: str) -> Any:
    if rank != 0 or not config.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def _save_checkpoint(
    path: Path,
    config: NetworkConfig,
    params: dict[str, np.ndarray],
    opt_state: Any,
    best_params: dict[str, np.ndarray],
    epoch: int,
    history: list[dict[str, Any]],
    best: dict[str, Any],
) -> None:
    import jax

    leaves = jax.tree_util.tree_leaves(opt_state)
    arrays = {f"param/{k}": v for k, v in params.items()}
    arrays |= {f"best/{k}": v for k, v in best_params.items()}
    arrays |= {f"opt/{i}": _local(v) for i, v in enumerate(leaves)}
    meta = {"arch": config.arch, "epoch": epoch, "history": history, "best": best}
    meta |= {"batch_size": config.batch_size, "seed": config.seed, "epochs": config.epochs}
    meta |= {"augment": config.augment}
    tmp = path.with_name(path.name + ".tmp.npz")
    with open(tmp, "wb") as f:
        meta_bytes = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        np.savez(f, allow_pickle=False, meta=meta_bytes, **arrays)  # numbers only
    os.replace(tmp, path)


def _load_checkpoint(
    path: Path, config: NetworkConfig, params: dict[str, np.ndarray], opt_state: Any
) -> tuple[Any, Any, Any, int, list[dict[str, Any]], dict[str, Any]]:
    import jax

    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        for key in ("arch", "batch_size", "seed", "epochs", "augment"):
            if meta.get(key, False) != getattr(config, key):
                raise AutotagError(
                    f"{path}: checkpoint has {key}={meta[key]!r}, this run {getattr(config, key)!r}"
                )
        new_params = {k: z[f"param/{k}"] for k in params}
        best_params = {k: z[f"best/{k}"] for k in params}
        leaves, tree = jax.tree_util.tree_flatten(opt_state)
        restored = [
            np.asarray(z[f"opt/{i}"]).astype(np.asarray(v).dtype) for i, v in enumerate(leaves)
        ]
    return (
        new_params,
        jax.tree_util.tree_unflatten(tree, restored),
        best_params,
        int(meta["epoch"]),
        list(meta["history"]),
        dict(meta["best"]),
    )


def _finish(
    config: NetworkConfig,
    layers: Any,
    params: dict[str, np.ndarray],
    history: list[dict[str, Any]],
    best: dict[str, Any],
    stopped_early: bool,
    n_train: int,
    n_val: int,
    predict: Any,
) -> None:
    """Score the test set with JAX, export ONNX, check it on the same images, write result."""
    work = Path(config.work_dir)
    x_test = to_input(np.load(config.x_test))
    y_test = np.load(config.y_test)
    embs, logits = [], []
    for s in range(0, len(x_test), 2000):
        e, lg = predict(params, x_test[s : s + 2000])
        embs.append(np.asarray(e))
        logits.append(np.asarray(lg))
    emb, lg = np.concatenate(embs), np.concatenate(logits)
    onnx_path = write_onnx(layers, params, config.input_shape, work / ONNX_FILE, name=config.arch)
    o_emb, o_lg = run_onnx(onnx_path, x_test)
    exact = [
        forward_float64(layers, params, x_test[s : s + 500]) for s in range(0, len(x_test), 500)
    ]
    e64 = np.concatenate([e for e, _ in exact]) if exact else emb
    l64 = np.concatenate([lg_ for _, lg_ in exact]) if exact else lg
    with open(work / PARAMS, "wb") as f:
        np.savez(f, allow_pickle=False, **params)
    np.save(work / TEST_LOGITS, lg)
    seconds = [h["seconds"] for h in history]
    result = {
        "arch": config.arch,
        "procs": config.procs,
        "embedding_dim": embedding_dim(layers),
        "n_train": n_train,
        "n_validation": n_val,
        "n_test": int(len(y_test)),
        "test_accuracy": float((lg.argmax(1) == y_test).mean()),
        "validation_accuracy": round(float(best["val_accuracy"]), 5),
        "best_epoch": int(best["epoch"]) + 1,
        "epochs_run": len(history),
        "stopped_early": stopped_early,
        "seconds_per_epoch": round(float(np.median(seconds)), 2) if seconds else math.nan,
        "history": history,
        "onnx_max_abs_diff": {
            "embedding": _max_diff(o_emb, emb),
            "logits": _max_diff(o_lg, lg),
            "probabilities": _max_diff(softmax(o_lg), softmax(lg)),
        },
        "onnx_allclose_1e-5": {
            "embedding": _allclose(o_emb, emb),
            "logits": _allclose(o_lg, lg),
            "probabilities": _allclose(softmax(o_lg), softmax(lg)),
        },
        "float64_max_abs_diff": {  # each float32 run against the exact result
            "jax_logits": _max_diff(lg, l64),
            "onnx_logits": _max_diff(o_lg, l64),
            "jax_embedding": _max_diff(emb, e64),
            "onnx_embedding": _max_diff(o_emb, e64),
            "max_abs_logit": _max_diff(l64, 0 * l64),
        },
        "onnx_same_predictions": bool((o_lg.argmax(1) == lg.argmax(1)).all()),
        "hyper_parameters": {
            "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
            "weight_decay": config.weight_decay, "val_fraction": config.val_fraction,
            "patience": config.patience, "seed": config.seed, "optimizer": "adamw, cosine decay",
            "augment": "flip + shift 2 px" if config.augment else "none",
            "until_epoch": config.until_epoch,
            "batchnorm_statistics_images": BN_IMAGES if has_batchnorm(layers) else None,
        },
    }  # fmt: skip
    (work / RESULT).write_text(json.dumps(result, indent=2) + "\n")
