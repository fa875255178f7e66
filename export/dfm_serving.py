"""`swaptron export --dfm PATH[:NAME]`: DFM files served as identities beside our decoders.

Each DFM becomes its own model `dfm_<name>` (its graph with the tensors renamed to the specs'
names, dynamic batching on N; an AMP model's morph_value fed from a batched DFM_MORPH). Each R
in use gets a crop graph `dfm_crop_<R>` and a merge graph `dfm_merge_<R>` (networks/
dfm_graphs.py), and the swap step of every swapping ensemble becomes the router (server/
dfm_router_model.py), which sends each frame to the swapper or to its DFM's three models. Bad
files are refused with DfmError before anything is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from swaptron.export import onnx_export, tensorrt, tensorrt_check
from swaptron.export.repository import ServingOptions, model_config, write_model_folder
from swaptron.networks.dfm import DfmInfo, read_dfm, refuse, rename_tensors
from swaptron.networks.dfm_graphs import DfmCrop, DfmMerge
from swaptron.networks.watermark import FrameMark
from swaptron.specs import (
    DEFAULT_MORPH,
    DFM_FACE,
    DFM_MORPH,
    DFM_OUTPUTS,
    FRAME,
    LANDMARKS,
    LARGEST_ONLY,
    PRESENCE,
    SWAPPED,
    SWAPPER,
    TARGET,
    ModelSpec,
    dfm_model_spec,
    dfm_specs,
)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class ServedDfm:
    """A checked DFM file and the identity name it is served as."""

    name: str
    info: DfmInfo


def parse_source(text: str) -> tuple[Path, str]:
    """PATH[:NAME] -> (path, name); NAME defaults to the file's stem."""
    path, separator, name = text.rpartition(":")
    if not separator or "/" in name or not path:
        path, name = text, Path(text).stem
    return Path(path), name


def load_dfms(sources: list[str], natives: tuple[str, ...], target: str) -> list[ServedDfm]:
    """Check every DFM (read_dfm, and for the tensorrt target the TensorRT 10.5 check of the
    graph as served) and its name; DfmError naming the file and the fault."""
    served: list[ServedDfm] = []
    for text in sources:
        path, name = parse_source(text)
        if not NAME_PATTERN.match(name):
            raise refuse(path, f"identity name {name!r} must be letters, digits, _ and -")
        if name in natives or name in (dfm.name for dfm in served):
            raise refuse(path, f"identity name {name!r} is already taken; name it PATH:NAME")
        info = read_dfm(path)
        if target == "tensorrt":
            findings = tensorrt_check.check_model(served_graph(info))
            if findings:
                raise refuse(path, "TensorRT 10.5 cannot run the graph: " + "; ".join(
                    str(finding) for finding in findings[:5]))
        served.append(ServedDfm(name, info))
    return served


def served_graph(info: DfmInfo) -> onnx.ModelProto:
    """The DFM's graph with the specs' tensor names; an AMP model's morph_value [1] comes from
    the first row of DFM_MORPH [N,1] (the router sends one batch per request)."""
    model = onnx.load(str(info.path))
    mapping = dict(zip(info.output_names, DFM_OUTPUTS, strict=True))
    mapping[info.input_names[0]] = DFM_FACE
    if info.has_morph:
        mapping[info.input_names[1]] = "dfm_morph_value"
    model = rename_tensors(model, mapping)
    if info.has_morph:
        graph = model.graph
        original = next(item for item in graph.input if item.name == "dfm_morph_value")
        graph.input.remove(original)
        graph.input.append(helper.make_tensor_value_info(DFM_MORPH, onnx.TensorProto.FLOAT,
                                                         ["N", 1]))
        graph.initializer.extend([numpy_helper.from_array(np.array([1], np.int64),
                                                          "dfm_morph_shape")])
        first = helper.make_node("Gather", [DFM_MORPH, "dfm_morph_row"], ["dfm_morph_first"],
                                 axis=0)
        graph.initializer.append(numpy_helper.from_array(np.array(0, np.int64), "dfm_morph_row"))
        graph.node.insert(0, helper.make_node("Reshape", ["dfm_morph_first", "dfm_morph_shape"],
                                              ["dfm_morph_value"]))
        graph.node.insert(0, first)
    onnx.checker.check_model(model)
    return model


