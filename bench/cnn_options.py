"""What ONNX Runtime's options buy on the CNN (EfficientNet-Lite0), one thread, side by side.

- graph optimizations: none / basic / all (all is what autotag uses);
- batched inference: 1 vs 8 photos per run (the autotag bolt tags one photo per tuple);
- int8 static quantization (QDQ, per-channel weights, calibrated on 100 photos that are not
  in the evaluation set), with and without ``reduce_range`` (this CPU's int8 kernels
  saturate without it when it lacks VNNI): time per photo, and top-1 agreement of the
  ImageNet logits and cosine similarity of the embeddings against fp32 on the other photos.
  autotag only uses a quantized model if top-1 agreement is at least 98%.

    python bench/cnn_options.py [--eval 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from autotag.config import load_settings
from autotag.learning import samples
from autotag.vision.features import onnx_model_path, preprocess_cnn

LEVELS = {
    "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session(path: Path, level: str = "all") -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.graph_optimization_level = LEVELS[level]
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    o.log_severity_level = 3
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def ms_per_photo(s: ort.InferenceSession, X: list[np.ndarray], batch: int = 1) -> float:
    name = s.get_inputs()[0].name
    s.run(None, {name: np.concatenate(X[:batch])})  # warm-up
    t0 = time.perf_counter()
    n = 0
    for i in range(0, len(X) - batch + 1, batch):
        s.run(None, {name: np.concatenate(X[i : i + batch])})
        n += batch
    return 1000 * (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--eval", type=int, default=300, help="photos for agreement and timing")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    src = onnx_model_path(load_settings().model_dirs)
    photos = samples.package_photos() + samples.tuxpaint_photos()
    order = np.random.default_rng(0).permutation(len(photos))
    calib = [photos[i] for i in order[:100]]
    held = [photos[i] for i in order[100 : 100 + args.eval]]

    def load(p: Path) -> np.ndarray:
        return preprocess_cnn(cv2.imread(str(p), cv2.IMREAD_COLOR))[None]

    X = [load(p) for p in held]
    ref = session(src)
    name = ref.get_inputs()[0].name
    ref_out = [ref.run(["embedding", "logits"], {name: x}) for x in X]
    timing = X[: min(100, len(X))]
    print(f"EfficientNet-Lite0, 1 thread, {len(timing)} photos timed, {len(X)} for agreement")
    for level in LEVELS:
        print(
            f"  fp32, graph optimizations {level:<5}: {ms_per_photo(session(src, level), timing):6.2f} ms/photo"
        )
    print(f"  fp32, batches of 8           : {ms_per_photo(ref, timing, 8):6.2f} ms/photo")

    cal = [load(p) for p in calib]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(cal)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {name: x}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        for reduce_range in (False, True):
            out = Path(tmp) / f"int8-{reduce_range}.onnx"
            quantize_static(
                str(pre),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
            q = session(out)
            agree, cos = 0, []
            for x, (e, lg) in zip(X, ref_out, strict=True):
                qe, ql = q.run(["embedding", "logits"], {name: x})
                agree += int(lg.argmax() == ql.argmax())
                cos.append(float(e.ravel() @ qe.ravel() / np.linalg.norm(e) / np.linalg.norm(qe)))
            verdict = "usable" if agree / len(X) >= 0.98 else "NOT usable (< 98%)"
            print(
                f"  int8 static, reduce_range={reduce_range!s:<5}: {ms_per_photo(q, timing):6.2f} ms/photo, "
                f"top-1 agreement {100 * agree / len(X):.1f}%, embedding cosine {np.mean(cos):.3f} "
                f"-> {verdict}"
            )


if __name__ == "__main__":
    main()
