"""The generated model repositories: configs, ensemble wiring, TensorRT readiness, idempotence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from swaptron.assets import REPO_ROOT
from swaptron.export.build import export_repository
from swaptron.export.pipeline import PipelineOptions
from swaptron.export.repository import (
    MODEL_SHIM,
    ServingOptions,
    ensemble_config,
    model_config,
    parse_config,
    render,
)
from swaptron.export.specs import ENSEMBLE, model_specs

COMMITTED = REPO_ROOT / "model_repository"


def load_configs(repository: Path) -> dict[str, mc.ModelConfig]:
    """Every config.pbtxt of a repository, parsed."""
    return {path.parent.name: parse_config(path)
            for path in sorted(repository.glob("*/config.pbtxt"))}


def check_ensemble(configs: dict[str, mc.ModelConfig]) -> None:
    """Each step maps exactly its model's inputs and only its outputs, in a valid order."""
    ensemble = configs[ENSEMBLE]
    available = {tensor.name for tensor in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        assert set(step.input_map) == {t.name for t in model.input}, step.model_name
        assert set(step.output_map) <= {t.name for t in model.output}, step.model_name
        assert set(step.input_map.values()) <= available, step.model_name
        for name, value in step.output_map.items():
            produced = next(t for t in model.output if t.name == name)
            for output in ensemble.output:
                if output.name == value:
                    assert output.data_type == produced.data_type
                    dims = list(output.dims)[1:] if ensemble.max_batch_size == 0 else output.dims
                    assert list(dims) == list(produced.dims)
        available |= set(step.output_map.values())
    assert {t.name for t in ensemble.output} <= available
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        for name, value in step.input_map.items():
            wanted = next(t for t in model.input if t.name == name)
            source = [t for t in ensemble.input if t.name == value]
            if source:
                assert source[0].data_type == wanted.data_type


def test_committed_configs_parse_and_wire_the_ensemble() -> None:
    configs = load_configs(COMMITTED)
    assert set(configs) == {"detector", "landmarker", "swapper", ENSEMBLE}
    check_ensemble(configs)
    for name in ("detector", "landmarker", "swapper"):
        config = configs[name]
        assert config.max_batch_size >= 8
        assert config.dynamic_batching.max_queue_delay_microseconds > 0
        assert list(config.dynamic_batching.preferred_batch_size)
        assert config.instance_group[0].count >= 1
        assert config.model_warmup[0].inputs["FRAME"].dims == [528, 720, 3]
        # idle ONNX Runtime threads must sleep: spinning ones starve the other networks
        assert config.parameters["intra_op_spinning"].string_value == "0"


def test_committed_configs_are_what_export_generates(exported_repository: Path) -> None:
    for path in sorted(COMMITTED.glob("*/config.pbtxt")):
        generated = exported_repository / path.parent.name / "config.pbtxt"
        assert path.read_text() == generated.read_text(), (
            f"{path} is stale: run `swaptron export` and commit the configs")


@pytest.mark.parametrize("target", ["python-ort", "onnxruntime", "tensorrt"])
def test_every_target_generates_parsable_configs_with_a_valid_ensemble(target: str) -> None:
    options = ServingOptions(target=target)
    specs = model_specs(3)
    warmup = {"FRAME": np.zeros((1, 64, 64, 3), np.uint8)}
    configs = {name: mc.ModelConfig() for name in specs}
    for name, spec in specs.items():
        text = render(model_config(spec, options, warmup if name == "detector" else None))
        configs[name] = parse_text(text)
    configs[ENSEMBLE] = parse_text(render(ensemble_config(3, options)))
    check_ensemble(configs)
    expected = {"python-ort": ("python", ""), "onnxruntime": ("onnxruntime", ""),
                "tensorrt": ("", "tensorrt_plan")}[target]
    assert (configs["detector"].backend, configs["detector"].platform) == expected
    assert list(configs["landmarker"].output[0].dims) == [3, 468, 2]


def parse_text(text: str) -> mc.ModelConfig:
    """Parse config text the way Triton does."""
    from google.protobuf import text_format

    return text_format.Parse(text, mc.ModelConfig())


def test_exported_repository_is_complete(exported_repository: Path) -> None:
    for name in ("detector", "landmarker", "swapper"):
        folder = exported_repository / name
        assert (folder / "1" / "model.onnx").stat().st_size > 100_000
        assert (folder / "1" / "model.py").read_text() == MODEL_SHIM
        for tensor in parse_config(folder / "config.pbtxt").input:
            assert (folder / "warmup" / tensor.name).is_file()
    frame = (exported_repository / "detector" / "warmup" / "FRAME").read_bytes()
    assert len(frame) == 528 * 720 * 3
    assert (exported_repository / ENSEMBLE / "1").is_dir()


def test_graph_tensors_are_named_as_the_configs(exported_repository: Path) -> None:
    import onnx

    for name, spec in model_specs(2).items():
        graph = onnx.load(str(exported_repository / name / "1" / "model.onnx")).graph
        assert [i.name for i in graph.input] == spec.input_names()
        assert [o.name for o in graph.output] == spec.output_names()


def test_export_is_idempotent(exported_repository: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in exported_repository.rglob("*") if p.is_file()}
    report = export_repository(PipelineOptions(), ServingOptions(), exported_repository,
                               progress=lambda _: None)
    assert report.exported == []
    assert report.up_to_date == ["detector", "landmarker", "swapper"]
    after = {p: p.stat().st_mtime_ns for p in exported_repository.rglob("*") if p.is_file()}
    assert after == before