def crop_and_merge_graphs(resolution: int, spec: tuple[ModelSpec, ModelSpec],
                          tensors: dict[str, np.ndarray], fixed: bool,
                          mark: FrameMark | None = None
                          ) -> list[tuple[ModelSpec, onnx.ModelProto, dict[str, np.ndarray]]]:
    """The crop and merge graphs of side R (the merge with the swapper's mark, None: off),
    traced on the example frames; with their warmups."""
    crop_spec, merge_spec = spec
    crop = DfmCrop(resolution).eval()
    example = {FRAME: tensors[FRAME], LANDMARKS: tensors[LANDMARKS],
               PRESENCE: tensors[PRESENCE],
               LARGEST_ONLY: np.zeros((len(tensors[FRAME]), 1), np.int32)}
    with torch.no_grad():
        outputs = crop(*(torch.from_numpy(np.ascontiguousarray(example[name]))
                                 for name in crop_spec.input_names()))
    faces, matrices, valid = (output.numpy() for output in outputs)
    mask = np.ones((*faces.shape[:-1], 1), np.float32)
    merged = {FRAME: example[FRAME], DFM_OUTPUTS[0]: mask, DFM_OUTPUTS[1]: faces,
              DFM_OUTPUTS[2]: mask, crop_spec.output_names()[1]: matrices,
              crop_spec.output_names()[2]: valid,
              TARGET: np.zeros((len(example[FRAME]), 1), np.int32)}
    graphs = []
    for spec_, module, feed in ((crop_spec, crop, example),
                                (merge_spec, DfmMerge(resolution, mark=mark).eval(), merged)):
        model = onnx_export.to_onnx(module, spec_, feed, f"dfm graph R={resolution}")
        if fixed:  # no TensorRT layer reads a uint8 output
            tensorrt.publish_from_float(model)
        graphs.append((spec_, model, feed))
    return graphs


def routes(served: list[ServedDfm], natives: int, max_faces: int) -> str:
    """The router's `routes` parameter (JSON): where each identity's frames go, and names."""
    entries = []
    for dfm in served:
        crop, merge = dfm_specs(max_faces, dfm.info.resolution)
        model = dfm_model_spec(dfm.name, dfm.info.resolution, dfm.info.has_morph)
        entries.append({"name": dfm.name, "model": model.name, "crop": crop.name,
                        "merge": merge.name, "morph": dfm.info.has_morph,
                        "crop_inputs": crop.input_names(), "crop_outputs": crop.output_names(),
                        "model_inputs": model.input_names(),
                        "model_outputs": model.output_names(),
                        "merge_layers": merge.input_names()[1:4],
                        "merge_inputs": merge.input_names()})
    return json.dumps({"swapper": SWAPPER, "swapped": SWAPPED, "native": natives,
                       "dfms": entries}, sort_keys=True)


def write_dfm_models(served: list[ServedDfm], max_faces: int, serving: ServingOptions,
                     output: Path, tensors: dict[str, np.ndarray],
                     progress: Callable[[str], None], mark: FrameMark | None = None
                     ) -> list[ModelSpec]:
    """Write every DFM model and the crop and merge graphs they need (the merges with the
    swapper's mark, `mark`: a table over every identity, native and DFM); returns their specs
    (for the TensorRT check and engines)."""
    fixed = serving.target == "tensorrt"
    written: list[ModelSpec] = []
    for resolution in sorted({dfm.info.resolution for dfm in served}):
        for spec, model, feed in crop_and_merge_graphs(
                resolution, dfm_specs(max_faces, resolution), tensors, fixed, mark):
            save_graph(output, spec, model)
            warmup = {name: feed[name][:1] for name in spec.input_names()}
            write_model_folder(output, model_config(spec, serving, warmup), serving.target,
                               warmup)
            written.append(spec)
            progress(f"[{spec.name}] exported")
    for dfm in served:
        spec = dfm_model_spec(dfm.name, dfm.info.resolution, dfm.info.has_morph)
        save_graph(output, spec, served_graph(dfm.info))
        faces_batch = ServingOptions(**{**serving.__dict__,
                                        "max_batch_size": serving.max_batch_size * max_faces,
                                        "dynamic_batching": serving.dynamic_batching
                                        and not dfm.info.has_morph})
        write_model_folder(output, model_config(spec, faces_batch, None,
                                                {"dfm_file": dfm.info.path.name}),
                           serving.target, None)
        written.append(spec)
        progress(f"[{spec.name}] {dfm.info.path} (R {dfm.info.resolution}"
                 f"{', AMP: MORPH default ' + str(DEFAULT_MORPH) if dfm.info.has_morph else ''})")
    return written


def save_graph(output: Path, spec: ModelSpec, model: onnx.ModelProto) -> None:
    """Write a model's model.onnx."""
    path = output / spec.name / "1" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())

