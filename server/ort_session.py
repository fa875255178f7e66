"""The one way swaptron opens an ONNX Runtime CPU session (served models, benchmarks, checks).

Torch-free, so the Python-backend stubs can import it without loading PyTorch.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def cpu_session(path: Path, threads: int = 1, spinning: bool = False) -> ort.InferenceSession:
    """A CPU session with `threads` intra-op threads; idle threads sleep unless `spinning`
    (spinning threads take the cores that the other networks of the chain need)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning",
                                     "1" if spinning else "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
