"""Generic Triton Python-backend model that serves one ONNX graph with ONNX Runtime.

Every network of the `python-ort` repository uses this class (its `1/model.py` imports it); the
model's `config.pbtxt` parameters say which file to load, how many threads to use and which input
is the frame, whose size it checks by the specs' limits (swaptron.specs.FRAME_LIMITS). Requests
the dynamic batcher groups together run as one ONNX Runtime call. A request with a bad frame gets
an error naming the problem while the rest of the batch is served.

A stateful network (the stabilizer) is served by the sequence batcher: each request belongs to a
stream (its correlation id), the graph's state inputs are fed from that stream's last state
(server/stream_states.py) and its next states are kept for the stream's next frame.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException

from swaptron.server.ort_checks import config_parameters, frame_problem, stub_frame_limits
from swaptron.server.ort_session import cpu_session
from swaptron.server.stream_states import StreamLimitError, StreamStates, rounds

ORT_ERRORS = (Fail, InvalidArgument, RuntimeException)


@dataclass(frozen=True)
class Member:
    """One request of a batch group: where its response goes, its inputs, what it wants."""

    position: int
    arrays: dict[str, np.ndarray]
    wanted: list[str]
    stream: object = None  # the correlation id, for a stateful network
    end: bool = False  # the stream's last frame


class TritonPythonModel:
    """Hosts one ONNX Runtime session built once in `initialize`."""

    def initialize(self, args: dict[str, str]) -> None:
        """Build the session from the `onnx_file` parameter of the model config."""
        config = json.loads(args["model_config"])
        parameters = config_parameters(config)
        self.model_name = args["model_name"]
        if "nice" in parameters:  # this stub serves this model alone
            os.nice(int(parameters["nice"]))
        folder = Path(args["model_repository"]) / args["model_version"]
        self.session = cpu_session(folder / parameters["onnx_file"],
                                   int(parameters.get("intra_op_threads", "1")),
                                   parameters.get("intra_op_spinning", "0") == "1")
        self.input_names = [spec["name"] for spec in config["input"]]
        self.output_names = [spec["name"] for spec in config["output"]]
        self.output_types = {spec["name"]: pb_utils.triton_string_to_numpy(spec["data_type"])
                             for spec in config["output"]}
        self.frame_input = parameters.get("frame_input")  # the input whose size is checked
        self.frame_limits = stub_frame_limits()
        self.state_pairs = dict(pair.split(":") for pair in parameters["states"].split(",")
                                ) if parameters.get("states") else {}
        self.streams = self.stream_states(config, parameters) if self.state_pairs else None
        controls = config.get("sequence_batching", {}).get("control_input", [])
        self.reset_input = controls[0]["name"] if controls else None

    def stream_states(self, config: dict[str, Any], parameters: dict[str, str]) -> StreamStates:
        """The state table of a stateful network: zeros shaped like the graph's state inputs,
        the stream limit, and the sequence batcher's idle time."""
        shapes = {item.name: item.shape[1:] for item in self.session.get_inputs()}
        zeros = {name: np.zeros((1, *shapes[name]), np.float32) for name in self.state_pairs}
        idle_us = int(config["sequence_batching"].get("max_sequence_idle_microseconds", 0))
        return StreamStates(self.model_name, zeros, int(parameters["max_streams"]),
                            idle_us / 1e6 if idle_us else 1.0)

    def execute(self, requests: list[Any]) -> list[Any]:
        """Validate each request, run same-shaped requests as one batch, split the answers.

        Each request gets the outputs it asked for (in an ensemble, the ones the ensemble
        maps): a published copy nobody asked for is neither computed nor sent.
        """
        responses: list[Any] = [None] * len(requests)
        if self.streams is None:
            self.serve(requests, range(len(requests)), responses)
            return responses
        for positions in rounds([request.correlation_id() for request in requests]):
            self.serve(requests, positions, responses)
        return responses

    def serve(self, requests: list[Any], positions: range | list[int],
              responses: list[Any]) -> None:
        """Answer the requests at `positions` (at most one per stream)."""
        groups: dict[tuple[tuple[int, ...], ...], list[Member]] = defaultdict(list)
        for position in positions:
            request = requests[position]
            arrays = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                      for name in self.input_names}
            problem = self.check(arrays)
            if problem is not None:
                responses[position] = pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"{self.model_name}: {problem}", pb_utils.TritonError.INVALID_ARG))
                continue
            wanted = [name for name in self.output_names
                      if name in set(request.requested_output_names())] or self.output_names
            member = Member(position, arrays, wanted)
            if self.streams is not None:
                try:
                    member = self.with_state(request, member)
                except StreamLimitError as error:
                    responses[position] = pb_utils.InferenceResponse(error=pb_utils.TritonError(
                        str(error), pb_utils.TritonError.UNAVAILABLE))
                    continue
            key = tuple(member.arrays[name].shape[1:] for name in self.input_names)
            groups[key].append(member)
        for members in groups.values():
            self.run_group(members, responses)

    def with_state(self, request: Any, member: Member) -> Member:
        """The member with its stream's state and RESET among its inputs."""
        flags = request.flags()
        start = bool(flags & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START)
        stream = request.correlation_id()
        states, fresh = self.streams.before(stream, start, time.monotonic())
        arrays = {**member.arrays, **states}
        if self.reset_input is not None:
            arrays[self.reset_input] = np.full((1, 1), 1.0 if fresh else 0.0, np.float32)
        end = bool(flags & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END)
        return Member(member.position, arrays, member.wanted, stream, end)

    def check(self, arrays: dict[str, np.ndarray]) -> str | None:
        """The problem with a request's inputs, if any."""
        if self.frame_input is None:
            return None
        return frame_problem(self.frame_input, arrays[self.frame_input], self.frame_limits)

    def run_group(self, members: list[Member], responses: list[Any]) -> None:
        """One ONNX Runtime call for requests of one shape; fills their responses."""
        feeds = {name: np.concatenate([m.arrays[name] for m in members])
                 if len(members) > 1 else members[0].arrays[name] for name in members[0].arrays}
        wanted = {name for m in members for name in m.wanted}
        names = [name for name in self.output_names if name in wanted]
        names += list(self.state_pairs.values())
        try:
            results = dict(zip(names, self.session.run(names, feeds), strict=True))
        except ORT_ERRORS as error:
            failure = pb_utils.TritonError(f"{self.model_name}: inference failed: {error}")
            for member in members:
                responses[member.position] = pb_utils.InferenceResponse(error=failure)
            return
        start = 0
        for member in members:
            count = member.arrays[self.input_names[0]].shape[0]
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(
                           results[name][start:start + count], dtype=self.output_types[name]))
                       for name in member.wanted]
            responses[member.position] = pb_utils.InferenceResponse(output_tensors=tensors)
            if self.streams is not None:
                self.streams.after(member.stream, {
                    before: results[after][start:start + count].copy()
                    for before, after in self.state_pairs.items()}, member.end, time.monotonic())
            start += count

    def finalize(self) -> None:
        """Release the session."""
        self.session = None
