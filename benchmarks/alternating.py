"""Two or more ONNX graphs timed side by side: one-thread sessions, rounds taking turns, so a
noisy machine moves every graph alike (benchmarks/scoring_cost.py, benchmarks/watermark.py)."""

from __future__ import annotations

import io
import statistics
import time

import numpy as np
import onnxruntime as ort
import torch

from swaptron import assets
from swaptron.networks.pipeline import build_finder
from swaptron.specs import FRAME, LANDMARKS, PRESENCE

INPUT_NAMES = (FRAME, LANDMARKS, PRESENCE)
WARMUP_RUNS = 3
OPSET = 17
DYNAMIC_AXES = {FRAME: {0: "b", 1: "h", 2: "w"}, LANDMARKS: {0: "b", 1: "k"},
                PRESENCE: {0: "b", 1: "k"}}


def anchor_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The demo video's anchor frame, its face's landmarks and presence (batch 1, one slot)."""
    frame = assets.read_frames(assets.demo_video(), [assets.ANCHOR_FRAME])[0][None]
    found = build_finder(1).find(frame)
    return (torch.from_numpy(frame), torch.from_numpy(found[LANDMARKS]),
            torch.from_numpy(found[PRESENCE]))


def one_thread_session(graph: bytes) -> ort.InferenceSession:
    """A CPU session on one thread (intra and inter op) for a serialised ONNX graph."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def exported_session(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...],
                     output_names: list[str], dynamic: bool = True) -> ort.InferenceSession:
    """A graph of FRAME, LANDMARKS and PRESENCE exported to ONNX (dynamic batch, frame size
    and slots unless `dynamic` is false), in a one-thread session."""
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module, inputs, buffer, dynamo=False, opset_version=OPSET,
                          input_names=list(INPUT_NAMES), output_names=output_names,
                          dynamic_axes=DYNAMIC_AXES if dynamic else None)
    return one_thread_session(buffer.getvalue())


def alternate(sessions: dict[str, ort.InferenceSession], feeds: dict[str, np.ndarray],
              rounds: int, runs: int) -> dict[str, list[float]]:
    """ms per call of each session, one figure per round of `runs` calls, the sessions taking
    turns after WARMUP_RUNS calls each."""
    for session in sessions.values():
        for _ in range(WARMUP_RUNS):
            session.run(None, feeds)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            started = time.perf_counter()
            for _ in range(runs):
                session.run(None, feeds)
            times[name].append((time.perf_counter() - started) / runs * 1000.0)
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    """Each session's median ms (3 decimals)."""
    return {name: round(statistics.median(values), 3) for name, values in times.items()}
