"""Small image networks as layer lists: one description that JAX trains and ONNX serves.

A network is a tuple of layers over NCHW float input (grey 28×28 for Fashion-MNIST). The
last layer is always a dense layer to the classes; its input is the network's *embedding*,
so a bundle can hold that layer as its ``W, b`` and use the rest of the network as its
feature set. Parameters are plain ``{"<i>.w": array, "<i>.b": array}`` dicts, saved as npz.

- ``lenet5``: LeCun et al. 1998 on 28×28 (first convolution padded to keep 28×28), ReLU and
  max pooling instead of tanh and subsampling, 84-d embedding.
- ``small-cnn``: two 3×3 convolutions (32, 64 channels) each with pooling, a 256-d
  embedding with dropout: the usual small Fashion-MNIST network, kept light for 2 cores.
- ``small-cnn-bn``: ``small-cnn`` with batch normalization after each convolution.
- ``vgg-bn``: two VGG blocks (two 3×3 convolutions each, 32 then 64 channels, batch norm
  after each, pooling after each block), then ``small-cnn-bn``'s 256-d head: depth where
  ``small-cnn-bn`` underfits, about 4× its multiply-adds.
- ``vgg3-bn``: ``vgg-bn`` with a third block (128 channels, pooled to 3×3): capacity for
  training on augmented images, where ``vgg-bn`` fell behind; about 1.6× its multiply-adds.
- ``tiny``: one 3×3 conv and a 16-d embedding; only for tests (trains in seconds).

Batch normalization trains on each global batch's statistics; for inference its per-channel
mean and variance (``"<i>.mean"``, ``"<i>.var"``: statistics, not trained parameters) are
measured afterwards on training images (``batchnorm_statistics``), so the train step carries
no running averages.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Layer:
    kind: str  # conv | batchnorm | relu | maxpool | flatten | dense | dropout
    size: int = 0  # out channels (conv), out features (dense), window (maxpool)
    kernel: int = 0
    pad: int = 0
    rate: float = 0.0


def _conv(c: int, k: int, pad: int) -> Layer:
    return Layer("conv", size=c, kernel=k, pad=pad)


RELU, POOL, FLAT = Layer("relu"), Layer("maxpool", size=2), Layer("flatten")
BN = Layer("batchnorm")
BN_EPSILON = 1e-5
STATISTICS = (".mean", ".var")  # batch-norm statistics: in the parameter dict, never trained

ARCHITECTURES: dict[str, tuple[Layer, ...]] = {
    "lenet5": (
        _conv(6, 5, 2), RELU, POOL,
        _conv(16, 5, 0), RELU, POOL, FLAT,
        Layer("dense", 120), RELU, Layer("dense", 84), RELU,
    ),
    "small-cnn": (
        _conv(32, 3, 1), RELU, POOL, _conv(64, 3, 1), RELU, POOL, FLAT,
        Layer("dropout", rate=0.25), Layer("dense", 256), RELU, Layer("dropout", rate=0.5),
    ),
    "small-cnn-bn": (
        _conv(32, 3, 1), BN, RELU, POOL, _conv(64, 3, 1), BN, RELU, POOL, FLAT,
        Layer("dropout", rate=0.25), Layer("dense", 256), RELU, Layer("dropout", rate=0.5),
    ),
    "vgg-bn": (
        _conv(32, 3, 1), BN, RELU, _conv(32, 3, 1), BN, RELU, POOL,
        _conv(64, 3, 1), BN, RELU, _conv(64, 3, 1), BN, RELU, POOL, FLAT,
        Layer("dropout", rate=0.25), Layer("dense", 256), RELU, Layer("dropout", rate=0.5),
    ),
    "vgg3-bn": (
        _conv(32, 3, 1), BN, RELU, _conv(32, 3, 1), BN, RELU, POOL,
        _conv(64, 3, 1), BN, RELU, _conv(64, 3, 1), BN, RELU, POOL,
        _conv(128, 3, 1), BN, RELU, _conv(128, 3, 1), BN, RELU, POOL, FLAT,
        Layer("dropout", rate=0.25), Layer("dense", 256), RELU, Layer("dropout", rate=0.5),
    ),
    "tiny": (_conv(4, 3, 1), RELU, POOL, FLAT, Layer("dense", 16), RELU),
}  # fmt: skip


def layers_of(arch: str, n_classes: int) -> tuple[Layer, ...]:
    """The architecture's layers with the final dense layer to ``n_classes`` appended."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown network {arch!r} (known: {', '.join(ARCHITECTURES)})")
    return (*ARCHITECTURES[arch], Layer("dense", n_classes))


