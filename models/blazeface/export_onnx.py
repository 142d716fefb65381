"""Convert face_detection_short_range.tflite (beside this file) to ONNX, once, and check it.

autotag runs BlazeFace with ONNX Runtime: the same network through OpenCV's TFLite importer
costs about twice as much per photo. The converter is only needed here, never by autotag:

    python -m venv /tmp/export && /tmp/export/bin/pip install tflite2onnx==0.4.1 \\
        onnxruntime opencv-python-headless scikit-image
    /tmp/export/bin/python models/blazeface/export_onnx.py

The check runs both on the scikit-image sample photos and prints the largest difference of
the two outputs (the .tflite holds float16 weights, which both read as float32).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import skimage.data
import tflite2onnx

HERE = Path(__file__).resolve().parent
TFLITE = HERE / "face_detection_short_range.tflite"
ONNX = HERE / "face_detection_short_range.onnx"
PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "rocket", "immunohistochemistry")


def blob(name: str) -> np.ndarray:
    img = getattr(skimage.data, name)()
    rgb = np.dstack([img] * 3) if img.ndim == 2 else img[:, :, :3]
    small = cv2.resize(np.ascontiguousarray(rgb), (128, 128), interpolation=cv2.INTER_AREA)
    return cv2.dnn.blobFromImage(small, 1 / 127.5, (128, 128), (127.5, 127.5, 127.5))


def main() -> None:
    tflite2onnx.convert(str(TFLITE), str(ONNX))
    net = cv2.dnn.readNetFromTFLite(str(TFLITE))
    names = list(net.getUnconnectedOutLayersNames())
    session = ort.InferenceSession(str(ONNX), providers=["CPUExecutionProvider"])
    worst = 0.0
    for name in PHOTOS:
        x = blob(name)
        net.setInput(x)
        ref = dict(zip(names, net.forward(names), strict=True))
        outputs = [o.name for o in session.get_outputs()]
        got = dict(zip(outputs, session.run(outputs, {"input": x}), strict=True))
        for key, value in ref.items():
            worst = max(worst, float(np.abs(got[key].reshape(-1) - value.reshape(-1)).max()))
    print(f"{ONNX.name}: {ONNX.stat().st_size} bytes; largest output difference {worst:.2e}")


if __name__ == "__main__":
    main()
