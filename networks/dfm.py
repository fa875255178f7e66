"""The DFM contract: read and check a DeepFaceLab / DeepFaceLive face-swap model (.dfm).

A DFM is an ONNX graph. Input 0's name contains `in_face`: [N,R,R,3] float32, NHWC, BGR in
0..1, R fixed. An optional input 1, whose name contains `morph_value`, has shape [1] and no batch
axis (AMP models). Outputs are read by position: the face mask [N,R,R,1], the celeb face
[N,R,R,3] and the celeb mask [N,R,R,1], all in 0..1. `read_dfm` applies DeepFaceLive's
`DFMModel` checks and more (sizes, dtypes, outputs, a probe run) and names the file and the fault
in every refusal. DeepFaceLab names the tensors `in_face:0` etc.; `safe_names` maps such names to
ones TensorRT profiles and Triton configs accept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

DEFAULT_SIZE_LIMIT = 1 << 30  # 1 GiB: the largest DFM file read_dfm accepts by default
FACE_INPUT, MORPH_INPUT = "in_face", "morph_value"
# the names DeepFaceLab's export_dfm writes; DeepFaceLive feeds the inputs by these exact names
DFL_INPUT_NAMES = ("in_face:0", "morph_value:0")
DFL_OUTPUT_NAMES = ("out_face_mask:0", "out_celeb_face:0", "out_celeb_face_mask:0")
OUTPUT_CHANNELS = (1, 3, 1)  # face mask, celeb face, celeb mask: by position
OUTPUT_ROLES = ("face mask", "celeb face", "celeb mask")
VALUE_SLACK = 1e-3  # outputs must lie in [-slack, 1 + slack]
ORT_ERRORS = (ort_state.Fail, ort_state.InvalidGraph, ort_state.InvalidArgument,
              ort_state.InvalidProtobuf, ort_state.NoSuchFile, ort_state.NoModel,
              ort_state.NotImplemented, ort_state.RuntimeException, ort_state.EPFail)


class DfmError(ValueError):
    """A file that is not a usable DFM; the message names the file and the fault."""


@dataclass(frozen=True)
class DfmInfo:
    """What a valid DFM declares."""

    path: Path
    resolution: int  # R
    input_names: tuple[str, ...]  # the face input, then the morph input when there is one
    output_names: tuple[str, ...]  # face mask, celeb face, celeb mask (by position)

    @property
    def has_morph(self) -> bool:
        """True for AMP models (a morph_value input)."""
        return len(self.input_names) == 2

    @property
    def deepfacelive_names(self) -> bool:
        """True when DeepFaceLive can feed it: inputs named exactly `in_face:0` (and
        `morph_value:0`), as its DFMModel.convert does."""
        return self.input_names == DFL_INPUT_NAMES[: len(self.input_names)]


def safe_name(name: str) -> str:
    """A tensor name with every character other than [A-Za-z0-9_] replaced by `_`."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"t_{cleaned}"


def safe_names(info: DfmInfo) -> dict[str, str]:
    """Original -> safe name of every graph input and output (unique; unchanged when safe)."""
    mapping: dict[str, str] = {}
    for name in (*info.input_names, *info.output_names):
        candidate, suffix = safe_name(name), 1
        while candidate in mapping.values():
            candidate, suffix = f"{safe_name(name)}_{suffix}", suffix + 1
        mapping[name] = candidate
    return mapping


def rename_tensors(model: onnx.ModelProto, mapping: dict[str, str]) -> onnx.ModelProto:
    """A copy of the model with tensors renamed everywhere they occur (graph edges, nodes,
    initializers, value infos); for TensorRT, whose profiles break on `:` in names."""
    renamed = onnx.ModelProto()
    renamed.CopyFrom(model)
    graph = renamed.graph
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        value.name = mapping.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [mapping.get(name, name) for name in node.input]
        node.output[:] = [mapping.get(name, name) for name in node.output]
    return renamed


def refuse(path: Path, fault: str) -> DfmError:
    """The error for a refused file."""
    return DfmError(f"{path}: not a usable DFM model: {fault}")


def load_graph(path: Path, size_limit: int) -> onnx.ModelProto:
    """The ONNX model in the file, after the existence, size and format checks."""
    if not path.is_file():
        raise refuse(path, "not a file (a folder)" if path.is_dir() else "no such file")
    size = path.stat().st_size
    if size > size_limit:
        raise refuse(path, f"{size} bytes is over the size limit of {size_limit} bytes")
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError) as error:
        raise refuse(path, f"not an ONNX file ({error})") from error
    if not model.graph.node or not model.graph.input or not model.opset_import:
        raise refuse(path, "not an ONNX file (no graph)")
    return model