def shapes(layers: tuple[Layer, ...], input_shape: tuple[int, int, int]) -> list[tuple[int, ...]]:
    """Per-sample output shape after each layer (input ``(C, H, W)``)."""
    out, cur = [], tuple(input_shape)
    for layer in layers:
        if layer.kind == "conv":
            c, h, w = cur
            side = h + 2 * layer.pad - layer.kernel + 1, w + 2 * layer.pad - layer.kernel + 1
            cur = (layer.size, *side)
        elif layer.kind == "maxpool":
            c, h, w = cur
            cur = (c, h // layer.size, w // layer.size)
        elif layer.kind == "flatten":
            cur = (int(np.prod(cur)),)
        elif layer.kind == "dense":
            cur = (layer.size,)
        out.append(cur)
    return out


def init_params(
    layers: tuple[Layer, ...], input_shape: tuple[int, int, int], seed: int
) -> dict[str, np.ndarray]:
    """He-normal weights, zero biases (float32); batch norm: scale 1, shift 0, and the
    statistics of unit-variance input until ``batchnorm_statistics`` measures them."""
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    cur = tuple(input_shape)
    for i, (layer, after) in enumerate(zip(layers, shapes(layers, input_shape), strict=True)):
        if layer.kind == "batchnorm":
            ones, zeros = np.ones(cur[0], np.float32), np.zeros(cur[0], np.float32)
            params |= {f"{i}.w": ones, f"{i}.b": zeros, f"{i}.mean": zeros, f"{i}.var": ones}
            continue
        if layer.kind == "conv":
            fan_in = cur[0] * layer.kernel * layer.kernel
            shape: tuple[int, ...] = (layer.size, cur[0], layer.kernel, layer.kernel)
        elif layer.kind == "dense":
            fan_in = cur[0]
            shape = (cur[0], layer.size)
        else:
            cur = after
            continue
        params[f"{i}.w"] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        params[f"{i}.b"] = np.zeros(layer.size, np.float32)
        cur = after
    return params


def embedding_dim(layers: tuple[Layer, ...]) -> int:
    """Width of the final dense layer's input."""
    dense = [layer for layer in layers[:-1] if layer.kind == "dense"]
    if dense:
        return dense[-1].size
    raise ValueError("network needs a dense layer before the class layer")


def has_batchnorm(layers: tuple[Layer, ...]) -> bool:
    return any(layer.kind == "batchnorm" for layer in layers)


def trainable(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters the optimizer updates (all but batch-norm statistics)."""
    return {k: v for k, v in params.items() if not k.endswith(STATISTICS)}


def forward(
    layers: tuple[Layer, ...],
    params: dict[str, Any],
    x: Any,
    *,
    train_key: Any = None,
    stop: int | None = None,
) -> tuple[Any, Any]:
    """JAX forward pass → ``(embedding, logits)``. Given a key it is the training pass:
    dropout, and batch norm on the batch's own statistics; otherwise batch norm uses the
    measured ones. ``stop=i`` returns ``(input of layer i, None)`` instead."""
    import jax
    import jax.numpy as jnp

    last = len(layers) - 1
    for i, layer in enumerate(layers):
        if i == stop:
            return x, None
        if i == last:
            w, b = params[f"{i}.w"], params[f"{i}.b"]
            return x, jnp.dot(x, w, precision=jax.lax.Precision.HIGHEST) + b
        if layer.kind == "conv":
            p = layer.pad
            x = jax.lax.conv_general_dilated(
                x, params[f"{i}.w"], (1, 1), [(p, p), (p, p)],
                dimension_numbers=("NCHW", "OIHW", "NCHW"),
                precision=jax.lax.Precision.HIGHEST,
            )  # fmt: skip
            x = x + params[f"{i}.b"][None, :, None, None]
        elif layer.kind == "batchnorm":
            if train_key is not None:
                mean = x.mean(axis=(0, 2, 3))
                var = ((x - mean[None, :, None, None]) ** 2).mean(axis=(0, 2, 3))
            else:
                mean, var = params[f"{i}.mean"], params[f"{i}.var"]
            scale = params[f"{i}.w"] / jnp.sqrt(var + BN_EPSILON)
            shift = params[f"{i}.b"] - mean * scale
            x = x * scale[None, :, None, None] + shift[None, :, None, None]
        elif layer.kind == "relu":
            x = jnp.maximum(x, 0.0)
        elif layer.kind == "maxpool":
            s = layer.size
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, s, s), (1, 1, s, s), "VALID")
        elif layer.kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        elif layer.kind == "dense":
            x = jnp.dot(x, params[f"{i}.w"], precision=jax.lax.Precision.HIGHEST) + params[f"{i}.b"]
        elif layer.kind == "dropout" and train_key is not None:
            train_key, sub = jax.random.split(train_key)
            keep = jax.random.bernoulli(sub, 1.0 - layer.rate, x.shape)
            x = jnp.where(keep, x / (1.0 - layer.rate), 0.0)
    raise ValueError("empty network")


def forward_float64(
    layers: tuple[Layer, ...], params: dict[str, np.ndarray], x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy float64 forward pass → ``(embedding, logits)``: the exact result that the float32
    JAX and ONNX runs each round differently (the yardstick for how far apart they may be)."""
    from numpy.lib.stride_tricks import sliding_window_view

    h = np.asarray(x, np.float64)
    last = len(layers) - 1
    for i, layer in enumerate(layers):
        if i == last:
            return h, h @ params[f"{i}.w"].astype(np.float64) + params[f"{i}.b"]
        if layer.kind == "conv":
            p, k = layer.pad, layer.kernel
            win = sliding_window_view(np.pad(h, ((0, 0), (0, 0), (p, p), (p, p))), (k, k), (2, 3))
            n, c, rows, cols = win.shape[:4]
            patches = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * rows * cols, c * k * k)
            w = params[f"{i}.w"].astype(np.float64).reshape(layer.size, -1)
            out = (patches @ w.T + params[f"{i}.b"]).reshape(n, rows, cols, layer.size)
            h = out.transpose(0, 3, 1, 2)
        elif layer.kind == "batchnorm":
            mean, var, g, b = (
                params[f"{i}.{k}"].astype(np.float64) for k in ("mean", "var", "w", "b")
            )
            h = (h - mean[:, None, None]) / np.sqrt(var[:, None, None] + BN_EPSILON)
            h = h * g[:, None, None] + b[:, None, None]
        elif layer.kind == "relu":
            h = np.maximum(h, 0.0)
        elif layer.kind == "maxpool":
            s = layer.size
            n, c, rows, cols = h.shape
            h = h[:, :, : rows // s * s, : cols // s * s]
            h = h.reshape(n, c, rows // s, s, cols // s, s).max(axis=(3, 5))
        elif layer.kind == "flatten":
            h = h.reshape(len(h), -1)
        elif layer.kind == "dense":
            h = h @ params[f"{i}.w"].astype(np.float64) + params[f"{i}.b"]
    raise ValueError("empty network")


def batchnorm_statistics(
    layers: tuple[Layer, ...], params: dict[str, Any], x: np.ndarray, batch: int = 1000
) -> dict[str, np.ndarray]:
    """Each batch-norm layer's per-channel mean and variance of its input over images ``x``,
    layer by layer (each with the statistics of the ones before it): what inference uses."""
    params = dict(params)
    for i, layer in enumerate(layers):
        if layer.kind != "batchnorm":
            continue
        moments = _channel_moments(layers, i)
        per_image = np.concatenate(
            [np.asarray(moments(params, x[s : s + batch])) for s in range(0, len(x), batch)]
        )
        mean, mean_square = per_image.astype(np.float64).mean(axis=0)
        params[f"{i}.mean"] = mean.astype(np.float32)
        params[f"{i}.var"] = np.maximum(mean_square - mean**2, 0.0).astype(np.float32)
    return {k: v for k, v in params.items() if k.endswith(STATISTICS)}


@functools.cache
def _channel_moments(layers: tuple[Layer, ...], i: int) -> Any:
    """Compiled once per network and layer: each image's per-channel mean of layer ``i``'s
    input and of its square, ``(N, 2, C)`` (the images are averaged on the host in float64)."""
    import jax
    import jax.numpy as jnp

    def moments(params: dict[str, Any], xs: Any) -> Any:
        h = forward(layers, params, xs, stop=i)[0]
        return jnp.stack([h.mean(axis=(2, 3)), (h * h).mean(axis=(2, 3))], axis=1)

    return jax.jit(moments)
