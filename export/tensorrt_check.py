"""Will TensorRT 10.5 parse this ONNX graph? A static check, without a GPU or TensorRT.

Every tensor's type is inferred (ONNX shape inference), then each node is held against the
rules in `tensorrt_rules/tensorrt-10.5.json` (TensorRT 10.5, the version in the pinned Triton
24.10 image; each rule cites onnx-tensorrt's docs/operators.md or importer source, or
TensorRT's headers):
- the op is one the parser imports, and the opset is in its range;
- each data input has a type the op accepts;
- UINT8 only at the graph's edges: an input may only be cast to FLOAT/FLOAT16, and a UINT8
  node output must be a graph output (the parser refuses intermediate UINT8 tensors);
- no BOOL constants (TensorRT's constant layer does not take booleans);
- no data-dependent shapes: NonZero, and Range whose bounds come from tensor values rather
  than shapes, are refused unless the caller declares them;
- ScatterND without a `reduction` attribute, GridSample of rank 4, TopK's K at most 3840.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import onnx
from onnx import numpy_helper

RULES_FILE = Path(__file__).resolve().parent / "tensorrt_rules" / "tensorrt-10.5.json"
# ops whose outputs are known when the input shapes are (their values never matter)
SHAPE_SOURCES = frozenset({"Shape", "Size", "Constant", "ConstantOfShape"})
TOPK_MAX = 3840


@dataclass(frozen=True)
class Finding:
    """One thing TensorRT would refuse: which rule, where, and the source that says so."""

    rule: str
    node: str
    op: str
    message: str
    source: str

    def __str__(self) -> str:
        return f"{self.node} ({self.op}): {self.message} [{self.rule}; {self.source}]"


@cache
def load_rules(path: Path = RULES_FILE) -> dict[str, object]:
    """The rules table (parsed once)."""
    return json.loads(path.read_text())


def type_name(elem_type: int) -> str:
    """ONNX TensorProto type number -> name (FLOAT, UINT8, ...)."""
    return onnx.TensorProto.DataType.Name(elem_type)


def tensor_types(model: onnx.ModelProto) -> dict[str, str]:
    """Type of every named tensor: inputs, initializers, constants and inferred values."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types: dict[str, str] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
            types[value.name] = type_name(value.type.tensor_type.elem_type)
    for initializer in graph.initializer:
        types[initializer.name] = type_name(initializer.data_type)
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    types[node.output[0]] = type_name(attribute.t.data_type)
    return types


def shape_derived(model: onnx.ModelProto) -> set[str]:
    """Tensors whose values follow from input shapes and constants alone (not from data)."""
    graph = model.graph
    static = {initializer.name for initializer in graph.initializer}
    for node in graph.node:  # nodes are topologically ordered in a valid ONNX graph
        inputs = [name for name in node.input if name]
        if node.op_type in SHAPE_SOURCES or all(name in static for name in inputs):
            static.update(node.output)
    return static


def allowed_types(op_rules: dict[str, object], index: int) -> list[str] | None:
    """Types an op accepts at an input index, or None when that input is not checked."""
    inputs = op_rules["inputs"]
    if "*" in inputs:
        return inputs["*"]
    return inputs.get(str(index))