def open_session(path: Path) -> ort.InferenceSession:
    """A single-threaded CPU ONNX Runtime session of the file, or a refusal naming the fault."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except ORT_ERRORS as error:
        raise refuse(path, f"ONNX Runtime cannot load the graph ({error})") from error


def fixed_dim(value: object) -> int | None:
    """A declared dimension as an int, None when it is symbolic or unknown."""
    return value if isinstance(value, int) and value > 0 else None


def check_inputs(path: Path, inputs: list[ort.NodeArg]) -> int:
    """Input checks of DFMModel and the contract; returns R."""
    if not inputs:
        raise refuse(path, "the graph has no inputs")
    if len(inputs) > 2:
        raise refuse(path, f"{len(inputs)} inputs; a DFM has at most two (in_face, morph_value)")
    face = inputs[0]
    if FACE_INPUT not in face.name:
        raise refuse(path, f"input 0 is named {face.name!r}; it must contain {FACE_INPUT!r}")
    if face.type != "tensor(float)":
        raise refuse(path, f"input {face.name!r} is {face.type}, not float32")
    shape = list(face.shape)
    if len(shape) != 4:
        raise refuse(path, f"input {face.name!r} has shape {shape}; expected [N,R,R,3] (NHWC)")
    height, width, channels = (fixed_dim(value) for value in shape[1:])
    if height is None or width is None:
        raise refuse(path, f"input {face.name!r} has dynamic height or width {shape}; "
                           "R must be fixed")
    if height != width or channels != 3:
        raise refuse(path, f"input {face.name!r} has shape {shape}; expected [N,R,R,3] (NHWC, "
                           "square)")
    if len(inputs) == 2:
        morph = inputs[1]
        if MORPH_INPUT not in morph.name:
            raise refuse(path, f"input 1 is named {morph.name!r}; it must contain "
                               f"{MORPH_INPUT!r}")
        if morph.type != "tensor(float)" or list(morph.shape) != [1]:
            raise refuse(path, f"input {morph.name!r} is {morph.type} {list(morph.shape)}; "
                               "expected float32 [1]")
    return height


def check_outputs(path: Path, outputs: list[ort.NodeArg], resolution: int) -> None:
    """Exactly three outputs of rank 4; every declared size matches [N,R,R,C] by position."""
    if len(outputs) != len(OUTPUT_CHANNELS):
        raise refuse(path, f"{len(outputs)} outputs; a DFM has three (face mask, celeb face, "
                           "celeb mask)")
    for output, channels, role in zip(outputs, OUTPUT_CHANNELS, OUTPUT_ROLES, strict=True):
        shape = list(output.shape)
        expected = (resolution, resolution, channels)
        declared = [fixed_dim(value) for value in shape[1:]]
        if output.type != "tensor(float)" or len(shape) != 4 or any(
                size not in (None, want) for size, want in zip(declared, expected, strict=True)):
            raise refuse(path, f"output {output.name!r} ({role}) is {output.type} {shape}; "
                               f"expected float32 [N,{resolution},{resolution},{channels}]")


def probe(path: Path, session: ort.InferenceSession, resolution: int) -> None:
    """Run one grey face through the model: real output shapes and values in 0..1."""
    inputs = session.get_inputs()
    feed = {inputs[0].name: np.full((1, resolution, resolution, 3), 0.5, np.float32)}
    if len(inputs) == 2:
        feed[inputs[1].name] = np.array([0.75], np.float32)  # DeepFaceLive's default
    try:
        results = session.run(None, feed)
    except ORT_ERRORS as error:
        raise refuse(path, f"the graph fails on a {resolution}x{resolution} face ({error})"
                     ) from error
    for result, channels, role in zip(results, OUTPUT_CHANNELS, OUTPUT_ROLES, strict=True):
        if result.shape != (1, resolution, resolution, channels):
            raise refuse(path, f"the {role} output has shape {list(result.shape)}; expected "
                               f"[1,{resolution},{resolution},{channels}]")
        if not np.all(np.isfinite(result)) or result.min() < -VALUE_SLACK or \
                result.max() > 1 + VALUE_SLACK:
            raise refuse(path, f"the {role} output leaves 0..1 ({result.min():.3g} to "
                               f"{result.max():.3g})")


def read_dfm(path: Path, size_limit: int = DEFAULT_SIZE_LIMIT, run_probe: bool = True
             ) -> DfmInfo:
    """Check a DFM file and describe it; raises DfmError naming the file and the fault."""
    path = Path(path)
    load_graph(path, size_limit)
    session = open_session(path)
    resolution = check_inputs(path, session.get_inputs())
    check_outputs(path, session.get_outputs(), resolution)
    if run_probe:
        probe(path, session, resolution)
    return DfmInfo(path, resolution, tuple(arg.name for arg in session.get_inputs()),
                   tuple(arg.name for arg in session.get_outputs()))
