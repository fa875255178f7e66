"""Run a TFLite convolutional network as a PyTorch module, weights read from the `.tflite` file.

MediaPipe's BlazeFace and FaceMesh use a small set of ops (convolutions, depthwise convolutions,
PReLU/ReLU, adds, pads, max pools, reshapes, concatenations, fp16 dequantization of constants).
`TfliteNetwork` parses the flatbuffer with the `tflite` package, turns every constant into a
PyTorch parameter, and replays the operators in order. Activations are kept NCHW inside; the
network takes NCHW input and returns each output in the TFLite (NHWC) layout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tflite
import torch
import torch.nn.functional as F  # noqa: N812
from tflite.ActivationFunctionType import ActivationFunctionType
from tflite.BuiltinOperator import BuiltinOperator
from tflite.Padding import Padding
from tflite.TensorType import TensorType
from torch import nn

OPERATOR_NAMES = {value: name for name, value in vars(BuiltinOperator).items()
                  if not name.startswith("_")}
NUMPY_TYPES = {TensorType.FLOAT32: np.float32, TensorType.FLOAT16: np.float16,
               TensorType.INT32: np.int32, TensorType.INT64: np.int64}
OPTION_CLASSES = {
    "CONV_2D": tflite.Conv2DOptions,
    "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
    "ADD": tflite.AddOptions,
    "MAX_POOL_2D": tflite.Pool2DOptions,
    "CONCATENATION": tflite.ConcatenationOptions,
    "RESIZE_BILINEAR": tflite.ResizeBilinearOptions,
}


class UnsupportedTfliteError(ValueError):
    """The `.tflite` file uses an operator or tensor type this port does not replay."""


@dataclass
class Operator:
    """One TFLite operator: its kind, tensor indices, options, and static input shape."""

    kind: str
    inputs: list[int]
    outputs: list[int]
    options: object | None
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    extra: dict[str, int] = field(default_factory=dict)


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite SAME padding (before, after) for one spatial axis: the extra pixel goes after."""
    effective = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def activation(kind: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The fused activation of an op."""
    if kind == ActivationFunctionType.NONE:
        return lambda x: x
    if kind == ActivationFunctionType.RELU:
        return F.relu
    if kind == ActivationFunctionType.RELU6:
        return lambda x: torch.clamp(x, 0.0, 6.0)
    raise UnsupportedTfliteError(f"fused activation {kind} is not supported")


def nhwc_axis_to_nchw(axis: int, rank: int) -> int:
    """Map an NHWC axis to the NCHW layout used inside for 4-D tensors."""
    axis = axis % rank
    return axis if rank != 4 else (0, 2, 3, 1)[axis]


class TfliteNetwork(nn.Module):
    """A TFLite graph replayed with PyTorch ops; constants become named parameters."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
        graph = model.Subgraphs(0)
        self.input_index = int(graph.Inputs(0))
        self.output_indices = [int(graph.Outputs(i)) for i in range(graph.OutputsLength())]
        self.output_names = [graph.Tensors(i).Name().decode() for i in self.output_indices]
        shapes = {i: tuple(int(d) for d in graph.Tensors(i).ShapeAsNumpy())
                  for i in range(graph.TensorsLength())
                  if graph.Tensors(i).ShapeLength() > 0}
        constants = self._read_constants(model, graph)
        self.operators: list[Operator] = []
        self.constant_names: dict[int, str] = {}
        for op_index in range(graph.OperatorsLength()):
            op = graph.Operators(op_index)
            code = model.OperatorCodes(op.OpcodeIndex())
            kind = OPERATOR_NAMES.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            inputs = [int(i) for i in op.InputsAsNumpy()]
            outputs = [int(i) for i in op.OutputsAsNumpy()]
            if kind == "DEQUANTIZE":
                constants[outputs[0]] = constants[inputs[0]].astype(np.float32)
                continue
            options = self._read_options(kind, op)
            self.operators.append(Operator(kind, inputs, outputs, options,
                                           shapes.get(inputs[0], ()), shapes.get(outputs[0], ())))
        for position, operator in enumerate(self.operators):
            self._register_constants(position, operator, constants)

    @staticmethod
    def _read_constants(model: tflite.Model, graph: tflite.SubGraph) -> dict[int, np.ndarray]:
        constants: dict[int, np.ndarray] = {}
        for index in range(graph.TensorsLength()):
            tensor = graph.Tensors(index)
            buffer = model.Buffers(tensor.Buffer())
            if buffer is None or buffer.DataLength() == 0:
                continue
            if tensor.Type() not in NUMPY_TYPES:
                raise UnsupportedTfliteError(f"tensor {tensor.Name()!r} has type {tensor.Type()}")
            data = buffer.DataAsNumpy().tobytes()
            shape = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
            constants[index] = np.frombuffer(data, NUMPY_TYPES[tensor.Type()]).reshape(shape)
        return constants

    @staticmethod
    def _read_options(kind: str, op: tflite.Operator) -> object | None:
        if kind in ("RELU", "PRELU", "PAD", "RESHAPE"):
            return None
        if kind not in OPTION_CLASSES:
            raise UnsupportedTfliteError(f"operator {kind} is not supported")
        table = op.BuiltinOptions()
        options = OPTION_CLASSES[kind]()
        options.Init(table.Bytes, table.Pos)
        return options

    def _register_constants(self, position: int, operator: Operator,
                            constants: dict[int, np.ndarray]) -> None:
        """Turn an op's constant inputs into parameters in the layout PyTorch wants."""
        for slot, index in enumerate(operator.inputs):
            if index not in constants or index in self.constant_names:
                continue
            value = constants[index]
            if operator.kind == "CONV_2D" and slot == 1:
                value = value.transpose(0, 3, 1, 2)  # OHWI -> OIHW
            elif operator.kind == "DEPTHWISE_CONV_2D" and slot == 1:
                value = value.transpose(3, 0, 1, 2)  # 1HWC -> C1HW
            elif operator.kind == "PRELU":
                value = value.reshape(-1)
            name = f"{operator.kind.lower()}_{position}_{slot}"
            is_float = value.dtype == np.float32
            tensor = torch.from_numpy(np.ascontiguousarray(value).copy())
            if is_float:
                self.register_parameter(name, nn.Parameter(tensor, requires_grad=False))
            else:
                self.register_buffer(name, tensor, persistent=False)
            self.constant_names[index] = name

    def constant(self, index: int) -> torch.Tensor:
        """A constant input by its TFLite tensor index."""
        return getattr(self, self.constant_names[index])

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Run the graph on NCHW input; outputs come back in TFLite's NHWC layout."""
        values: dict[int, torch.Tensor] = {self.input_index: image}
        for operator in self.operators:
            values[operator.outputs[0]] = self._run_operator(operator, values)
        outputs = [values[i] for i in self.output_indices]
        return [o.permute(0, 2, 3, 1) if o.dim() == 4 else o for o in outputs]

    def _run_operator(self, operator: Operator, values: dict[int, torch.Tensor]) -> torch.Tensor:
        x = values.get(operator.inputs[0])
        kind, options = operator.kind, operator.options
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            weight = self.constant(operator.inputs[1])
            bias = self.constant(operator.inputs[2]) if len(operator.inputs) > 2 else None
            stride = (options.StrideH(), options.StrideW())
            kernel_h, kernel_w = weight.shape[2], weight.shape[3]
            if options.Padding() == Padding.SAME:
                top, bottom = same_padding(operator.input_shape[1], kernel_h, stride[0])
                left, right = same_padding(operator.input_shape[2], kernel_w, stride[1])
                if top or bottom or left or right:
                    x = F.pad(x, (left, right, top, bottom))
            groups = x.shape[1] if kind == "DEPTHWISE_CONV_2D" else 1
            y = F.conv2d(x, weight, bias, stride=stride, groups=groups)
            return activation(options.FusedActivationFunction())(y)
        if kind == "ADD":
            other = values.get(operator.inputs[1])
            if other is None:
                other = self.constant(operator.inputs[1])
            return activation(options.FusedActivationFunction())(x + other)
        if kind == "RELU":
            return F.relu(x)
        if kind == "PRELU":
            return F.prelu(x, self.constant(operator.inputs[1]))
        if kind == "MAX_POOL_2D":
            kernel = (options.FilterHeight(), options.FilterWidth())
            stride = (options.StrideH(), options.StrideW())
            if options.Padding() == Padding.SAME:
                top, bottom = same_padding(operator.input_shape[1], kernel[0], stride[0])
                left, right = same_padding(operator.input_shape[2], kernel[1], stride[1])
                if top or bottom or left or right:
                    x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
            return F.max_pool2d(x, kernel, stride)
        if kind == "PAD":
            pads = self.constant(operator.inputs[1]).tolist()  # NHWC [[before, after], ...]
            (_, _), (top, bottom), (left, right), (c_before, c_after) = pads
            return F.pad(x, (left, right, top, bottom, c_before, c_after))
        if kind == "RESHAPE":
            if x.dim() == 4:
                x = x.permute(0, 2, 3, 1)
            shape = list(operator.output_shape)
            return x.reshape([-1, *shape[1:]])
        if kind == "CONCATENATION":
            parts = [values[i] for i in operator.inputs]
            axis = nhwc_axis_to_nchw(options.Axis(), parts[0].dim())
            return activation(options.FusedActivationFunction())(torch.cat(parts, dim=axis))
        if kind == "RESIZE_BILINEAR":
            return resize_bilinear(x, operator.output_shape[1:3], options)
        raise UnsupportedTfliteError(f"operator {kind} is not supported")


def resize_bilinear(x: torch.Tensor, size: tuple[int, ...], options: object) -> torch.Tensor:
    """TFLite RESIZE_BILINEAR to the output's static size. Half-pixel centres are PyTorch's
    align_corners=False; align_corners is the same in both; TFLite's legacy mode (neither) maps
    output x to input x * in / out, which PyTorch does not offer, so it is refused."""
    align_corners = bool(options.AlignCorners())  # type: ignore[attr-defined]
    half_pixel = bool(options.HalfPixelCenters())  # type: ignore[attr-defined]
    if not align_corners and not half_pixel:
        raise UnsupportedTfliteError("RESIZE_BILINEAR without half_pixel_centers or "
                                     "align_corners is not supported")
    return F.interpolate(x, size=(int(size[0]), int(size[1])), mode="bilinear",
                         align_corners=align_corners)
