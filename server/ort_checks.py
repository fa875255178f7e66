"""What the served models check before they run a request, kept free of Triton's stub module
so that it can be tested (and reused) anywhere."""

from __future__ import annotations

from typing import Any

import numpy as np

from swaptron.specs import FrameLimits


def config_parameters(config: dict[str, Any]) -> dict[str, str]:
    """`parameters { key: ... value { string_value: ... } }` of a model config as a dict."""
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


def frame_problem(name: str, frame: np.ndarray, limits: dict[str, int]) -> str | None:
    """Why a batched frame tensor [B,H,W,3] cannot be served, or None when it can."""
    if frame.ndim != 4 or frame.shape[3] != 3:
        return f"{name} must be [H, W, 3] BGR per frame, got {list(frame.shape[1:])}"
    height, width = frame.shape[1], frame.shape[2]
    rule = FrameLimits(limits["min_side"], limits["max_side"],
                       limits["max_pixels"]).rule_broken_by(width, height)
    return None if rule is None else f"{name} is {width}x{height} pixels; {rule}"
