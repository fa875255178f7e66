"""The one way swaptron runs exported graphs with ONNX Runtime on a CPU: a session (served
models, export checks) and the chain of the ensemble's networks in one process (the bench's
in-process baseline, tests).

Torch-free and gRPC-free, so the Python-backend stubs import it without loading PyTorch or
tritonclient (whose gRPC and protobuf modules took 16 MB in each stub, measured).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from swaptron.specs import FRAME, LARGEST_ONLY, NETWORKS, SELECTOR, TARGET


def cpu_session(path: Path, threads: int = 1, spinning: bool = False) -> ort.InferenceSession:
    """A CPU session with `threads` intra-op threads; idle threads sleep unless `spinning`
    (spinning threads take the cores that the other networks of the chain need).

    No memory arena and no memory patterns: the arena keeps the largest batch's activations for
    good and a pattern is planned and kept per input shape (batch size, frame size). Measured
    after a load of batched 720x528 and 1920x1080 frames, the server's processes took 939 MB
    (PSS) with both, 555 MB without; the in-process chain ran no slower (glibc's heap in the
    process reuses the freed blocks).
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.intra_op.allow_spinning",
                                     "1" if spinning else "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def default_target(repository: Path) -> int:
    """The swapper's decoder index of the repository's default identity (its selector's
    parameters)."""
    from google.protobuf import text_format  # not at the top: the stubs never call this
    from tritonclient.grpc import model_config_pb2 as mc

    config = text_format.Parse((repository / SELECTOR / "config.pbtxt").read_text(),
                               mc.ModelConfig())
    identities = config.parameters["identities"].string_value.split(",")
    return identities.index(config.parameters["default_identity"].string_value)


@dataclass
class OrtChain:
    """One session per network of a repository (`<network>/1/model.onnx`), run in ensemble
    order: every tensor of the chain, named as in the specs. The chain plays the selector: every
    frame swaps all its faces into the default identity unless `run` names another index."""

    sessions: dict[str, ort.InferenceSession]
    intra_op_threads: int
    target: int

    @classmethod
    def open(cls, repository: Path, threads: int = 1, spinning: bool = False,
             networks: tuple[str, ...] = NETWORKS) -> OrtChain:
        """Sessions opened like the served models (threads, spinning)."""
        return cls({network: cpu_session(repository / network / "1" / "model.onnx", threads,
                                         spinning) for network in networks}, threads,
                   default_target(repository))

    def inputs_of(self, network: str) -> list[str]:
        """Input names of a network's graph."""
        return [tensor.name for tensor in self.sessions[network].get_inputs()]

    def run_network(self, network: str, tensors: dict[str, np.ndarray]
                    ) -> dict[str, np.ndarray]:
        """One network on the tensors it takes; all its outputs."""
        session = self.sessions[network]
        names = [tensor.name for tensor in session.get_outputs()]
        values = session.run(names, {name: tensors[name] for name in self.inputs_of(network)})
        return dict(zip(names, values, strict=True))

    def run(self, frames: np.ndarray, target: int | None = None, largest_only: bool = False
            ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Every tensor of the chain for uint8 BGR frames [B,H,W,3], and seconds per network;
        `target` is a decoder index (default: the default identity's)."""
        rows = (len(frames), 1)
        tensors: dict[str, np.ndarray] = {
            FRAME: frames,
            TARGET: np.full(rows, self.target if target is None else target, np.int32),
            LARGEST_ONLY: np.full(rows, int(largest_only), np.int32)}
        seconds: dict[str, float] = {}
        for network in self.sessions:
            started = time.perf_counter()
            tensors.update(self.run_network(network, tensors))
            seconds[network] = time.perf_counter() - started
        return tensors, seconds
