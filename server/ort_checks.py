"""What the served models check before they run a request, kept free of Triton's stub module
so that it can be tested (and reused) anywhere."""

from __future__ import annotations

from typing import Any

import numpy as np

from swaptron.specs import FRAME_LIMITS, FrameLimits

STUB_TARGET = "python-ort"  # the one target whose networks server/ort_model.py serves


def config_parameters(config: dict[str, Any]) -> dict[str, str]:
    """`parameters { key: ... value { string_value: ... } }` of a model config as a dict."""
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


def stub_frame_limits() -> FrameLimits:
    """The frame limits the stub checks: its target's in the specs (the config's `frame_*`
    parameters, written from the same table, are for readers of the config)."""
    return FRAME_LIMITS[STUB_TARGET]


def frame_problem(name: str, frame: np.ndarray, limits: FrameLimits) -> str | None:
    """Why a batched frame tensor [B,H,W,3] cannot be served, or None when it can."""
    if frame.ndim != 4 or frame.shape[3] != 3:
        return f"{name} must be [H, W, 3] BGR per frame, got {list(frame.shape[1:])}"
    height, width = frame.shape[1], frame.shape[2]
    rule = limits.rule_broken_by(width, height)
    return None if rule is None else f"{name} is {width}x{height} pixels; {rule}"
