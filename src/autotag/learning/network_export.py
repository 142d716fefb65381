"""A trained layer-list network written as an ONNX graph with the ``onnx`` helper API.

JAX has no dependable ONNX exporter, and these networks need only Conv, BatchNormalization,
Relu, MaxPool, Flatten and Gemm, so the graph is written here from the trained weights.
Input ``image`` (n, C, H, W) float32, or (n, d) for a head on feature vectors
(``mlp_workflow``); outputs ``embedding`` (the final dense layer's input) and ``logits``.
Dropout is a training-time layer and is left out. The caller checks the result against the
framework on real data (``max_abs_diff``), so a wrong graph cannot pass silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autotag.learning.networks import BN_EPSILON, Layer
from autotag.vision.onnx import onnx_session

OPSET = 17


def write_onnx(
    layers: tuple[Layer, ...],
    params: dict[str, np.ndarray],
    input_shape: tuple[int, ...],
    path: Path,
    *,
    name: str,
) -> Path:
    """Write the network to ``path``; return it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    cur = "image"
    last = len(layers) - 1
    for i, layer in enumerate(layers):
        out = f"l{i}"
        if i == last:
            nodes.append(helper.make_node("Identity", [cur], ["embedding"]))
            cur, out = "embedding", "logits"
        if layer.kind in ("conv", "dense"):
            w, b = f"{i}.w", f"{i}.b"
            inits += [numpy_helper.from_array(np.asarray(params[k], np.float32), k) for k in (w, b)]
            if layer.kind == "conv":
                p = layer.pad
                nodes.append(
                    helper.make_node(
                        "Conv",
                        [cur, w, b],
                        [out],
                        kernel_shape=[layer.kernel, layer.kernel],
                        pads=[p, p, p, p],
                    )  # fmt: skip
                )
            else:
                nodes.append(helper.make_node("Gemm", [cur, w, b], [out]))
        elif layer.kind == "batchnorm":
            names = [f"{i}.{k}" for k in ("w", "b", "mean", "var")]
            inits += [numpy_helper.from_array(np.asarray(params[k], np.float32), k) for k in names]
            nodes.append(
                helper.make_node("BatchNormalization", [cur, *names], [out], epsilon=BN_EPSILON)
            )
        elif layer.kind == "relu":
            nodes.append(helper.make_node("Relu", [cur], [out]))
        elif layer.kind == "maxpool":
            s = layer.size
            nodes.append(
                helper.make_node("MaxPool", [cur], [out], kernel_shape=[s, s], strides=[s, s])
            )
        elif layer.kind == "flatten":
            nodes.append(helper.make_node("Flatten", [cur], [out], axis=1))
        else:  # dropout: identity at inference
            continue
        cur = out
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", *input_shape])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", None]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", None]),
        ],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="autotag"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def run_onnx(path: Path, x: np.ndarray, batch: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """``(embedding, logits)`` of ``x`` through onnxruntime, in batches."""
    sess = onnx_session(path, 1)
    embs, logits = [], []
    for s in range(0, len(x), batch):
        e, lg = sess.run(["embedding", "logits"], {"image": x[s : s + batch]})
        embs.append(e)
        logits.append(lg)
    return np.concatenate(embs), np.concatenate(logits)
