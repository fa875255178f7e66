"""The contract of every model in the repository: model and tensor names, types and shapes.

One source of truth: the ONNX export names its tensors from these specs, the `config.pbtxt`
files and the ensemble's wiring are generated from them, and every other module (clients,
benchmarks, training, tests) takes the names from here. A test checks that no tensor name is
typed anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# tensor names
FRAME = "FRAME"
SWAPPED = "SWAPPED"
FACES = "FACES"
KEYPOINTS = "KEYPOINTS"
LANDMARKS = "LANDMARKS"
PRESENCE = "PRESENCE"
FAKE_SCORE = "FAKE_SCORE"
# model names
DETECTOR = "detector"
LANDMARKER = "landmarker"
SWAPPER = "swapper"
FORENSICS = "forensics"
ENSEMBLE = "faceswap"
SCAN = "scan"
CHECKED = "faceswap_checked"
NETWORKS = (DETECTOR, LANDMARKER, SWAPPER)  # the swap chain

NUM_KEYPOINTS = 6  # BlazeFace: right eye, left eye, nose tip, mouth, right ear, left ear
NUM_LANDMARKS = 468  # FaceMesh
FRAME_MIN_SIDE = 64
FRAME_MAX_SIDE = 1920
FRAME_MAX_PIXELS = 1920 * 1080
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
    """The copy of an output that an ensemble publishes (see ModelSpec)."""
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

    def input_names(self) -> list[str]:
        """Input names in graph order."""
        return [t.name for t in self.inputs]

    def output_names(self) -> list[str]:
        """Output names in graph order."""
        return [t.name for t in self.outputs]

    def copy_sources(self) -> list[int]:
        """For each published copy, the position of the network output it copies."""
        names = [t.name for t in self.network_outputs]
        return [names.index(name) for name in self.publishes]


@dataclass(frozen=True)
class EnsembleStep:
    """One step of the ensemble: model, and maps from its tensor names to ensemble tensors."""

    model: str
    input_map: dict[str, str]
    output_map: dict[str, str]


@dataclass(frozen=True)
class Step:
    """A model in an ensemble; `sources` maps an input to the tensor it takes when that is not
    the latest tensor of its own name (the checked ensemble scores SWAPPED as its FRAME)."""

    model: ModelSpec
    sources: tuple[tuple[str, str], ...] = ()

    def source(self, name: str) -> str:
        """The tensor name an input takes."""
        return dict(self.sources).get(name, name)


@dataclass(frozen=True)
class EnsembleSpec:
    """An ensemble: its steps in order, and its inputs and outputs (batch axis included)."""

    name: str
    steps: tuple[Step, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def wiring(self) -> list[EnsembleStep]:
        """The ensemble's steps, wired by name: each model input takes the latest tensor of
        its source's name (an ensemble input or an earlier step's output); an output is an
        ensemble output directly when nothing later consumes it, else an internal tensor (the
        lower-case name), with its published copy as the ensemble output. ValueError when an
        ensemble output feeds a later step and its model does not publish a copy."""
        public = {t.name for t in self.outputs}
        latest = {t.name: t.name for t in self.inputs}
        steps = []
        for position, step in enumerate(self.steps):
            spec = step.model
            input_map = {t.name: latest[step.source(t.name)] for t in spec.inputs}
            consumed_later = {later.source(t.name) for later in self.steps[position + 1:]
                              for t in later.model.inputs}
            output_map = {}
            for tensor in spec.network_outputs:
                direct = tensor.name in public and tensor.name not in consumed_later
                output_map[tensor.name] = tensor.name if direct else tensor.name.lower()
                latest[tensor.name] = output_map[tensor.name]
                if not direct and tensor.name in public and tensor.name not in spec.publishes:
                    raise ValueError(f"{self.name}: {spec.name} must publish {tensor.name}, "
                                     "an output that a later step also reads")
            for name in spec.publishes:
                if name in public and output_map[name] != name:
                    output_map[name + PUBLISHED_SUFFIX] = name
            steps.append(EnsembleStep(spec.name, input_map, output_map))
        return steps


def frame(name: str = FRAME) -> TensorSpec:
    """A BGR frame of any size."""
    return TensorSpec(name, "UINT8", (-1, -1, 3))


def with_batch_axis(tensor: TensorSpec) -> TensorSpec:
    """The tensor as a non-batching model declares it: the batch axis is a dim of its own."""
    return TensorSpec(tensor.name, tensor.triton_type, (-1, *tensor.dims))


def model_specs(max_faces: int) -> dict[str, ModelSpec]:
    """The networks for K = max_faces face slots: the swap chain and the forgery scorer."""
    faces = TensorSpec(FACES, "FP32", (max_faces, 5))
    keypoints = TensorSpec(KEYPOINTS, "FP32", (max_faces, NUM_KEYPOINTS, 2))
    landmarks = TensorSpec(LANDMARKS, "FP32", (max_faces, NUM_LANDMARKS, 2))
    presence = TensorSpec(PRESENCE, "FP32", (max_faces,))
    fake_score = TensorSpec(FAKE_SCORE, "FP32", (max_faces,))
    specs = [
        ModelSpec(DETECTOR, (frame(),), (faces, keypoints),
                  "BlazeFace short-range: letterbox, network, anchors, fast NMS, top-K faces",
                  publishes=(FACES,)),
        ModelSpec(LANDMARKER, (frame(), faces, keypoints), (landmarks, presence),
                  "FaceMesh on eye-aligned crops: 468 landmarks per face in frame pixels",
                  publishes=(LANDMARKS,)),
        ModelSpec(SWAPPER, (frame(), landmarks, presence), (frame(SWAPPED),),
                  "align, autoencode as the target identity, colour-match, blend back",
                  publishes=(SWAPPED,)),
        ModelSpec(FORENSICS, (frame(), landmarks, presence), (fake_score,),
                  "forensic crop per face slot, forgery detector: probability of a swap "
                  "(-1 for an empty slot)"),
    ]
    return {spec.name: spec for spec in specs}


def ensemble(name: str, steps: tuple[Step, ...], outputs: tuple[TensorSpec, ...]
             ) -> EnsembleSpec:
    """An ensemble of FRAME in, the given outputs out, batch axis included."""
    return EnsembleSpec(name, steps, (with_batch_axis(frame()),),
                        tuple(with_batch_axis(t) for t in outputs))


def faceswap_ensemble(max_faces: int) -> EnsembleSpec:
    """`faceswap`: detector -> landmarker -> swapper; FRAME in, SWAPPED, FACES, LANDMARKS out."""
    specs = model_specs(max_faces)
    outputs = (frame(SWAPPED), specs[DETECTOR].network_outputs[0],
               specs[LANDMARKER].network_outputs[0])
    return ensemble(ENSEMBLE, tuple(Step(specs[name]) for name in NETWORKS), outputs)


def scan_ensemble(max_faces: int) -> EnsembleSpec:
    """`scan`: detector -> landmarker -> forensics; FACES, LANDMARKS and FAKE_SCORE out."""
    specs = model_specs(max_faces)
    outputs = (specs[DETECTOR].network_outputs[0], specs[LANDMARKER].network_outputs[0],
               specs[FORENSICS].network_outputs[0])
    return ensemble(SCAN, tuple(Step(specs[name]) for name in (DETECTOR, LANDMARKER, FORENSICS)),
                    outputs)


def checked_ensemble(max_faces: int) -> EnsembleSpec:
    """`faceswap_checked`: `faceswap`, then `forensics` on the swapped frame (with the
    landmarks of the original, which the swap keeps): the outputs of `faceswap` plus
    FAKE_SCORE of the result."""
    specs = model_specs(max_faces)
    outputs = (frame(SWAPPED), specs[DETECTOR].network_outputs[0],
               specs[LANDMARKER].network_outputs[0], specs[FORENSICS].network_outputs[0])
    steps = (*(Step(specs[name]) for name in NETWORKS),
             Step(specs[FORENSICS], ((FRAME, SWAPPED),)))
    return ensemble(CHECKED, steps, outputs)


def ensembles(max_faces: int, forensics: bool) -> list[EnsembleSpec]:
    """The ensembles of a repository (the scan and checked ones when a detector is exported)."""
    found = [faceswap_ensemble(max_faces)]
    if forensics:
        found += [scan_ensemble(max_faces), checked_ensemble(max_faces)]
    return found