def constant_value(model: onnx.ModelProto, name: str) -> object | None:
    """The value of an initializer or Constant output, None when it is computed."""
    for initializer in model.graph.initializer:
        if initializer.name == name:
            return numpy_helper.to_array(initializer)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def check_model(model: onnx.ModelProto, allow: frozenset[str] = frozenset()) -> list[Finding]:
    """Everything in the graph TensorRT 10.5 would refuse. `allow` names rules the caller
    accepts (e.g. DATA_DEPENDENT_SHAPE for a graph that declares its NonZero)."""
    rules = load_rules()
    ops, general = rules["ops"], rules["general"]
    types = tensor_types(model)
    static = shape_derived(model)
    outputs = {output.name for output in model.graph.output}
    findings: list[Finding] = []

    def flag(rule: str, node: onnx.NodeProto, message: str, source: str | None = None) -> None:
        if rule not in allow:
            findings.append(Finding(rule, node.name or node.output[0], node.op_type, message,
                                    source or general.get(rule, "")))

    low, high = rules["opset"]
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and not low <= opset.version <= high:
            findings.append(Finding("OPSET", "<model>", "", f"opset {opset.version} is outside "
                                    f"{low}-{high}", rules["opset_source"]))
    for node in model.graph.node:
        target = next((a.i for a in node.attribute if a.name == "to"), None)
        casts_to_float = node.op_type == "Cast" and target in (onnx.TensorProto.FLOAT,
                                                               onnx.TensorProto.FLOAT16)
        for name in node.input:
            if types.get(name) == "UINT8" and not casts_to_float:
                flag("UINT8_CONVERSION", node, f"takes the UINT8 tensor {name}; only a Cast to "
                     "FLOAT or FLOAT16 may")
    for node in model.graph.node:
        op_rules = ops.get(node.op_type)
        if op_rules is None or not op_rules["supported"]:
            flag("UNSUPPORTED_OP", node, "the parser does not import this op",
                 op_rules["source"] if op_rules else "docs/operators.md (not listed)")
            continue
        for index, name in enumerate(node.input):
            if not name:
                continue
            allowed = allowed_types(op_rules, index)
            found = types.get(name)
            if allowed is not None and found is not None and found not in allowed:
                flag("INPUT_TYPE", node, f"input {index} ({name}) is {found}; the op takes "
                     f"{', '.join(allowed)}", op_rules["source"])
            if found is None and allowed is not None:
                flag("UNKNOWN_TYPE", node, f"the type of input {index} ({name}) cannot be "
                     "inferred", "onnx shape inference")
        for name in node.output:
            if types.get(name) == "UINT8" and name not in outputs:
                flag("UINT8_INTERMEDIATE", node, f"output {name} is UINT8 inside the graph")
        if node.op_type == "Constant" and types.get(node.output[0]) == "BOOL":
            flag("BOOL_CONSTANT", node, "a BOOL constant")
        if node.op_type == "NonZero":
            flag("DATA_DEPENDENT_SHAPE", node, "NonZero: its output's length depends on values")
        if node.op_type == "Range" and not all(name in static for name in node.input):
            flag("DATA_DEPENDENT_SHAPE", node, "Range whose bounds come from tensor values")
        if node.op_type == "ScatterND" and any(a.name == "reduction" for a in node.attribute):
            flag("SCATTER_REDUCTION", node, "ScatterND with a reduction attribute")
        if node.op_type == "TopK":
            k = constant_value(model, node.input[1])
            if k is not None and int(k.reshape(-1)[0]) > TOPK_MAX:
                flag("TOPK_K", node, f"K = {int(k.reshape(-1)[0])} is over {TOPK_MAX}")
    for initializer in model.graph.initializer:
        if initializer.data_type == onnx.TensorProto.BOOL:
            findings.append(Finding("BOOL_CONSTANT", initializer.name, "initializer",
                                    "a BOOL initializer", general["BOOL_CONSTANT"]))
    return findings


def check_file(path: Path, allow: frozenset[str] = frozenset()) -> list[Finding]:
    """check_model on an ONNX file."""
    return check_model(onnx.load(str(path)), allow)


def summary(findings: list[Finding]) -> str:
    """`3 findings: DATA_DEPENDENT_SHAPE x2, INPUT_TYPE x1` (or `clean`)."""
    if not findings:
        return "clean"
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.rule] = counts.get(finding.rule, 0) + 1
    parts = ", ".join(f"{rule} x{count}" for rule, count in sorted(counts.items()))
    return f"{len(findings)} findings: {parts}"
