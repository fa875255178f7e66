"""Generic Triton Python-backend model that serves one ONNX graph with ONNX Runtime.

Every network of the `python-ort` repository uses this class (its `1/model.py` imports it); the
model's `config.pbtxt` parameters say which file to load and how many threads to use. Requests
the dynamic batcher groups together run as one ONNX Runtime call. A request with a bad frame gets
an error naming the problem while the rest of the batch is served.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException

from swaptron.server.ort_checks import config_parameters, frame_problem
from swaptron.server.ort_session import cpu_session

ORT_ERRORS = (Fail, InvalidArgument, RuntimeException)


@dataclass(frozen=True)
class Member:
    """One request of a batch group: where its response goes, its inputs, what it wants."""

    position: int
    arrays: dict[str, np.ndarray]
    wanted: list[str]


class TritonPythonModel:
    """Hosts one ONNX Runtime session built once in `initialize`."""

    def initialize(self, args: dict[str, str]) -> None:
        """Build the session from the `onnx_file` parameter of the model config."""
        config = json.loads(args["model_config"])
        parameters = config_parameters(config)
        self.model_name = args["model_name"]
        folder = Path(args["model_repository"]) / args["model_version"]
        self.session = cpu_session(folder / parameters["onnx_file"],
                                   int(parameters.get("intra_op_threads", "1")),
                                   parameters.get("intra_op_spinning", "0") == "1")
        self.input_names = [spec["name"] for spec in config["input"]]
        self.output_names = [spec["name"] for spec in config["output"]]
        self.output_types = {spec["name"]: pb_utils.triton_string_to_numpy(spec["data_type"])
                             for spec in config["output"]}
        self.frame_input = parameters.get("frame_input")
        self.frame_limits = {key: int(parameters[f"frame_{key}"])
                             for key in ("min_side", "max_side", "max_pixels")
                             if f"frame_{key}" in parameters}

    def execute(self, requests: list[Any]) -> list[Any]:
        """Validate each request, run same-shaped requests as one batch, split the answers.

        Each request gets the outputs it asked for (in an ensemble, the ones the ensemble
        maps): a published copy nobody asked for is neither computed nor sent.
        """
        responses: list[Any] = [None] * len(requests)
        groups: dict[tuple[tuple[int, ...], ...], list[Member]] = defaultdict(list)
        for position, request in enumerate(requests):
            arrays = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                      for name in self.input_names}
            problem = self.check(arrays)
            if problem is not None:
                responses[position] = pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"{self.model_name}: {problem}", pb_utils.TritonError.INVALID_ARG))
                continue
            key = tuple(arrays[name].shape[1:] for name in self.input_names)
            wanted = [name for name in self.output_names
                      if name in set(request.requested_output_names())] or self.output_names
            groups[key].append(Member(position, arrays, wanted))
        for members in groups.values():
            self.run_group(members, responses)
        return responses

    def check(self, arrays: dict[str, np.ndarray]) -> str | None:
        """The problem with a request's inputs, if any."""
        if self.frame_input is None or not self.frame_limits:
            return None
        return frame_problem(self.frame_input, arrays[self.frame_input], self.frame_limits)

    def run_group(self, members: list[Member], responses: list[Any]) -> None:
        """One ONNX Runtime call for requests of one shape; fills their responses."""
        feeds = {name: np.concatenate([m.arrays[name] for m in members])
                 if len(members) > 1 else members[0].arrays[name] for name in self.input_names}
        wanted = {name for m in members for name in m.wanted}
        names = [name for name in self.output_names if name in wanted]
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
            start += count

    def finalize(self) -> None:
        """Release the session."""
        self.session = None
