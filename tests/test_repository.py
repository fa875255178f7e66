"""The generated model repositories: configs, ensemble wiring, TensorRT readiness, idempotence."""

from __future__ import annotations

from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from swaptron.assets import CHECKOUT
from swaptron.export.build import export_repository
from swaptron.export.repository import (
    MODEL_SHIM,
    ServingOptions,
    parse_config,
)
from swaptron.networks.pipeline import PipelineOptions
from swaptron.specs import (
    ENSEMBLE,
    FRAME,
    NETWORKS,
    RESET,
    STABILIZER,
    STREAM,
    model_specs,
)
from swaptron.wiring import ensembles

from config_checks import check_ensemble

COMMITTED = CHECKOUT / "model_repository"


def load_configs(repository: Path) -> dict[str, mc.ModelConfig]:
    """Every config.pbtxt of a repository, parsed."""
    return {path.parent.name: parse_config(path)
            for path in sorted(repository.glob("*/config.pbtxt"))}


def test_committed_configs_parse_and_wire_the_ensemble() -> None:
    configs = load_configs(COMMITTED)
    assert set(configs) >= {*NETWORKS, STABILIZER, ENSEMBLE, STREAM}
    for ensemble in ensembles(2, forensics=True):
        if ensemble.name in configs:
            check_ensemble(configs, ensemble.name)
    stabilizer = configs[STABILIZER].sequence_batching
    assert [c.name for c in stabilizer.control_input] == [RESET]
    assert int(configs[STABILIZER].parameters["max_streams"].string_value) >= 1
    for name in NETWORKS:
        config = configs[name]
        assert config.max_batch_size >= 8
        assert config.dynamic_batching.max_queue_delay_microseconds > 0
        assert list(config.dynamic_batching.preferred_batch_size)
        assert config.instance_group[0].count >= 1
        assert config.model_warmup[0].inputs[FRAME].dims == [528, 720, 3]
        # idle ONNX Runtime threads must sleep: spinning ones starve the other networks
        assert config.parameters["intra_op_spinning"].string_value == "0"


def test_committed_configs_are_what_export_generates(exported_repository: Path) -> None:
    for path in sorted(COMMITTED.glob("*/config.pbtxt")):
        generated = exported_repository / path.parent.name / "config.pbtxt"
        assert path.read_text() == generated.read_text(), (
            f"{path} is stale: run `swaptron export` and commit the configs")


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
        path = exported_repository / name / "1" / "model.onnx"
        if not path.is_file():  # forensics: only with a trained detector
            continue
        graph = onnx.load(str(path)).graph
        assert [i.name for i in graph.input] == spec.graph_input_names()
        assert [o.name for o in graph.output] == spec.graph_output_names()
        config = parse_config(exported_repository / name / "config.pbtxt")
        assert [t.name for t in config.input] == spec.input_names()
        assert [t.name for t in config.output] == spec.output_names()


def test_export_is_idempotent(exported_repository: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in exported_repository.rglob("*") if p.is_file()}
    report = export_repository(PipelineOptions(), ServingOptions(), exported_repository,
                               progress=lambda _: None)
    assert report.exported == []
    assert set(report.up_to_date) >= {*NETWORKS, STABILIZER}
    after = {p: p.stat().st_mtime_ns for p in exported_repository.rglob("*") if p.is_file()}
    assert after == before
