"""The `dfm_router` model: the swap step of the ensembles when DFM models are exported.

It takes the swapper's inputs (FRAME, LANDMARKS, PRESENCE, TARGET, LARGEST_ONLY) and the
selector's MORPH, and answers SWAPPED (and its published copy). Each frame goes where its TARGET
points, by BLS: a native identity (TARGET below the swapper's identity count) to the swapper,
unchanged; a DFM identity to its crop graph, to the DFM model on the crops of the slots to swap
only, then to its merge graph. So a frame runs only the model its identity names, and a native
frame's cost does not grow with the number of DFMs.

The frames of all the requests of one `execute` (the dynamic batcher's batch) are batched
across requests: one swapper call per frame shape for the native frames, and per DFM one crop
and one merge call per frame shape and one model call for all its kept crops (an AMP model: one
per morph value, since it reads one morph per call). A called model's error answers the requests
whose frames were in that call, and nothing else. Names of models and tensors come from the
config's `routes` parameter, which the export writes from the specs.

Self-contained on purpose (NumPy, Triton's stub module and stream_side.py, copied beside it by
`swaptron export`), so it runs unchanged in NVIDIA's container.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from stream_side import StepFailedError, call_model

Part = tuple[int, np.ndarray]  # (request's position in the batch, its rows with one TARGET)


@dataclass
class Group:
    """Rows of several requests, one frame shape, with their tensors stacked in part order."""

    parts: list[Part]
    tensors: dict[str, np.ndarray]
    crop: dict[str, np.ndarray] = field(default_factory=dict)  # the crop graph's answer
    layers: dict[str, np.ndarray] = field(default_factory=dict)  # the DFM's, per slot

    def owners(self) -> np.ndarray:
        """The request of each row."""
        return np.concatenate([np.full(len(rows), request) for request, rows in self.parts])

    def requests(self) -> set[int]:
        """The requests with rows in the group."""
        return {request for request, _ in self.parts}

    def without(self, failed: dict[int, StepFailedError]) -> Group | None:
        """The group less the rows of failed requests; None when none is left."""
        if not self.requests() & failed.keys():
            return self
        return self.select(~np.isin(self.owners(), list(failed)))

    def select(self, chosen: np.ndarray) -> Group | None:
        """The group's chosen rows (bool per row); None when none is chosen."""
        parts, start = [], 0
        for request, rows in self.parts:
            kept = rows[chosen[start:start + len(rows)]]
            start += len(rows)
            if len(kept):
                parts.append((request, kept))
        if not parts:
            return None
        return Group(parts, *({name: value[chosen] for name, value in tensors.items()}
                              for tensors in (self.tensors, self.crop, self.layers)))


def group_rows(targets: np.ndarray) -> dict[int, np.ndarray]:
    """Row indices of a request's frames per TARGET value."""
    return {int(value): np.flatnonzero(targets == value) for value in np.unique(targets)}


def by_shape(parts: list[Part], batches: list[dict[str, np.ndarray]], frame: str
             ) -> list[list[Part]]:
    """Parts grouped by their requests' frame shape [H,W,3] (only equal shapes stack)."""
    shapes: dict[tuple[int, ...], list[Part]] = {}
    for part in parts:
        shapes.setdefault(batches[part[0]][frame].shape[1:], []).append(part)
    return list(shapes.values())


def gather(parts: list[Part], batches: list[dict[str, np.ndarray]], names: list[str]) -> Group:
    """The parts' rows of the named tensors, stacked."""
    return Group(parts, {name: np.concatenate([batches[request][name][rows]
                                               for request, rows in parts])
                         for name in names})


def scatter(group: Group, result: np.ndarray, swapped: list[np.ndarray]) -> None:
    """Write a group's SWAPPED rows back to their requests."""
    start = 0
    for request, rows in group.parts:
        swapped[request][rows] = result[start:start + len(rows)]
        start += len(rows)


