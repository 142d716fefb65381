"""What ONNX Runtime's options buy on the CNN (EfficientNet-Lite0), one thread, side by side.

- graph optimizations: none / basic / all (all is what autotag uses);
- batched inference: 1 vs 8 photos per run (the autotag bolt tags one photo per tuple);
- int8 static quantization, calibrated on 120 photos that are not in the evaluation set, in
  the variants that might have rescued it (``--variants``; all by default): QDQ with
  per-channel weights, with and without ``reduce_range`` (this CPU's int8 kernels saturate
  without it when it lacks VNNI), uint8 weights, percentile calibration, the biases left in
  float, the depthwise convolutions (and the first and last layers) left in float, and
  convolutions only. Each prints its time per photo, the top-1 agreement of the ImageNet
  logits with fp32 (all photos, and those fp32 is at least 30% sure of), and the cosine of
  the embeddings. autotag only uses a quantized model if top-1 agreement is at least 98%.

Photos: the development photos and Tux Paint's photo stamps (learning/concept_evaluation.py),
decoded and shown to the network exactly as uploads are (cut-outs through the cut-out view).

    python bench/cnn_options.py [--variants qdq,qdq-rr,...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from autotag.config import load_settings
from autotag.learning.concept_evaluation import dev_photos, tuxpaint_photo_stamps
from autotag.learning.network_data import softmax
from autotag.vision.decode import DecodeLimits, decode, network_view
from autotag.vision.features import onnx_model_path, preprocess_cnn
from autotag.vision.onnx import onnx_session

LEVELS = ("none", "basic", "all")


def session(path: Path, level: str = "all") -> ort.InferenceSession:
    """One thread, as a tagging process runs it; ``all`` is autotag's own session."""
    return onnx_session(path, 1, optimization=level)


def ms_per_photo(s: ort.InferenceSession, X: list[np.ndarray], batch: int = 1) -> float:
    name = s.get_inputs()[0].name
    s.run(None, {name: np.concatenate(X[:batch])})  # warm-up
    t0 = time.perf_counter()
    n = 0
    for i in range(0, len(X) - batch + 1, batch):
        s.run(None, {name: np.concatenate(X[i : i + batch])})
        n += batch
    return 1000 * (time.perf_counter() - t0) / n


def variants(pre: Path) -> dict[str, dict]:
    graph = onnx.load(str(pre)).graph
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    depthwise = [
        n.name
        for n in graph.node
        if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
    ]
    ends = [convs[0]] + [n.name for n in graph.node if n.op_type == "Gemm"]
    base = dict(
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    rr = dict(base, reduce_range=True)
    return {
        "qdq": base,
        "qdq-rr": rr,
        "qdq-u8u8": dict(base, weight_type=QuantType.QUInt8),
        "qdq-rr-percentile": dict(
            rr,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibPercentile": 99.99},
        ),
        "qdq-rr-float-bias": dict(rr, extra_options={"QuantizeBias": False}),
        "qdq-rr-float-depthwise-ends": dict(rr, nodes_to_exclude=depthwise + ends),
        "qdq-rr-conv-only": dict(rr, op_types_to_quantize=["Conv"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--variants", default="", help="comma list of int8 variants (default: all)")
    ap.add_argument("--calibration", type=int, default=120, help="photos to calibrate on")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    src = onnx_model_path(load_settings().model_dirs)
    limits = DecodeLimits(200 << 20, 200_000_000, 30_000)
    photos = dev_photos() + tuxpaint_photo_stamps()
    X = [preprocess_cnn(network_view(decode(p.read_bytes(), limits)))[None] for p in photos]
    order = np.random.default_rng(0).permutation(len(X))
    cal = [X[i] for i in order[: args.calibration]]
    held = [X[i] for i in order[args.calibration :]]
    ref = session(src)
    name = ref.get_inputs()[0].name
    ref_out = [ref.run(["embedding", "logits"], {name: x}) for x in held]
    sure = [float(softmax(lg).max()) >= 0.3 for _, lg in ref_out]
    timing = held[: min(150, len(held))]
    print(
        f"EfficientNet-Lite0, 1 thread; {len(cal)} photos to calibrate, {len(held)} to compare "
        f"({sum(sure)} that fp32 is at least 30% sure of), {len(timing)} timed"
    )
    for level in LEVELS:
        ms = ms_per_photo(session(src, level), timing)
        print(f"  fp32, graph optimizations {level:<5}: {ms:6.2f} ms/photo")
    print(f"  fp32, batches of 8           : {ms_per_photo(ref, timing, 8):6.2f} ms/photo")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(cal)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {name: x}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        table = variants(pre)
        chosen = [v for v in args.variants.split(",") if v] or list(table)
        for variant in chosen:
            out = Path(tmp) / f"{variant}.onnx"
            quantize_static(str(pre), str(out), Reader(), **table[variant])
            q = session(out)
            agree, agree_sure, cos = 0, 0, []
            for x, (e, lg), is_sure in zip(held, ref_out, sure, strict=True):
                qe, ql = q.run(["embedding", "logits"], {name: x})
                same = int(lg.argmax() == ql.argmax())
                agree += same
                agree_sure += same * is_sure
                cos.append(float(e.ravel() @ qe.ravel() / np.linalg.norm(e) / np.linalg.norm(qe)))
            share = agree / len(held)
            verdict = "usable" if share >= 0.98 else "NOT usable (< 98%)"
            print(
                f"  int8 {variant:<28}: {ms_per_photo(q, timing):6.2f} ms/photo, top-1 agreement "
                f"{100 * share:.1f}% (sure photos {100 * agree_sure / max(1, sum(sure)):.1f}%), "
                f"embedding cosine {np.mean(cos):.3f} -> {verdict}"
            )


if __name__ == "__main__":
    main()
