"""What the served models refuse before running: frames of the wrong rank, channels or size."""

from __future__ import annotations

import numpy as np
import pytest

from swaptron.export.repository import ServingOptions, model_config
from swaptron.server.ort_checks import (
    STUB_TARGET,
    config_parameters,
    frame_problem,
    stub_frame_limits,
)
from swaptron.specs import (
    FRAME,
    FRAME_LIMITS,
    FRAME_MAX_PIXELS,
    FRAME_MAX_SIDE,
    FRAME_MIN_SIDE,
    FrameLimits,
    model_specs,
)

LIMITS = FrameLimits(FRAME_MIN_SIDE, FRAME_MAX_SIDE, FRAME_MAX_PIXELS)


@pytest.mark.parametrize(("shape", "expected"), [
    ((1, 528, 720, 3), None),
    ((2, 64, 64, 3), None),
    ((1, 1080, 1920, 3), None),
    ((1, 1920, 1080, 3), None),
    ((1, 64, 64), "must be [H, W, 3]"),
    ((1, 64, 64, 4), "must be [H, W, 3]"),
    ((1, 0, 0, 3), "is 0x0 pixels"),
    ((1, 63, 640, 3), "is 640x63 pixels"),
    ((1, 1080, 1921, 3), "is 1921x1080 pixels"),
    ((1, 1200, 1920, 3), "is 1920x1200 pixels"),  # sides fine, too many pixels
])
def test_frame_problem(shape: tuple[int, ...], expected: str | None) -> None:
    problem = frame_problem(FRAME, np.zeros(shape, np.uint8), LIMITS)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem and problem.startswith(FRAME)


def test_config_parameters() -> None:
    config = {"parameters": {"onnx_file": {"string_value": "model.onnx"}}}
    assert config_parameters(config) == {"onnx_file": "model.onnx"}
    assert config_parameters({}) == {}


def test_each_target_refuses_by_its_own_limits() -> None:
    assert FRAME_LIMITS["python-ort"].rule_broken_by(1920, 1920) is not None
    assert FRAME_LIMITS["tensorrt"].rule_broken_by(1920, 1920) is None
    assert FRAME_LIMITS["tensorrt"].rule_broken_by(1921, 64) is not None
    assert FRAME_LIMITS["onnxruntime"].rule_broken_by(30000, 30000) is None
    assert FRAME_LIMITS["python-ort"].rule_broken_by(720, 528) is None


def test_the_stub_checks_the_specs_limits_that_its_configs_also_carry() -> None:
    limits = stub_frame_limits()
    assert limits is FRAME_LIMITS[STUB_TARGET]
    checked = []
    for spec in model_specs(2).values():
        config = model_config(spec, ServingOptions(target=STUB_TARGET), None)
        written = {key: value.string_value for key, value in config.parameters.items()}
        if written.get("frame_input") != FRAME:
            continue
        checked.append(spec.name)
        assert {key: written[f"frame_{key}"] for key in ("min_side", "max_side", "max_pixels")
                } == {"min_side": str(limits.min_side), "max_side": str(limits.max_side),
                      "max_pixels": str(limits.max_pixels)}, spec.name
    assert {spec.name for spec in model_specs(2).values()
            if spec.graph and spec.inputs[0].name == FRAME} == set(checked)
