"""The `dfm_router` model: the swap step of the ensembles when DFM models are exported.

It takes the swapper's inputs (FRAME, LANDMARKS, PRESENCE, TARGET, LARGEST_ONLY) and the
selector's MORPH, and answers SWAPPED (and its published copy). Each frame goes where its TARGET
points, by BLS: a native identity (TARGET below the swapper's identity count) to the swapper,
unchanged; a DFM identity to its crop graph, to the DFM model on the crops of the slots to swap
only, then to its merge graph. So a frame runs only the model its identity names, and a native
frame's cost does not grow with the number of DFMs. A called model's error answers the request
it belongs to and nothing else. Names of models and tensors come from the config's `routes`
parameter, which the export writes from the specs.

Self-contained on purpose (NumPy, Triton's stub module and stream_side.py, copied beside it by
`swaptron export`), so it runs unchanged in NVIDIA's container.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from stream_side import StepFailedError, call_model


def group_rows(targets: np.ndarray) -> dict[int, np.ndarray]:
    """Row indices of a request's frames per TARGET value."""
    return {int(value): np.flatnonzero(targets == value) for value in np.unique(targets)}


class TritonPythonModel:
    """Routes each frame to the swapper or to one DFM's crop, model and merge."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read the routes and the tensor names from the config."""
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.model_name = args["model_name"]
        self.routes = json.loads(parameters["routes"])
        self.inputs = [spec["name"] for spec in config["input"]]
        self.outputs = [spec["name"] for spec in config["output"]]
        (self.frame, self.landmarks, self.presence, self.target, self.largest,
         self.morph) = self.inputs

    def native(self, tensors: dict[str, np.ndarray]) -> np.ndarray:
        """SWAPPED of frames for native identities: the swapper's answer."""
        names = self.inputs[:5]
        swapped = self.routes["swapped"]
        return call_model(self.routes["swapper"], {n: tensors[n] for n in names},
                          [swapped])[swapped]

    def dfm(self, route: dict[str, Any], tensors: dict[str, np.ndarray]) -> np.ndarray:
        """SWAPPED of frames for one DFM identity: crop, the model on the kept crops, merge."""
        faces, matrices, valid = route["crop_outputs"]
        crop = call_model(route["crop"], dict(zip(route["crop_inputs"], (
            tensors[self.frame], tensors[self.landmarks], tensors[self.presence],
            tensors[self.largest]), strict=True)), route["crop_outputs"])
        keep = crop[valid] > 0.5  # [B,K]
        frame = tensors[self.frame]
        if not keep.any():
            return frame
        crops = crop[faces][keep]  # [N,R,R,3]
        feed = {route["model_inputs"][0]: np.ascontiguousarray(crops)}
        if route["morph"]:
            rows = np.nonzero(keep)[0]
            feed[route["model_inputs"][1]] = tensors[self.morph][rows].astype(np.float32)
        answered = call_model(route["model"], feed, route["model_outputs"])
        layers = {}
        for name, merged_name in zip(route["model_outputs"], route["merge_layers"], strict=True):
            result = answered[name]
            full = np.zeros((*keep.shape, *result.shape[1:]), np.float32)
            full[keep] = result
            layers[merged_name] = full
        merge = call_model(route["merge"], {route["merge_inputs"][0]: frame, **layers,
                                            route["merge_inputs"][-2]: crop[matrices],
                                            route["merge_inputs"][-1]: crop[valid]},
                           [self.routes["swapped"]])
        return merge[self.routes["swapped"]]

    def swap(self, request: Any) -> np.ndarray:
        """SWAPPED of one request, its frames grouped by identity."""
        tensors = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                   for name in self.inputs}
        targets = tensors[self.target].reshape(-1)
        swapped = np.empty_like(tensors[self.frame])
        for target, rows in group_rows(targets).items():
            part = {name: value[rows] for name, value in tensors.items()}
            if target < self.routes["native"]:
                swapped[rows] = self.native(part)
            else:
                swapped[rows] = self.dfm(self.routes["dfms"][target - self.routes["native"]],
                                         part)
        return swapped

    def execute(self, requests: list[Any]) -> list[Any]:
        """One answer per request; a failed call answers its own request with the error."""
        responses = []
        for request in requests:
            try:
                swapped = self.swap(request)
            except StepFailedError as error:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"{self.model_name}: {error}", error.code)))
                continue
            wanted = request.requested_output_names() or self.outputs
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, swapped) for name in wanted]))
        return responses
