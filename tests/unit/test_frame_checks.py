"""What the served models refuse before running: frames of the wrong rank, channels or size."""

from __future__ import annotations

import numpy as np
import pytest

from swaptron.server.ort_checks import config_parameters, frame_problem
from swaptron.specs import FRAME, FRAME_MAX_PIXELS, FRAME_MAX_SIDE, FRAME_MIN_SIDE

LIMITS = {"min_side": FRAME_MIN_SIDE, "max_side": FRAME_MAX_SIDE, "max_pixels": FRAME_MAX_PIXELS}


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
    from swaptron.specs import FRAME_LIMITS

    assert FRAME_LIMITS["python-ort"].rule_broken_by(1920, 1920) is not None
    assert FRAME_LIMITS["tensorrt"].rule_broken_by(1920, 1920) is None
    assert FRAME_LIMITS["tensorrt"].rule_broken_by(1921, 64) is not None
    assert FRAME_LIMITS["onnxruntime"].rule_broken_by(30000, 30000) is None
    assert FRAME_LIMITS["python-ort"].rule_broken_by(720, 528) is None
