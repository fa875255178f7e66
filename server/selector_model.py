"""The `selector` model: a swap request's named choices as the indices the swapper graph takes.

IDENTITY (optional, one name per frame) becomes TARGET, the index of that identity's decoder in
the swapper; WHICH_FACES (optional: "all", the default, or "largest") becomes LARGEST_ONLY; FACES
passes through (the landmarker waits for it, so nothing else of a refused request is running).
With DFM models (a fourth input, MORPH, optional, one value per frame in 0..1) the morph value
passes on to the router, the config's `default_morph` where a frame has none. An
unknown name gets INVALID_ARGUMENT naming the choices (an identity in the contract's words:
swaptron/refusals.py), and only its own request fails. The identities, in decoder order, and the
default one come from the config's parameters, which the export writes from the weights.

Self-contained on purpose (NumPy, Triton's stub module and swaptron/refusals.py only): `swaptron
export` copies this file as the model's `model.py` for every target, with refusals.py beside it,
so it runs unchanged in NVIDIA's container, where the swaptron package is not installed.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from refusals import identity_refusal, shown


class RefusedError(ValueError):
    """A request named something unknown; the message says what is known."""


def names(request: Any, input_name: str, rows: int) -> list[str | None]:
    """One name per frame of an optional BYTES input, None where it is absent."""
    tensor = pb_utils.get_input_tensor_by_name(request, input_name)
    if tensor is None:
        return [None] * rows
    values = tensor.as_numpy().reshape(-1)
    if len(values) != rows:
        raise RefusedError(f"{input_name} must hold one name per frame ({rows}), got {len(values)}")
    found: list[str | None] = []
    for value in values:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        found.append(text.strip())
    return found


class TritonPythonModel:
    """Maps IDENTITY and WHICH_FACES to TARGET and LARGEST_ONLY."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read the identities and the default from the config."""
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.model_name = args["model_name"]
        self.identities = parameters["identities"].split(",")
        self.default = parameters["default_identity"]
        self.face_choices = parameters["face_choices"].split(",")  # the default first
        inputs = [spec["name"] for spec in config["input"]]
        self.faces_input, self.identity_input, self.which_input = inputs[:3]
        self.morph_input = inputs[3] if len(inputs) > 3 else None  # DFM models only
        self.default_morph = float(parameters.get("default_morph", "0"))
        outputs = [spec["name"] for spec in config["output"]]
        self.target_output, self.largest_output = outputs[:2]
        # FACES and its published copy: the input, passed through (MORPH: the chosen values)
        self.copies = [name for name in outputs[2:] if name != self.morph_input]

    def choose(self, request: Any) -> tuple[np.ndarray, np.ndarray]:
        """TARGET and LARGEST_ONLY [B,1] of one request; RefusedError for an unknown name."""
        rows = pb_utils.get_input_tensor_by_name(request, self.faces_input).as_numpy().shape[0]
        targets, largest = [], []
        for identity in names(request, self.identity_input, rows):
            identity = identity or self.default
            refusal = identity_refusal(identity, self.identities, self.default,
                                       self.identity_input)
            if refusal is not None:
                raise RefusedError(refusal)
            targets.append(self.identities.index(identity))
        for which in names(request, self.which_input, rows):
            which = which or self.face_choices[0]
            if which not in self.face_choices:
                raise RefusedError(f"unknown {self.which_input} {shown(which)}; choose "
                              f"{' or '.join(self.face_choices)} (default "
                              f"{self.face_choices[0]})")
            largest.append(self.face_choices.index(which))
        return (np.array(targets, np.int32).reshape(rows, 1),
                np.array(largest, np.int32).reshape(rows, 1))

    def morph(self, request: Any, rows: int) -> np.ndarray:
        """MORPH [B,1] float32: the request's values, the default where absent; RefusedError
        for a value outside 0..1 or a count that is not one per frame."""
        tensor = pb_utils.get_input_tensor_by_name(request, self.morph_input)
        if tensor is None:
            return np.full((rows, 1), self.default_morph, np.float32)
        values = tensor.as_numpy().astype(np.float32).reshape(-1)
        if len(values) != rows or not np.all((values >= 0.0) & (values <= 1.0)):
            raise RefusedError(f"{self.morph_input} must hold one value in 0..1 per frame "
                               f"({rows}), got {values.tolist()}")
        return values.reshape(rows, 1)

    def execute(self, requests: list[Any]) -> list[Any]:
        """One answer per request; a bad one gets its error, the others their indices."""
        responses = []
        for request in requests:
            try:
                target, largest = self.choose(request)
            except RefusedError as error:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"{self.model_name}: {error}", pb_utils.TritonError.INVALID_ARG)))
                continue
            faces = pb_utils.get_input_tensor_by_name(request, self.faces_input).as_numpy()
            values = {self.target_output: target, self.largest_output: largest,
                      **dict.fromkeys(self.copies, faces)}
            if self.morph_input is not None:
                try:
                    values[self.morph_input] = self.morph(request, len(target))
                except RefusedError as error:
                    responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                        f"{self.model_name}: {error}", pb_utils.TritonError.INVALID_ARG)))
                    continue
            wanted = request.requested_output_names() or values
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, values[name]) for name in wanted]))
        return responses
