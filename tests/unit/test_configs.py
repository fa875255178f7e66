"""Config generation from the specs, for every target, without an export."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from swaptron.export.repository import ServingOptions, ensemble_config, model_config, render
from swaptron.specs import (
    DETECTOR,
    ENSEMBLE,
    FACES,
    FRAME,
    LANDMARKER,
    LANDMARKS,
    PUBLISHED_SUFFIX,
    faceswap_ensemble,
    model_specs,
)

from config_checks import check_ensemble


def parse_text(text: str) -> mc.ModelConfig:
    """Parse config text the way Triton does."""
    return text_format.Parse(text, mc.ModelConfig())


@pytest.mark.parametrize("target", ["python-ort", "onnxruntime", "tensorrt"])
def test_every_target_generates_parsable_configs_with_a_valid_ensemble(target: str) -> None:
    options = ServingOptions(target=target)
    specs = model_specs(3)
    warmup = {FRAME: np.zeros((1, 64, 64, 3), np.uint8)}
    configs = {name: mc.ModelConfig() for name in specs}
    for name, spec in specs.items():
        text = render(model_config(spec, options, warmup if name == DETECTOR else None))
        configs[name] = parse_text(text)
    configs[ENSEMBLE] = parse_text(render(ensemble_config(faceswap_ensemble(3))))
    check_ensemble(configs)
    expected = {"python-ort": ("python", ""), "onnxruntime": ("onnxruntime", ""),
                "tensorrt": ("", "tensorrt_plan")}[target]
    assert (configs[DETECTOR].backend, configs[DETECTOR].platform) == expected
    assert list(configs[LANDMARKER].output[0].dims) == [3, 468, 2]


def test_no_ensemble_output_feeds_a_later_step() -> None:
    """Triton 2.51 drops a requested output when it prunes every step that consumes it, so the
    ensemble's outputs come from published copies or from tensors nothing else reads."""
    ensemble = faceswap_ensemble(2)
    public = {tensor.name for tensor in ensemble.outputs}
    steps = ensemble.wiring()
    for position, step in enumerate(steps):
        produced_public = {value for value in step.output_map.values() if value in public}
        read_later = {value for later in steps[position + 1:] for value in later.input_map.values()}
        assert not produced_public & read_later, step.model
    copies = {name for step in steps for name in step.output_map if name.endswith(PUBLISHED_SUFFIX)}
    assert copies == {FACES + PUBLISHED_SUFFIX, LANDMARKS + PUBLISHED_SUFFIX}
