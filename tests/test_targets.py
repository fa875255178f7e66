"""The repositories of the container targets, read the way NVIDIA's container will: configs with
Triton's protobuf, graphs with `onnx`, and the TensorRT build script run with stand-ins for
`trtexec` and `nvidia-smi`, the two tools that need a GPU."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from swaptron.export.repository import WARMUP_FOLDER, parse_config
from swaptron.export.tensorrt import ENGINE_SCRIPT, MANIFEST
from swaptron.specs import (
    ENSEMBLE,
    FRAME_MAX_SIDE,
    FRAME_MIN_SIDE,
    NETWORKS,
    STABILIZER,
    STREAM,
    model_specs,
)

from config_checks import check_ensemble
from helpers import export_target

ONNX_TYPES = {"TYPE_UINT8": onnx.TensorProto.UINT8, "TYPE_FP32": onnx.TensorProto.FLOAT,
              "TYPE_FP16": onnx.TensorProto.FLOAT16, "TYPE_INT32": onnx.TensorProto.INT32}
BYTES_PER_ITEM = {"TYPE_UINT8": 1, "TYPE_FP32": 4, "TYPE_FP16": 2, "TYPE_INT32": 4}



@pytest.fixture(scope="module")
def onnxruntime_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An onnxruntime-target repository, exported once for the module."""
    return export_target(tmp_path_factory, "onnxruntime")


def configs(repository: Path) -> dict[str, mc.ModelConfig]:
    """Every model config of a repository, parsed as Triton parses it."""
    return {path.parent.name: parse_config(path)
            for path in sorted(repository.glob("*/config.pbtxt"))}


def onnx_inputs(path: Path) -> dict[str, tuple[int, list[int | str]]]:
    """Graph inputs of an ONNX file: name -> (element type, dims; a str for a dynamic dim)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    found = {}
    for tensor in graph.input:
        if tensor.name in initializers:
            continue
        kind = tensor.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in kind.shape.dim]
        found[tensor.name] = (kind.elem_type, dims)
    return found


def graph_inputs(config: mc.ModelConfig) -> list[str]:
    """The graph inputs a config serves: its request inputs, then (a stateful network) the
    implicit states and the control input Triton feeds."""
    return [*(t.name for t in config.input),
            *(s.input_name for s in config.sequence_batching.state),
            *(c.name for c in config.sequence_batching.control_input)]


def trtexec_commands(script: str) -> dict[str, dict[str, str]]:
    """Model name -> `--flag` -> value of each trtexec command in build_engines.sh."""
    commands = {}
    for line in script.splitlines():
        if not line.startswith('"$TRTEXEC" --'):
            continue
        flags = dict(part.split("=", 1) if "=" in part else (part, "")
                     for part in shlex.split(line)[1:])
        commands[flags["--onnx"].split("/")[0]] = flags
    return commands


def profile(argument: str) -> dict[str, list[int]]:
    """`A:1x64x3,B:1x2` -> {"A": [1, 64, 3], "B": [1, 2]}."""
    shapes = {}
    for item in argument.split(","):
        name, dims = item.rsplit(":", 1)
        shapes[name] = [int(d) for d in dims.split("x")]
    return shapes


def check_dimension(index: int, onnx_dim: int | str, low: int, best: int, high: int,
                    max_batch: int) -> None:
    """One dimension of a profile against the graph: static equal, batch 1..max, frame sides."""
    if isinstance(onnx_dim, int):
        assert low == best == high == onnx_dim
    elif index == 0:
        assert (low, high) == (1, max_batch) and low <= best <= high
    else:
        assert low <= FRAME_MIN_SIDE and high >= FRAME_MAX_SIDE and low <= best <= high


def test_trtexec_profiles_match_every_onnx_input(tensorrt_repository: Path) -> None:
    commands = trtexec_commands((tensorrt_repository / ENGINE_SCRIPT).read_text())
    networks = {name: c for name, c in configs(tensorrt_repository).items()
                if c.platform == "tensorrt_plan"}
    assert set(commands) == set(networks) >= {*NETWORKS, STABILIZER}
    for name, config in networks.items():
        flags = commands[name]
        assert flags["--onnx"] == f"{name}/1/model.onnx"
        assert flags["--saveEngine"] == f"{name}/1/{config.default_model_filename}.part"
        assert "--stronglyTyped" in flags and "--fp16" not in flags
        inputs = onnx_inputs(tensorrt_repository / flags["--onnx"])
        levels = [profile(flags[f"--{level}Shapes"]) for level in ("min", "opt", "max")]
        for shapes in levels:
            assert list(shapes) == list(inputs) == graph_inputs(config)
        for tensor in config.input:
            elem_type, dims = inputs[tensor.name]
            assert elem_type == ONNX_TYPES[mc.DataType.Name(tensor.data_type)]
            assert [d if isinstance(d, int) else -1 for d in dims[1:]] == list(tensor.dims)
            low, best, high = (shapes[tensor.name] for shapes in levels)
            assert len(low) == len(best) == len(high) == len(dims)
            for index, onnx_dim in enumerate(dims):
                check_dimension(index, onnx_dim, low[index], best[index], high[index],
                                config.max_batch_size)
        for sample in config.model_warmup:
            for key, value in sample.inputs.items():
                low, _, high = (shapes[key] for shapes in levels)
                assert all(a <= d <= b for a, d, b in zip(low[1:], value.dims, high[1:],
                                                           strict=True))


FAKE_TRTEXEC = """#!/usr/bin/env bash
if [ "${1:-}" = "--help" ]; then
  echo "&&&& RUNNING TensorRT.trtexec [TensorRT v100500] # trtexec --help"; exit 0
