"""The `sampler` model: a stream's forgery scores, sampled instead of computed on every frame.

The checked stream's last step. The forgery detector (the `forensics` model) scores a stream's faces
on the frame's path only when a face has no score yet (a stream's first frame, a face new in its
slot); beside the path, a worker thread scores the stream's newest frame every `score_interval`
frames, and its scores join the stream two frames later (always that frame). Between samples each
slot carries its last score; an empty slot scores -1, as `forensics` says.

Per-stream state is bounded like the tracker's (`max_streams`, the sequence batcher's idle time).
Self-contained on purpose (NumPy and server/stream_side.py only): `swaptron export` copies this file
as the model's `model.py` for every target, with stream_side.py beside it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from stream_side import (
    Lookout,
    call_for,
    call_model,
    forget_idle,
    sequence_flags,
    stream_limit_refusal,
)


@dataclass
class Scored:
    """A stream's last scores, per face slot (-1: empty or not scored)."""

    scores: np.ndarray  # [K]
    since_sample: int
    last_seen: float


@dataclass
class Frame:
    """One request: its inputs, its stream, and its scores once known."""

    position: int
    inputs: dict[str, np.ndarray]
    stream: Any
    end: bool
    scores: np.ndarray | None = None  # [B,K]
    sampled: bool = False


class TritonPythonModel:
    """Scores on the path when a face has none, beside it every `score_interval` frames."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read the scoring model, the interval and the stream bounds from the config."""
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.model_name = args["model_name"]
        self.scorer = parameters["forensics"]
        self.interval = int(parameters["score_interval"])
        self.threshold = float(parameters["presence_threshold"])
        self.limit = int(parameters["max_streams"])
        idle_us = int(config["sequence_batching"].get("max_sequence_idle_microseconds", 0))
        self.idle_s = idle_us / 1e6 if idle_us else 10.0
        self.input_names = [spec["name"] for spec in config["input"]]  # FRAME, LANDMARKS, PRESENCE
        self.presence_input = self.input_names[2]
        self.score_output = config["output"][0]["name"]
        self.streams: dict[Any, Scored] = {}
        self.lookout = Lookout(self.score_beside)

    def execute(self, requests: list[Any]) -> list[Any]:
        """Answer each request; at most one frame per stream is in a call (sequence batcher)."""
        now = time.monotonic()
        forget_idle(self.streams, self.idle_s, now, self.lookout)
        responses: list[Any] = [None] * len(requests)
        frames: list[Frame] = []
        for position, request in enumerate(requests):
            start, end = sequence_flags(request)
            item = Frame(position, {name: pb_utils.get_input_tensor_by_name(request, name)
                                    .as_numpy() for name in self.input_names},
                         request.correlation_id(), end)
            if item.stream not in self.streams and len(self.streams) >= self.limit:
                responses[position] = stream_limit_refusal(self.model_name, self.limit,
                                                           self.idle_s)
                continue
            scored = None if start else self.streams.get(item.stream)
            if scored is not None:
                self.carry(item, scored)
            frames.append(item)
        self.score_on_path([item for item in frames if item.scores is None], responses)
        for item in frames:
            if responses[item.position] is None and item.scores is not None:
                responses[item.position] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor(self.score_output, item.scores.astype(np.float32))])
                self.keep(item, now)
        return responses

    def carry(self, item: Frame, scored: Scored) -> None:
        """Answer from the stream's carried scores (updated by a sample that came back), unless
        a face has no score yet or the request holds several frames; ask for a sample when it is
        time."""
        presence = item.inputs[self.presence_input]
        joined = self.lookout.joined(item.stream)
        if joined is not None:
            scored.scores = np.where(joined[0] >= 0, joined[0], scored.scores)
        present = presence[0] > self.threshold
        if presence.shape[0] != 1 or bool((present & (scored.scores < 0)).any()):
            return
        item.scores = np.where(present, scored.scores, -1.0)[None]
        item.sampled = joined is not None
        due = joined is None and scored.since_sample + 1 >= self.interval
        if due and not self.lookout.pending(item.stream):
            self.lookout.ask(item.stream, *(item.inputs[name] for name in self.input_names))

    def score_on_path(self, items: list[Frame], responses: list[Any]) -> None:
        """The forgery detector on these frames, one call per frame shape."""
        groups: dict[tuple[int, ...], list[Frame]] = {}
        for item in items:
            groups.setdefault(item.inputs[self.input_names[0]].shape[1:], []).append(item)
        for group in groups.values():
            inputs = {name: np.concatenate([item.inputs[name] for item in group])
                      for name in self.input_names}
            found = call_for([item.position for item in group], responses, self.scorer, inputs,
                             [self.score_output])
            if found is None:
                continue
            scores, start = found[self.score_output], 0
            for item in group:
                rows = item.inputs[self.input_names[0]].shape[0]
                item.scores, item.sampled = scores[start:start + rows], True
                start += rows

    def score_beside(self, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        """The forgery detector on one frame (the lookout's worker)."""
        found = call_model(self.scorer, dict(zip(self.input_names, inputs, strict=True)),
                           [self.score_output])
        return found[self.score_output]

    def keep(self, item: Frame, now: float) -> None:
        """Remember a stream's scores for its next frames, or forget it at its end."""
        if item.end:
            self.streams.pop(item.stream, None)
            self.lookout.forget(item.stream)
            return
        previous = self.streams.get(item.stream)
        since = 0 if item.sampled or previous is None else previous.since_sample + 1
        self.streams[item.stream] = Scored(item.scores[-1].copy(), since, now)

    def finalize(self) -> None:
        """Stop the lookout."""
        self.lookout.stop()
