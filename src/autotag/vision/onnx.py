"""ONNX Runtime sessions, opened one way for every network autotag runs (the CNN backbones,
the face detector, trained networks, the export checks)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from autotag.errors import ModelError

if TYPE_CHECKING:
    import onnxruntime as ort


def onnx_session(
    path: Path, threads: int = 1, *, what: str = "", optimization: str = "all"
) -> ort.InferenceSession:
    """An onnxruntime session on the CPU with ``threads`` intra-op threads and no busy-waiting
    (the machine's cores are shared with Storm and the other bolts); a file onnxruntime cannot
    load is a ModelError naming ``what`` (default: the file). ``optimization``: onnxruntime's
    graph optimization level, ``all`` (what autotag runs), ``basic`` or ``none``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    opts.graph_optimization_level = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    try:
        return ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"cannot load {what or path.name}: {exc}") from None
