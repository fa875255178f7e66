"""Shared fixtures: real server repositories, real frames."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data

from swaptron import assets
from swaptron.export.build import export_repository
from swaptron.export.repository import ServingOptions
from swaptron.networks.pipeline import Pipeline, PipelineOptions, build_finder, build_pipeline
from swaptron.server.launcher import TritonServer, free_ports
from swaptron.specs import LANDMARKS, PRESENCE

from helpers import export_target

DOUBLE_CONFIG = """
name: "double"
backend: "python"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
dynamic_batching { max_queue_delay_microseconds: 500 preferred_batch_size: [ 4, 8 ] }
instance_group [ { kind: KIND_CPU count: 1 } ]
"""

DOUBLE_MODEL = '''
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * 2)]))
        return responses
'''

QUADRUPLE_CONFIG = """
name: "quadruple"
platform: "ensemble"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
ensemble_scheduling {
  step [
    { model_name: "double" model_version: -1
      input_map { key: "X" value: "X" } output_map { key: "Y" value: "twice" } },
    { model_name: "double" model_version: -1
      input_map { key: "X" value: "twice" } output_map { key: "Y" value: "Y" } }
  ]
}
"""


def write_model(repository: Path, name: str, config: str, model_py: str | None) -> None:
    """Write one model folder (`config.pbtxt` and `1/`, with `model.py` when given)."""
    version = repository / name / "1"
    version.mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(textwrap.dedent(config))
    if model_py is not None:
        (version / "model.py").write_text(textwrap.dedent(model_py))


@pytest.fixture
def tiny_repository(tmp_path: Path) -> Path:
    """A Python-backend model with dynamic batching and an ensemble of two of its steps."""
    repository = tmp_path / "repository"
    write_model(repository, "double", DOUBLE_CONFIG, DOUBLE_MODEL)
    write_model(repository, "quadruple", QUADRUPLE_CONFIG, None)
    return repository


@pytest.fixture(scope="session")
def megamind_frames() -> list[np.ndarray]:
    """Every frame of the demo video (BGR uint8)."""
    return assets.read_frames(assets.demo_video())


@pytest.fixture(scope="session")
def megamind_face() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Megamind's anchor frame, its face's landmarks (our finder's) and presence, batch 1."""
    frame = assets.read_frames(assets.demo_video(), [assets.ANCHOR_FRAME])[0]
    found = build_finder(1).find(frame[None])
    return (torch.from_numpy(frame[None]), torch.from_numpy(found[LANDMARKS]),
            torch.from_numpy(found[PRESENCE]))


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut.png as BGR uint8 (a real face)."""
    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


@pytest.fixture(scope="session")
def pipeline() -> Pipeline:
    """The three PyTorch modules as `swaptron export` builds them by default."""
    return build_pipeline(PipelineOptions())


@pytest.fixture(scope="session")
def exported_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A python-ort repository exported into a temp folder (the default export)."""
    repository = tmp_path_factory.mktemp("exported") / "repository"
    export_repository(PipelineOptions(), ServingOptions(), repository, progress=lambda _: None)
    return repository


@pytest.fixture(scope="session")
def tensorrt_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tensorrt-target repository (fixed-shape graphs, FP32) with its build_engines.sh."""
    return export_target(tmp_path_factory, "tensorrt")


@pytest.fixture(scope="module")
def faceswap_server(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[TritonServer]:
    """The embedded server on the exported repository, shared by a test module."""
    log = tmp_path_factory.mktemp("server") / "triton.log"
    with TritonServer(exported_repository, ports=free_ports(), log_path=log) as server:
        yield server
