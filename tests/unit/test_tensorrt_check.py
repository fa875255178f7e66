"""The TensorRT 10.5 static check on small graphs built here: each rule can fail."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from swaptron.export.tensorrt_check import check_model, summary


def graph_model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
                outputs: list[onnx.ValueInfoProto],
                initializers: list[onnx.TensorProto] | None = None,
                opset: int = 17) -> onnx.ModelProto:
    """A checked ONNX model from nodes and typed inputs/outputs."""
    graph = helper.make_graph(nodes, "fixture", inputs, outputs, initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def frame_input() -> onnx.ValueInfoProto:
    """FRAME, uint8 [B,H,W,3]."""
    return helper.make_tensor_value_info("FRAME", TensorProto.UINT8, ["B", "H", "W", 3])


def rules(model: onnx.ModelProto, **kwargs: object) -> set[str]:
    """Rules the model breaks."""
    return {finding.rule for finding in check_model(model, **kwargs)}


def test_a_uint8_transpose_before_the_cast_is_refused() -> None:
    """The pattern the graphs had before the rewrite: frame.permute(...).to(float32)."""
    model = graph_model(
        [helper.make_node("Transpose", ["FRAME"], ["planar"], perm=[0, 3, 1, 2]),
         helper.make_node("Cast", ["planar"], ["OUT"], to=TensorProto.FLOAT)],
        [frame_input()], [helper.make_tensor_value_info("OUT", TensorProto.FLOAT, ["?"])])
    assert rules(model) == {"UINT8_CONVERSION", "UINT8_INTERMEDIATE", "INPUT_TYPE"}
    assert any("UINT8 inside the graph" in str(f) for f in check_model(model))


def test_casting_first_is_clean() -> None:
    model = graph_model(
        [helper.make_node("Cast", ["FRAME"], ["pixels"], to=TensorProto.FLOAT),
         helper.make_node("Transpose", ["pixels"], ["planar"], perm=[0, 3, 1, 2]),
         helper.make_node("Cast", ["planar"], ["OUT"], to=TensorProto.UINT8)],
        [frame_input()],
        [helper.make_tensor_value_info("OUT", TensorProto.UINT8, ["B", 3, "H", "W"])])
    assert check_model(model) == []
    assert summary([]) == "clean"


def test_a_bool_scatter_and_a_bool_constant_are_refused() -> None:
    """select_rows' old `first[0] = True`."""
    model = graph_model(
        [helper.make_node("Constant", [], ["true"],
                          value=numpy_helper.from_array(np.array([True]), "true")),
         helper.make_node("ScatterND", ["keep", "index", "true"], ["OUT"])],
        [helper.make_tensor_value_info("keep", TensorProto.BOOL, [4]),
         helper.make_tensor_value_info("index", TensorProto.INT64, [1, 1])],
        [helper.make_tensor_value_info("OUT", TensorProto.BOOL, [4])])
    assert rules(model) == {"BOOL_CONSTANT", "INPUT_TYPE"}


def test_nonzero_and_a_value_dependent_range_need_declaring() -> None:
    model = graph_model(
        [helper.make_node("NonZero", ["mask"], ["where"]),
         helper.make_node("ReduceMax", ["size"], ["limit"], keepdims=0),
         helper.make_node("Range", ["zero", "limit", "one"], ["OUT"])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [8]),
         helper.make_tensor_value_info("size", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("where", TensorProto.INT64, ["?"]),
         helper.make_tensor_value_info("OUT", TensorProto.INT64, ["?"])],
        [numpy_helper.from_array(np.array(0, np.int64), "zero"),
         numpy_helper.from_array(np.array(1, np.int64), "one")])
    findings = check_model(model)
    assert [f.op for f in findings] == ["NonZero", "Range"]
    assert {f.rule for f in findings} == {"DATA_DEPENDENT_SHAPE"}
    assert check_model(model, allow=frozenset({"DATA_DEPENDENT_SHAPE"})) == []


def test_a_range_over_a_shape_is_fine() -> None:
    model = graph_model(
        [helper.make_node("Shape", ["x"], ["shape"]),
         helper.make_node("Gather", ["shape", "zero"], ["limit"], axis=0),
         helper.make_node("Range", ["zero", "limit", "one"], ["OUT"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("OUT", TensorProto.INT64, ["?"])],
        [numpy_helper.from_array(np.array(0, np.int64), "zero"),
         numpy_helper.from_array(np.array(1, np.int64), "one")])
    assert check_model(model) == []


def test_float_math_on_bool_an_unknown_op_and_the_opset_are_refused() -> None:
    model = graph_model(
        [helper.make_node("Add", ["a", "b"], ["sum"]),
         helper.make_node("Unique", ["c"], ["OUT"])],
        [helper.make_tensor_value_info(name, TensorProto.BOOL, [2]) for name in "ab"]
        + [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("sum", TensorProto.BOOL, [2]),
         helper.make_tensor_value_info("OUT", TensorProto.FLOAT, ["?"])], opset=21)
    assert rules(model) == {"INPUT_TYPE", "UNSUPPORTED_OP", "OPSET"}


def test_scatter_with_a_reduction_is_refused() -> None:
    model = graph_model(
        [helper.make_node("ScatterND", ["data", "index", "update"], ["OUT"], reduction="none")],
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [4]),
         helper.make_tensor_value_info("index", TensorProto.INT64, [1, 1]),
         helper.make_tensor_value_info("update", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("OUT", TensorProto.FLOAT, [4])], opset=18)
    assert rules(model) == {"SCATTER_REDUCTION"}
