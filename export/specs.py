"""The contract of every model in the repository: tensor names, types and shapes.

One source of truth: the ONNX export names its tensors from these specs, the `config.pbtxt`
files are generated from them, and the tests check the ensemble maps against them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_LANDMARKS = 468
FRAME_MIN_SIDE = 64
FRAME_MAX_SIDE = 1920
FRAME_MAX_PIXELS = 1920 * 1080
ENSEMBLE = "faceswap"
TARGETS = ("python-ort", "onnxruntime", "tensorrt")
DIRECTIONS = {"a2b": "b", "b2a": "a"}  # swap direction -> decoder (identity) faces become
PUBLISHED_SUFFIX = "_PUBLISHED"
# The ensemble does not batch; its networks do, across requests. With max_batch_size 0 Triton
# checks a request's whole shape against [-1,-1,-1,3], so a frame sent without its batch axis
# gets "unexpected shape ... Expected [-1,-1,-1,3], got [528,720,3]" instead of being read as a
# batch of 528 frames ("batch-size must be <= 8"). A batch of several frames still works.
ENSEMBLE_MAX_BATCH = 0


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: Triton type and per-frame dims (-1 is a dynamic size)."""

    name: str
    triton_type: str
    dims: tuple[int, ...]

    @property
    def numpy_type(self) -> type[np.generic]:
        """NumPy dtype of the tensor."""
        return {"UINT8": np.uint8, "FP32": np.float32, "FP16": np.float16}[self.triton_type]


def published(tensor: TensorSpec) -> TensorSpec:
    """The copy of an output that an ensemble publishes (see ModelSpec.published)."""
    return TensorSpec(tensor.name + PUBLISHED_SUFFIX, tensor.triton_type, tensor.dims)


@dataclass(frozen=True)
class ModelSpec:
    """A network in the repository: its name and batched inputs and outputs.

    An output that the ensemble returns to clients and that also feeds a later step is emitted
    twice: as itself, for the later step, and as an identical `<NAME>_PUBLISHED` copy that only
    the ensemble output takes. Triton 2.51 prunes the steps a request does not need, but it drops
    a requested output when every step consuming it is pruned (asking `faceswap` for FACES alone
    failed with "unexpected deadlock"); a published copy feeds nothing, so it is never dropped.
    The copies are listed in `outputs` after the network's own outputs.
    """

    name: str
    inputs: tuple[TensorSpec, ...]
    network_outputs: tuple[TensorSpec, ...]
    description: str
    publishes: tuple[str, ...] = ()

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """The network's outputs, then the published copies."""
        own = {t.name: t for t in self.network_outputs}
        return (*self.network_outputs, *(published(own[name]) for name in self.publishes))

    def copy_sources(self) -> list[int]:
        """For each published copy, the position of the network output it copies."""
        names = [t.name for t in self.network_outputs]
        return [names.index(name) for name in self.publishes]

    def input_names(self) -> list[str]:
        """Input names in graph order."""
        return [t.name for t in self.inputs]

    def output_names(self) -> list[str]:
        """Output names in graph order."""
        return [t.name for t in self.outputs]


@dataclass(frozen=True)
class EnsembleStep:
    """One step of the ensemble: model, and maps from its tensor names to ensemble tensors."""

    model: str
    input_map: dict[str, str]
    output_map: dict[str, str]


def frame(name: str = "FRAME") -> TensorSpec:
    """A BGR frame of any size."""
    return TensorSpec(name, "UINT8", (-1, -1, 3))


def model_specs(max_faces: int) -> dict[str, ModelSpec]:
    """The three networks for K = max_faces face slots."""
    faces = TensorSpec("FACES", "FP32", (max_faces, 5))
    keypoints = TensorSpec("KEYPOINTS", "FP32", (max_faces, 6, 2))
    landmarks = TensorSpec("LANDMARKS", "FP32", (max_faces, NUM_LANDMARKS, 2))
    presence = TensorSpec("PRESENCE", "FP32", (max_faces,))
    specs = [
        ModelSpec("detector", (frame(),), (faces, keypoints),
                  "BlazeFace short-range: letterbox, network, anchors, fast NMS, top-K faces",
                  publishes=("FACES",)),
        ModelSpec("landmarker", (frame(), faces, keypoints), (landmarks, presence),
                  "FaceMesh on eye-aligned crops: 468 landmarks per face in frame pixels",
                  publishes=("LANDMARKS",)),
        ModelSpec("swapper", (frame(), landmarks, presence), (frame("SWAPPED"),),
                  "align, autoencode as the target identity, colour-match, blend back"),
    ]
    return {spec.name: spec for spec in specs}


def with_batch_axis(tensor: TensorSpec) -> TensorSpec:
    """The tensor as a non-batching model declares it: the batch axis is a dim of its own."""
    return TensorSpec(tensor.name, tensor.triton_type, (-1, *tensor.dims))


def ensemble_io(max_faces: int) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs and outputs of the `faceswap` ensemble, batch axis included (ENSEMBLE_MAX_BATCH)."""
    specs = model_specs(max_faces)
    outputs = (frame("SWAPPED"), specs["detector"].network_outputs[0],
               specs["landmarker"].network_outputs[0])
    return (with_batch_axis(frame()),), tuple(with_batch_axis(t) for t in outputs)


def ensemble_steps() -> list[EnsembleStep]:
    """detector -> landmarker -> swapper; intermediate tensors in lower case, published copies
    mapped to the ensemble's outputs."""
    return [
        EnsembleStep("detector", {"FRAME": "FRAME"},
                     {"FACES": "faces", "KEYPOINTS": "keypoints",
                      "FACES" + PUBLISHED_SUFFIX: "FACES"}),
        EnsembleStep("landmarker", {"FRAME": "FRAME", "FACES": "faces", "KEYPOINTS": "keypoints"},
                     {"LANDMARKS": "landmarks", "PRESENCE": "presence",
                      "LANDMARKS" + PUBLISHED_SUFFIX: "LANDMARKS"}),
        EnsembleStep("swapper", {"FRAME": "FRAME", "LANDMARKS": "landmarks",
                                 "PRESENCE": "presence"},
                     {"SWAPPED": "SWAPPED"}),
    ]