fi
echo "$*" >> "$TRTEXEC_LOG"
for arg in "$@"; do
  case "$arg" in --saveEngine=*) printf 'engine for %s' "$FAKE_GPU" > "${arg#--saveEngine=}";; esac
done
"""
FAKE_NVIDIA_SMI = """#!/usr/bin/env bash
[ -n "$FAKE_GPU" ] || exit 9
echo "$FAKE_GPU"
"""


@dataclass(frozen=True)
class EngineRun:
    """One run of build_engines.sh: exit status, output, and trtexec builds it made."""

    returncode: int
    output: str
    builds: int


def run_build_script(repository: Path, tools: Path, gpu: str) -> EngineRun:
    """Run build_engines.sh from another folder with the stand-in GPU tools first on PATH."""
    log = tools / "trtexec.log"
    before = len(log.read_text().splitlines()) if log.is_file() else 0
    env = {"PATH": f"{tools}:/usr/bin:/bin", "TRTEXEC": str(tools / "trtexec"),
           "TRTEXEC_LOG": str(log), "FAKE_GPU": gpu}
    result = subprocess.run(["bash", str(repository / ENGINE_SCRIPT)], cwd=tools, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    after = len(log.read_text().splitlines()) if log.is_file() else 0
    return EngineRun(result.returncode, result.stdout + result.stderr, after - before)


def test_engines_are_built_once_per_gpu_tensorrt_and_onnx(tensorrt_repository: Path,
                                                          tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(tensorrt_repository, repository)
    tools = tmp_path / "tools"
    tools.mkdir()
    for name, text in (("trtexec", FAKE_TRTEXEC), ("nvidia-smi", FAKE_NVIDIA_SMI)):
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    networks = [name for name, c in configs(repository).items()
                if c.platform == "tensorrt_plan"]
    plans = [repository / m / "1" / "model.plan" for m in networks]
    engines = len(networks)

    first = run_build_script(repository, tools, "NVIDIA H100 80GB HBM3")
    assert (first.returncode, first.builds) == (0, engines), first.output
    assert all(p.read_text() == "engine for NVIDIA H100 80GB HBM3" for p in plans)
    assert not list(repository.glob("*/1/*.part"))
    manifest = json.loads((repository / MANIFEST).read_text())
    assert manifest["gpu"] == "NVIDIA H100 80GB HBM3"
    assert manifest["tensorrt"] == "TensorRT v100500"

    again = run_build_script(repository, tools, "NVIDIA H100 80GB HBM3")
    assert (again.returncode, again.builds) == (0, 0), again.output
    assert "already built" in again.output

    other_gpu = run_build_script(repository, tools, "NVIDIA L4")
    assert (other_gpu.returncode, other_gpu.builds) == (0, engines), other_gpu.output
    assert json.loads((repository / MANIFEST).read_text())["gpu"] == "NVIDIA L4"

    with (repository / "swapper" / "1" / "model.onnx").open("ab") as onnx_file:
        onnx_file.write(b"\0")
    reexported = run_build_script(repository, tools, "NVIDIA L4")
    assert (reexported.returncode, reexported.builds) == (0, engines), reexported.output

    no_gpu = run_build_script(repository, tools, "")
    assert no_gpu.returncode != 0 and no_gpu.builds == 0
    assert "no GPU visible" in no_gpu.output


def test_onnxruntime_repository_is_complete_for_nvidia_container(
        onnxruntime_repository: Path) -> None:
    found = configs(onnxruntime_repository)
    assert set(found) >= {*NETWORKS, STABILIZER, ENSEMBLE, STREAM}
    for name, config in found.items():
        assert config.name == name
        folder = onnxruntime_repository / name
        assert (folder / "1").is_dir()
        if config.platform == "ensemble":
            continue
        spec = model_specs(2).get(name)
        if spec is not None and not spec.graph:  # a Python model (the NGC image ships it)
            assert config.backend == "python" and (folder / "1" / "model.py").is_file()
            if spec.streams:  # the tracker and the sampler import their shared module
                assert (folder / "1" / "stream_side.py").is_file()
            continue
        assert config.backend == "onnxruntime"
        assert all(g.kind != mc.ModelInstanceGroup.KIND_GPU for g in config.instance_group)
        graph = folder / "1" / config.default_model_filename
        assert graph.is_file()
        inputs = onnx_inputs(graph)
        assert list(inputs) == graph_inputs(config)
        for tensor in config.input:
            assert inputs[tensor.name][0] == ONNX_TYPES[mc.DataType.Name(tensor.data_type)]
        for state in config.sequence_batching.state:
            assert inputs[state.input_name][1][1:] == list(state.dims)
        if config.HasField("sequence_batching"):  # a warmup request has no sequence id
            assert not config.model_warmup
            continue
        assert config.model_warmup
        for sample in config.model_warmup:
            for value in sample.inputs.values():
                data = folder / WARMUP_FOLDER / value.input_data_file
                size = int(np.prod(value.dims)) * BYTES_PER_ITEM[mc.DataType.Name(value.data_type)]
                assert data.stat().st_size == size


@pytest.mark.parametrize("name", [ENSEMBLE, STREAM])
def test_onnxruntime_ensemble_steps_name_models_that_exist(onnxruntime_repository: Path,
                                                           name: str) -> None:
    found = configs(onnxruntime_repository)
    assert found[name].platform == "ensemble"
    check_ensemble(found, name)
