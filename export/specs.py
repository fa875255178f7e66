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


@dataclass(frozen=True)
class ModelSpec:
    """A network in the repository: its name and batched inputs and outputs."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    description: str

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
                  "BlazeFace short-range: letterbox, network, anchors, fast NMS, top-K faces"),
        ModelSpec("landmarker", (frame(), faces, keypoints), (landmarks, presence),
                  "FaceMesh on eye-aligned crops: 468 landmarks per face in frame pixels"),
        ModelSpec("swapper", (frame(), landmarks, presence), (frame("SWAPPED"),),
                  "align, autoencode as the target identity, colour-match, blend back"),
    ]
    return {spec.name: spec for spec in specs}


def ensemble_io(max_faces: int) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs and outputs of the `faceswap` ensemble."""
    specs = model_specs(max_faces)
    outputs = (frame("SWAPPED"), specs["detector"].outputs[0], specs["landmarker"].outputs[0])
    return (frame(),), outputs


def ensemble_steps() -> list[EnsembleStep]:
    """detector -> landmarker -> swapper, with the intermediate tensors named."""
    return [
        EnsembleStep("detector", {"FRAME": "FRAME"},
                     {"FACES": "FACES", "KEYPOINTS": "keypoints"}),
        EnsembleStep("landmarker", {"FRAME": "FRAME", "FACES": "FACES", "KEYPOINTS": "keypoints"},
                     {"LANDMARKS": "LANDMARKS", "PRESENCE": "presence"}),
        EnsembleStep("swapper", {"FRAME": "FRAME", "LANDMARKS": "LANDMARKS",
                                 "PRESENCE": "presence"},
                     {"SWAPPED": "SWAPPED"}),
    ]
