"""Tiny synthetic DFM files for tests, built with onnx.helper (NHWC, DeepFaceLab's names).

Good ones: identity (celeb face = input, masks 1), channel swap (B <-> R), AMP (a morph_value
input; celeb face = input x morph). Broken ones, each with one fault.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
FACE, MORPH = "in_face:0", "morph_value:0"
OUTPUTS = ("out_face_mask:0", "out_celeb_face:0", "out_celeb_face_mask:0")


def tensor(name: str, shape: list[object], dtype: int = TensorProto.FLOAT
           ) -> onnx.ValueInfoProto:
    """A graph input or output."""
    return helper.make_tensor_value_info(name, dtype, shape)


def outputs(resolution: int, channels: tuple[int, int, int] = (1, 3, 1),
            names: tuple[str, ...] = OUTPUTS) -> list[onnx.ValueInfoProto]:
    """The three outputs [N,R,R,C] by position."""
    return [tensor(name, ["N", resolution, resolution, count])
            for name, count in zip(names, channels, strict=True)]


def ones_mask_nodes(source: str, out: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes making a [N,R,R,1] tensor of ones from an [N,R,R,3] one."""
    constants = [numpy_helper.from_array(np.array(value, np.int64), name)
                 for name, value in (("start0", [0]), ("end1", [1]), ("axis3", [3]))]
    constants.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    constants.append(numpy_helper.from_array(np.array(1.0, np.float32), "one"))
    nodes = [helper.make_node("Slice", [source, "start0", "end1", "axis3"], [f"{out}_c0"]),
             helper.make_node("Mul", [f"{out}_c0", "zero"], [f"{out}_z"]),
             helper.make_node("Add", [f"{out}_z", "one"], [out])]
    return nodes, constants


def save(path: Path, graph: onnx.GraphProto) -> Path:
    """Write a checked model at opset 17."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def face_graph(resolution: int, celeb: list[onnx.NodeProto], extra_inputs: tuple = (),
               initializers: tuple = (), face_shape: list[object] | None = None,
               face_name: str = FACE) -> onnx.GraphProto:
    """A DFM graph whose celeb face is made by `celeb` (nodes writing OUTPUTS[1] from the
    face input) and whose masks are ones."""
    mask_nodes, constants = ones_mask_nodes(face_name, "mask")
    copy = [helper.make_node("Identity", ["mask"], [OUTPUTS[0]]),
            helper.make_node("Identity", ["mask"], [OUTPUTS[2]])]
    shape = face_shape or ["N", resolution, resolution, 3]
    return helper.make_graph([*mask_nodes, *celeb, *copy], "dfm",
                             [tensor(face_name, shape), *extra_inputs], outputs(resolution),
                             [*constants, *initializers])


def identity_dfm(path: Path, resolution: int = 64) -> Path:
    """celeb face = input face, both masks 1."""
    return save(path, face_graph(resolution, [helper.make_node("Identity", [FACE],
                                                                [OUTPUTS[1]])]))


def channel_swap_dfm(path: Path, resolution: int = 64) -> Path:
    """celeb face = input face with B and R swapped, masks 1."""
    order = numpy_helper.from_array(np.array([2, 1, 0], np.int64), "bgr_to_rgb")
    node = helper.make_node("Gather", [FACE, "bgr_to_rgb"], [OUTPUTS[1]], axis=3)
    return save(path, face_graph(resolution, [node], initializers=(order,)))


def amp_dfm(path: Path, resolution: int = 64) -> Path:
    """An AMP model: celeb face = input face x morph_value ([1], no batch axis), masks 1."""
    node = helper.make_node("Mul", [FACE, MORPH], [OUTPUTS[1]])
    return save(path, face_graph(resolution, [node], extra_inputs=(tensor(MORPH, [1]),)))


def broken_dfm(path: Path, fault: str, resolution: int = 64) -> Path:
    """A file with one fault: dynamic_r, nchw, wrong_name, three_inputs, two_outputs,
    wrong_shapes, bad_morph, unknown_op, out_of_range, not_onnx."""
    same = [helper.make_node("Identity", [FACE], [OUTPUTS[1]])]
    if fault == "not_onnx":
        path.write_bytes(b"this is not an ONNX file\n" * 8)
        return path
    if fault == "dynamic_r":
        return save(path, face_graph(resolution, same, face_shape=["N", "H", "W", 3]))
    if fault == "nchw":
        graph = face_graph(resolution, same)
        graph.input[0].CopyFrom(tensor(FACE, ["N", 3, resolution, resolution]))
        return save(path, graph)
    if fault == "wrong_name":
        return save(path, face_graph(resolution, [helper.make_node("Identity", ["image"],
                                                                   [OUTPUTS[1]])],
                                     face_name="image"))
    if fault in ("three_inputs", "bad_morph"):
        morph = tensor(MORPH, [1]) if fault == "three_inputs" else tensor("strength:0", [1])
        extra = (morph, tensor("extra:0", [1])) if fault == "three_inputs" else (morph,)
        return save(path, face_graph(resolution, same, extra_inputs=extra))
    if fault == "two_outputs":
        graph = face_graph(resolution, same)
        del graph.output[2]
        return save(path, graph)
    if fault == "wrong_shapes":  # celeb face first: outputs out of order
        graph = face_graph(resolution, same)
        first, second = onnx.ValueInfoProto(), onnx.ValueInfoProto()
        first.CopyFrom(graph.output[0])
        second.CopyFrom(graph.output[1])
        graph.output[0].CopyFrom(second)
        graph.output[1].CopyFrom(first)
        return save(path, graph)
    if fault == "unknown_op":
        node = helper.make_node("Frobnicate", [FACE], [OUTPUTS[1]], domain="com.example")
        graph = face_graph(resolution, [node])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                        helper.make_opsetid("com.example", 1)])
        model.ir_version = 8
        onnx.save(model, str(path))
        return path
    if fault == "out_of_range":  # 0..255 faces
        scale = numpy_helper.from_array(np.array(255.0, np.float32), "scale")
        node = helper.make_node("Mul", [FACE, "scale"], [OUTPUTS[1]])
        return save(path, face_graph(resolution, [node], initializers=(scale,)))
    raise ValueError(f"unknown fault {fault!r}")
