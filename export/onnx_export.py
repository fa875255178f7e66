"""Trace each PyTorch module to ONNX with every tensor named, and check it against PyTorch."""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from swaptron.server.ort_session import cpu_session
from swaptron.specs import ModelSpec
from swaptron.triton_workarounds import copy_sources

OPSET = 17
FINGERPRINT_KEY = "swaptron_fingerprint"


def dynamic_axes(spec: ModelSpec) -> dict[str, dict[int, str]]:
    """Axis 0 of every tensor is the batch; -1 dims (frame height/width) are dynamic too."""
    axes: dict[str, dict[int, str]] = {}
    for tensor in (*spec.graph_inputs, *spec.graph_outputs):
        names = {0: "batch"}
        for position, size in enumerate(tensor.dims, start=1):
            if size == -1:
                names[position] = ("height", "width")[position - 1] if position <= 2 else "dim"
        axes[tensor.name] = names
    return axes


class Published(torch.nn.Module):
    """A network with the published copies of its outputs appended (Identity nodes in ONNX;
    triton_workarounds.published)."""

    def __init__(self, network: torch.nn.Module, copy_sources: list[int]) -> None:
        super().__init__()
        self.network = network
        self.copy_sources = copy_sources

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The network's outputs, then a copy of each published one."""
        outputs = self.network(*inputs)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return (*outputs, *(copy(outputs[i]) for i in self.copy_sources))


def copy(tensor: torch.Tensor) -> torch.Tensor:
    """An identical tensor under another name: an Identity for floats; for uint8 a cast to float
    and back (TensorRT takes uint8 only at the edges, and only through a cast)."""
    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float32).to(torch.uint8)
    return tensor.clone()


def graph_module(module: torch.nn.Module, spec: ModelSpec) -> torch.nn.Module:
    """What is traced for a spec: the network, with its published copies when it has any."""
    return Published(module, copy_sources(spec)) if spec.publishes else module


def to_onnx(module: torch.nn.Module, spec: ModelSpec, example: dict[str, np.ndarray],
            fingerprint: str) -> onnx.ModelProto:
    """Trace the module on example inputs into an ONNX model with the spec's tensor names."""
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[name]))
                 for name in spec.graph_input_names())
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns that it is legacy
        torch.onnx.export(graph_module(module, spec), args, buffer, dynamo=False,
                          opset_version=OPSET, input_names=spec.graph_input_names(),
                          output_names=spec.graph_output_names(),
                          dynamic_axes=dynamic_axes(spec), do_constant_folding=True)
    model = onnx.load_from_string(buffer.getvalue())
    model.doc_string = spec.description
    onnx.helper.set_model_props(model, {FINGERPRINT_KEY: fingerprint, "model": spec.name})
    onnx.checker.check_model(model)
    return model


def stored_fingerprint(path: Path) -> str | None:
    """Fingerprint recorded in an exported ONNX file, None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (onnx.onnx_cpp2py_export.checker.ValidationError, OSError, ValueError):
        return None
    props = {p.key: p.value for p in model.metadata_props}
    return props.get(FINGERPRINT_KEY)


def fingerprint(parts: dict[str, object], files: list[Path]) -> str:
    """sha256 over options and the bytes of the files a graph is made from."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for path in sorted(files):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU ONNX Runtime session for an exported graph."""
    return cpu_session(path, threads)


def max_difference(path: Path, module: torch.nn.Module, spec: ModelSpec,
                   inputs: dict[str, np.ndarray]) -> dict[str, float]:
    """Largest absolute difference per output between ONNX Runtime and PyTorch."""
    runtime = session(path)
    feeds = {name: inputs[name] for name in spec.graph_input_names()}
    onnx_outputs = runtime.run(spec.graph_output_names(), feeds)
    with torch.no_grad():
        torch_outputs = graph_module(module, spec)(
            *(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in spec.graph_input_names()))
    if isinstance(torch_outputs, torch.Tensor):
        torch_outputs = (torch_outputs,)
    return {name: float(np.abs(a.astype(np.float64) - b.numpy().astype(np.float64)).max())
            for name, a, b in zip(spec.graph_output_names(), onnx_outputs, torch_outputs,
                                  strict=True)}
