"""Figures: a trained network's ONNX graph, as the topology serves it, against JAX.

The exported graph has two outputs, ``embedding`` (the last dense layer's input) and
``logits``; a bundle serves the softmax of ``embedding · W − b`` as tag scores. This runs the
Fashion-MNIST test images through the bundle's feature set exactly as a bolt does
(``NetworkFeatures``: grey, scaled to [0, 1], onnxruntime with the bolt's session options)
and through JAX with the training run's weights (``params.npz`` in its work dir), and prints
the largest absolute difference of each output and of the served probabilities, beside the
largest magnitude of that output and each side's distance from a float64 NumPy pass (the
exact value both float32 runs round differently), and whether ``np.allclose(ONNX, JAX,
rtol=1e-5, atol=1e-5)`` holds for each output. Accuracy figures, not timings: any machine.

    python bench/network_onnx_check.py --bundle ID --work-dir run/train-cnn/NAME
    python bench/network_onnx_check.py --bundle ID --work-dir DIR --limit 500   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, help="bundle id (trained by autotag train-cnn)")
    ap.add_argument("--work-dir", required=True, type=Path, help="its run/train-cnn/NAME")
    ap.add_argument("--limit", type=int, default=None, help="first N test images [all 10,000]")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    import jax

    from autotag.config import settings
    from autotag.learning.datasets import fashion_mnist_arrays
    from autotag.learning.network_data import softmax, to_input
    from autotag.learning.network_training import PARAMS
    from autotag.learning.networks import forward, forward_float64, layers_of
    from autotag.vision.bundle import load_bundle
    from autotag.vision.network_features import NetworkFeatures

    s = settings()
    bundle = load_bundle(s.models_dir, args.bundle)
    layers = layers_of(str(bundle.feature_set["arch"]), bundle.k)
    with np.load(args.work_dir / PARAMS, allow_pickle=False) as z:
        params = {k: z[k] for k in z.files}
    images, y = fashion_mnist_arrays("test", limit=args.limit)
    x = to_input(images)

    predict = jax.jit(lambda p, xs: forward(layers, p, xs))
    parts = [predict(params, x[i : i + 1000]) for i in range(0, len(x), 1000)]
    emb = np.concatenate([np.asarray(e) for e, _ in parts])
    logits = np.concatenate([np.asarray(lg) for _, lg in parts])
    exact = [forward_float64(layers, params, x[i : i + 500]) for i in range(0, len(x), 500)]
    emb64 = np.concatenate([e for e, _ in exact])
    logits64 = np.concatenate([lg for _, lg in exact])

    served = NetworkFeatures(str(bundle.feature_set["name"]), s.model_dirs, threads=1)
    o_emb, o_logits = served.run(list(images))
    probs, o_probs = softmax(logits), bundle.score(o_emb)

    def row(name: str, jax_out: np.ndarray, onnx_out: np.ndarray, ref: np.ndarray | None) -> dict:
        d = np.abs(np.asarray(onnx_out, np.float64) - jax_out)
        out = {
            "output": name,
            "max_abs": float(np.abs(jax_out).max()),
            "onnx_vs_jax": float(d.max()),
            "onnx_vs_jax_relative": float(d.max() / np.abs(jax_out).max()),
            "float32_ulp_at_max": float(np.spacing(np.float32(np.abs(jax_out).max()))),
            # np.allclose(onnx, jax, rtol=1e-5, atol=1e-5) holds iff this is at most 1
            "allclose_1e-5_ratio": float((d / (1e-5 + 1e-5 * np.abs(jax_out))).max()),
        }
        if ref is not None:
            out["jax_vs_float64"] = float(np.abs(jax_out - ref).max())
            out["onnx_vs_float64"] = float(np.abs(onnx_out - ref).max())
        return out

    rows = [
        row("embedding (ONNX output)", emb, o_emb, emb64),
        row("logits (ONNX output)", logits, o_logits, logits64),
        row("served probabilities (bundle softmax of ONNX embedding)", probs, o_probs, None),
    ]
    summary = {
        "bundle": args.bundle,
        "images": len(x),
        "jax_top1": float((logits.argmax(1) == y).mean()),
        "served_top1": float((o_probs.argmax(1) == y).mean()),
        "same_predictions": bool((o_probs.argmax(1) == logits.argmax(1)).all()),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{args.bundle}: {len(x)} test images, top-1 JAX {summary['jax_top1']:.4f}, "
          f"served {summary['served_top1']:.4f}, same predictions: {summary['same_predictions']}")  # fmt: skip
    for r in rows:
        extra = ""
        if "jax_vs_float64" in r:
            extra = f"; vs float64: JAX {r['jax_vs_float64']:.2g}, ONNX {r['onnx_vs_float64']:.2g}"
        print(
            f"  {r['output']}: max |ONNX − JAX| {r['onnx_vs_jax']:.2g} "
            f"({r['onnx_vs_jax_relative']:.2g} of max |value| {r['max_abs']:.3g}; "
            f"float32 ulp there {r['float32_ulp_at_max']:.2g}){extra}; "
            f"allclose(rtol=atol=1e-5): {r['allclose_1e-5_ratio'] <= 1}"
        )


if __name__ == "__main__":
    main()