def morph_calls(morphs: np.ndarray, amp: bool) -> list[np.ndarray]:
    """Crop indices per model call: all in one, or for an AMP model one call per morph value
    (its graph reads the first row's morph for the whole batch)."""
    if not amp:
        return [np.arange(len(morphs))]
    values, inverse = np.unique(morphs.reshape(-1), return_inverse=True)
    return [np.flatnonzero(inverse == index) for index in range(len(values))]


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

    def attempt(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str],
                requests: set[int], failed: dict[int, StepFailedError]
                ) -> dict[str, np.ndarray] | None:
        """One BLS call for `requests`; when it fails, each of them is marked failed with the
        error and None is returned."""
        try:
            return call_model(model, inputs, outputs)
        except StepFailedError as error:
            for request in requests:
                failed.setdefault(request, error)
            return None

    def native(self, parts: list[Part], batches: list[dict[str, np.ndarray]],
               swapped: list[np.ndarray], failed: dict[int, StepFailedError]) -> None:
        """SWAPPED of native identities' frames: one swapper call per frame shape."""
        name = self.routes["swapped"]
        for shape_parts in by_shape(parts, batches, self.frame):
            group = gather(shape_parts, batches, self.inputs[:5])
            answer = self.attempt(self.routes["swapper"], group.tensors, [name],
                                  group.requests(), failed)
            if answer is not None:
                scatter(group, answer[name], swapped)

    def dfm(self, route: dict[str, Any], parts: list[Part],
            batches: list[dict[str, np.ndarray]], swapped: list[np.ndarray],
            failed: dict[int, StepFailedError]) -> None:
        """SWAPPED of one DFM identity's frames: crop per frame shape, the model on all kept
        crops, merge per frame shape."""
        groups = []
        for shape_parts in by_shape(parts, batches, self.frame):
            group = gather(shape_parts, batches, self.inputs)
            crop = self.attempt(route["crop"], dict(zip(route["crop_inputs"], (
                group.tensors[self.frame], group.tensors[self.landmarks],
                group.tensors[self.presence], group.tensors[self.largest]), strict=True)),
                route["crop_outputs"], group.requests(), failed)
            if crop is not None:
                group.crop = crop
                groups.append(group)
        self.run_model(route, groups, failed)
        for cropped in groups:
            group = cropped.without(failed)
            if group is not None:
                self.merge(route, group, swapped, failed)

    def run_model(self, route: dict[str, Any], groups: list[Group],
                  failed: dict[int, StepFailedError]) -> None:
        """The DFM model on the kept crops of all groups (one call, or one per morph value);
        sets each group's `layers`: the model's outputs per slot [B,K,R,R,C], zero where no
        crop was kept or its call failed."""
        faces, _, valid = route["crop_outputs"]
        keeps = [group.crop[valid] > 0.5 for group in groups]
        if not any(keep.any() for keep in keeps):
            return
        crops = np.concatenate([group.crop[faces][keep] for group, keep in zip(groups, keeps,
                                                                               strict=True)])
        rows = [np.nonzero(keep)[0] for keep in keeps]
        morphs = np.concatenate([group.tensors[self.morph][row].astype(np.float32)
                                 for group, row in zip(groups, rows, strict=True)])
        owners = np.concatenate([group.owners()[row] for group, row in zip(groups, rows,
                                                                           strict=True)])
        results: dict[str, np.ndarray] = {}
        for indices in morph_calls(morphs, route["morph"]):
            feed = {route["model_inputs"][0]: np.ascontiguousarray(crops[indices])}
            if route["morph"]:
                feed[route["model_inputs"][1]] = morphs[indices]
            answer = self.attempt(route["model"], feed, route["model_outputs"],
                                  {int(owner) for owner in owners[indices]}, failed)
            for name in route["model_outputs"] if answer is not None else ():
                if name not in results:
                    results[name] = np.zeros((len(crops), *answer[name].shape[1:]), np.float32)
                results[name][indices] = answer[name]
        start = 0
        for group, keep in zip(groups, keeps, strict=True):
            count = int(keep.sum())
            for name, merged_name in zip(route["model_outputs"], route["merge_layers"],
                                         strict=True):
                if name in results:
                    result = results[name]
                    full = np.zeros((*keep.shape, *result.shape[1:]), np.float32)
                    full[keep] = result[start:start + count]
                    group.layers[merged_name] = full
            start += count

    def merge(self, route: dict[str, Any], group: Group, swapped: list[np.ndarray],
              failed: dict[int, StepFailedError]) -> None:
        """The merge graph on the group's frames with a kept crop; the others unchanged."""
        _, matrices, valid = route["crop_outputs"]
        scatter(group, group.tensors[self.frame], swapped)
        kept = (group.crop[valid] > 0.5).any(axis=1)
        chosen = group.select(kept) if group.layers else None
        if chosen is None:
            return
        group, frame = chosen, chosen.tensors[self.frame]
        merge = self.attempt(route["merge"], {route["merge_inputs"][0]: frame, **group.layers,
                                              route["merge_inputs"][-3]: group.crop[matrices],
                                              route["merge_inputs"][-2]: group.crop[valid],
                                              route["merge_inputs"][-1]:
                                                  group.tensors[self.target]},
                             [self.routes["swapped"]], group.requests(), failed)
        if merge is not None:
            scatter(group, merge[self.routes["swapped"]], swapped)

    def swap(self, batches: list[dict[str, np.ndarray]], swapped: list[np.ndarray],
             failed: dict[int, StepFailedError]) -> None:
        """SWAPPED of every request, frames grouped by identity across requests."""
        routed: dict[int, list[Part]] = {}
        for request, tensors in enumerate(batches):
            for target, rows in group_rows(tensors[self.target].reshape(-1)).items():
                routed.setdefault(target, []).append((request, rows))
        natives = self.routes["native"]
        native = [part for target, parts in routed.items() if target < natives
                  for part in parts]
        if native:
            self.native(native, batches, swapped, failed)
        for target, parts in sorted(routed.items()):
            alive = [part for part in parts if part[0] not in failed]
            if target >= natives and alive:
                self.dfm(self.routes["dfms"][target - natives], alive, batches, swapped, failed)

    def execute(self, requests: list[Any]) -> list[Any]:
        """One answer per request; a failed call answers the requests in it with its error."""
        batches = [{name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                    for name in self.inputs} for request in requests]
        swapped = [np.empty_like(tensors[self.frame]) for tensors in batches]
        failed: dict[int, StepFailedError] = {}
        self.swap(batches, swapped, failed)
        responses = []
        for index, request in enumerate(requests):
            if index in failed:
                error = failed[index]
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"{self.model_name}: {error}", error.code)))
                continue
            wanted = request.requested_output_names() or self.outputs
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, swapped[index]) for name in wanted]))
        return responses
