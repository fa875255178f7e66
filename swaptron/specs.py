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
IDENTITY = "IDENTITY"  # optional request input: the identity faces become (a name)
WHICH_FACES = "WHICH_FACES"  # optional request input: "all" (default) or "largest"
TARGET = "TARGET"  # the identity's index among the swapper's decoders (INT32)
LARGEST_ONLY = "LARGEST_ONLY"  # 1 to swap only the largest face (INT32)
RESET = "RESET"  # 1 on a stream's first frame (Triton's CONTROL_SEQUENCE_START)
STATE_PREFIX = "STATE_"  # a stream's state before a frame (graph input)
NEXT_PREFIX = "NEXT_"  # ... and after it (graph output)
STEADY_PREFIX = "STEADY_"  # the stabilizer's FACES, LANDMARKS, PRESENCE (an ONNX graph cannot
# name an output like an input; in an ensemble they stand for the tensors they steady)
# model names
DETECTOR = "detector"
LANDMARKER = "landmarker"
SWAPPER = "swapper"
FORENSICS = "forensics"
ENSEMBLE = "faceswap"
SCAN = "scan"
CHECKED = "faceswap_checked"
SELECTOR = "selector"
STABILIZER = "stabilizer"
TRACKER = "tracker"
SAMPLER = "sampler"
STREAM = "faceswap_stream"
STREAM_CHECKED = "faceswap_stream_checked"
NETWORKS = (DETECTOR, LANDMARKER, SWAPPER)  # the swap chain

NUM_KEYPOINTS = 6  # BlazeFace: right eye, left eye, nose tip, mouth, right ear, left ear
NUM_LANDMARKS = 468  # FaceMesh
# FaceMesh landmarks standing for the detector's keypoints when the tracker takes a face's crop
# from its previous landmarks: outer eye corners (right, left: the crop levels on them, as
# MediaPipe's tracking does), nose tip, upper-lip centre, right and left cheek edge
TRACK_KEYPOINT_LANDMARKS = (33, 263, 1, 13, 234, 454)
TRACK_PRESENCE = 0.5  # a followed face with a landmark presence at or under this is lost
FRAME_MIN_SIDE = 64
FRAME_MAX_SIDE = 1920
FRAME_MAX_PIXELS = 1920 * 1080
TARGETS = ("python-ort", "onnxruntime", "tensorrt")


@dataclass(frozen=True)
class FrameLimits:
    """The frames a target's server refuses, and what refuses them: a side under `min_side` or
    over `max_side`, more than `max_pixels` pixels; None where nothing checks."""

    min_side: int | None
    max_side: int | None
    max_pixels: int | None
    checked_by: str = ""

    def rule_broken_by(self, width: int, height: int) -> str | None:
        """The rule a width x height frame breaks, in words, or None when it passes."""
        low = self.min_side if self.min_side is not None else 0
        high = self.max_side if self.max_side is not None else max(width, height)
        most = self.max_pixels if self.max_pixels is not None else width * height
        if min(width, height) < low or max(width, height) > high or width * height > most:
            return (f"frames must have sides between {self.min_side} and {self.max_side} and at "
                    f"most {self.max_pixels} pixels")
        return None


# Per target, in one place (docs/ensemble.md, "Frame limits"); the gateway checks the strictest
# before anything reaches Triton.
FRAME_LIMITS = {
    "python-ort": FrameLimits(FRAME_MIN_SIDE, FRAME_MAX_SIDE, FRAME_MAX_PIXELS,
                              "each step that takes FRAME, before inference: INVALID_ARGUMENT "
                              "naming the size"),
    "tensorrt": FrameLimits(FRAME_MIN_SIDE, FRAME_MAX_SIDE, FRAME_MAX_SIDE * FRAME_MAX_SIDE,
                            "the engines' optimisation profile: Triton refuses a shape outside "
                            "it"),
    "onnxruntime": FrameLimits(None, None, None,
                               "nothing in the graph or config: ONNX Runtime runs any size the "
                               "gRPC message carries (keep this target behind the gateway)"),
}
STRICTEST_FRAME_LIMITS = FRAME_LIMITS["python-ort"]
PUBLISHED_SUFFIX = "_PUBLISHED"
FACE_CHOICES = ("all", "largest")  # WHICH_FACES values, the default first
# the words a stateful model's error starts with when it keeps no more streams; the client
# recognises them and stops instead of failing every frame
STREAM_LIMIT_ERROR = "no room for another stream"
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
    optional: bool = False  # a request may leave it out

    @property
    def numpy_type(self) -> type[np.generic]:
        """NumPy dtype of the tensor."""
        return {"UINT8": np.uint8, "FP32": np.float32, "FP16": np.float16, "INT32": np.int32,
                "STRING": np.object_}[self.triton_type]


def published(tensor: TensorSpec) -> TensorSpec:
    """The copy of an output that an ensemble publishes (see ModelSpec)."""
    return TensorSpec(tensor.name + PUBLISHED_SUFFIX, tensor.triton_type, tensor.dims)


@dataclass(frozen=True)
class StateSpec:
    """One tensor of per-stream state: read before a frame, written after it (Triton's
    implicit state pairs the two names; the python-ort model stores it per sequence)."""

    before: TensorSpec
    after: TensorSpec


def state(name: str, dims: tuple[int, ...]) -> StateSpec:
    """The float32 state `name`: graph input STATE_<name>, graph output NEXT_<name>."""
    return StateSpec(TensorSpec(STATE_PREFIX + name, "FP32", dims),
                     TensorSpec(NEXT_PREFIX + name, "FP32", dims))


@dataclass(frozen=True)
class ModelSpec:
    """A network in the repository: its name and batched inputs and outputs.

    An output that the ensemble returns to clients and that also feeds a later step is emitted
    twice: as itself, for the later step, and as an identical `<NAME>_PUBLISHED` copy that only
    the ensemble output takes. Triton 2.51 prunes the steps a request does not need, but it drops
    a requested output when every step consuming it is pruned (asking `faceswap` for FACES alone
    failed with "unexpected deadlock"); a published copy feeds nothing, so it is never dropped.
    The copies are listed in `outputs` after the network's own outputs.

    A stateful network (`states`) is served by Triton's sequence batcher: its graph also reads
    each state and RESET and writes the next states, none of which is a request tensor.
    `stands_for` maps an output to the ensemble tensor it is a new version of (the stabilizer's
    STEADY_LANDMARKS is LANDMARKS for the steps after it and for the client).
    """

    name: str
    inputs: tuple[TensorSpec, ...]
    network_outputs: tuple[TensorSpec, ...]
    description: str
    publishes: tuple[str, ...] = ()
    states: tuple[StateSpec, ...] = ()
    stands_for: tuple[tuple[str, str], ...] = ()
    graph: bool = True  # an ONNX graph; False: a Python model (server/*_model.py)
    streams: bool = False  # keeps per-stream state of its own (sequence batcher, no graph state)

    @property
    def sequenced(self) -> bool:
        """True when the sequence batcher serves it (one stream's frames in order)."""
        return bool(self.states) or self.streams

    def ensemble_name(self, output: str) -> str:
        """The ensemble tensor an output is (its own name unless it stands for another)."""
        return dict(self.stands_for).get(output, output)

    @property
    def reset(self) -> TensorSpec | None:
        """The control input of a stateful network: [1] per stream, 1.0 on its first frame."""
        return TensorSpec(RESET, "FP32", (1,)) if self.states else None  # [B,1] in the graph

    @property
    def graph_inputs(self) -> tuple[TensorSpec, ...]:
        """The graph's inputs: the request's, then the states before the frame, then RESET."""
        control = (self.reset,) if self.reset is not None else ()
        return (*self.inputs, *(s.before for s in self.states), *control)

    @property
    def graph_outputs(self) -> tuple[TensorSpec, ...]:
        """The graph's outputs: the network's, the next states, then the published copies."""
        return (*self.network_outputs, *(s.after for s in self.states),
                *self.outputs[len(self.network_outputs):])

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

    def graph_input_names(self) -> list[str]:
        """Graph input names in order."""
        return [t.name for t in self.graph_inputs]

    def graph_output_names(self) -> list[str]:
        """Graph output names in order."""
        return [t.name for t in self.graph_outputs]

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
        its source's name (an ensemble input or an earlier step's output). An ensemble output
        comes from the last step that produces its name: directly when nothing later consumes
        it, else through that step's published copy; every other output is an internal tensor
        (the lower-case name, with the model's name appended when an earlier step already took
        it). ValueError when an ensemble output feeds a later step and its model does not
        publish a copy."""
        public = {t.name for t in self.outputs}
        last_producer = {step.model.ensemble_name(t.name): position
                         for position, step in enumerate(self.steps)
                         for t in step.model.network_outputs}
        latest = {t.name: t.name for t in self.inputs}
        taken = set(latest)
        steps = []
        for position, step in enumerate(self.steps):
            spec = step.model
            input_map = {t.name: latest[step.source(t.name)] for t in spec.inputs}
            consumed_later = {later.source(t.name) for later in self.steps[position + 1:]
                              for t in later.model.inputs}
            output_map = {}
            for tensor in spec.network_outputs:
                name = spec.ensemble_name(tensor.name)
                publish = name in public and last_producer[name] == position
                direct = publish and name not in consumed_later
                internal = name.lower()
                if internal in taken:
                    internal = f"{internal}_{spec.name}"
                output_map[tensor.name] = name if direct else internal
                latest[name] = output_map[tensor.name]
                taken.add(latest[name])
                if publish and not direct:
                    if tensor.name not in spec.publishes:
                        raise ValueError(f"{self.name}: {spec.name} must publish {name}, an "
                                         "output that a later step also reads")
                    output_map[tensor.name + PUBLISHED_SUFFIX] = name
            steps.append(EnsembleStep(spec.name, input_map, output_map))
        return steps

    def config_steps(self) -> list[EnsembleStep]:
        """The wired steps in the order the config lists them.

        When a request asks for some outputs only, Triton 2.51 prunes the steps it does not
        need, and charges an ensemble input that no kept step reads to the config's first step as
        if that step had produced it: asking `faceswap` for FACES alone pruned the detector once
        the selector (sole reader of IDENTITY and WHICH_FACES) was pruned ("unexpected
        deadlock"). So the sole reader of an ensemble input is listed first: the charge then
        falls on a step already pruned. ValueError when two steps are sole readers."""
        steps = self.wiring()
        inputs = {t.name for t in self.inputs}
        readers = {name: sum(name in s.input_map.values() for s in steps) for name in inputs}
        sole = [s for s in steps if any(readers.get(name) == 1 for name in s.input_map.values())]
        if len(sole) > 1:
            raise ValueError(f"{self.name}: {', '.join(s.model for s in sole)} each read an "
                             "ensemble input alone; only one can be listed first")
        first = sole[0] if sole else steps[0]
        return [first, *(s for s in steps if s is not first)]


def frame(name: str = FRAME) -> TensorSpec:
    """A BGR frame of any size."""
    return TensorSpec(name, "UINT8", (-1, -1, 3))


def steady(tensor: TensorSpec) -> TensorSpec:
    """The stabilizer's version of a tensor."""
    return TensorSpec(STEADY_PREFIX + tensor.name, tensor.triton_type, tensor.dims)


def with_batch_axis(tensor: TensorSpec) -> TensorSpec:
    """The tensor as a non-batching model declares it: the batch axis is a dim of its own."""
    return TensorSpec(tensor.name, tensor.triton_type, (-1, *tensor.dims), tensor.optional)


def model_specs(max_faces: int) -> dict[str, ModelSpec]:
    """The networks for K = max_faces face slots: the swap chain and the forgery scorer."""
    faces = TensorSpec(FACES, "FP32", (max_faces, 5))
    keypoints = TensorSpec(KEYPOINTS, "FP32", (max_faces, NUM_KEYPOINTS, 2))
    landmarks = TensorSpec(LANDMARKS, "FP32", (max_faces, NUM_LANDMARKS, 2))
    presence = TensorSpec(PRESENCE, "FP32", (max_faces,))
    fake_score = TensorSpec(FAKE_SCORE, "FP32", (max_faces,))
    steadied = (faces, landmarks, presence)
    target = TensorSpec(TARGET, "INT32", (1,))
    largest_only = TensorSpec(LARGEST_ONLY, "INT32", (1,))
    specs = [
        ModelSpec(DETECTOR, (frame(),), (faces, keypoints),
                  "BlazeFace (back-camera 256 px by default; short or full range at export): "
                  "letterbox, network, anchors, fast NMS, top-K faces",
                  publishes=(FACES,)),
        ModelSpec(LANDMARKER, (frame(), faces, keypoints), (landmarks, presence),
                  "FaceMesh on eye-aligned crops: 468 landmarks per face in frame pixels",
                  publishes=(LANDMARKS,)),
        # FACES passes through the selector so that the landmarker waits for it: when a step
        # fails while another step of the same request runs, Triton 2.51 releases the request's
        # inputs under the running step and the server dies (SIGSEGV in the Python backend,
        # found with an unknown IDENTITY among concurrent requests)
        ModelSpec(SELECTOR, (faces, *request_choices()), (target, largest_only, faces),
                  "the request's identity and faces to swap, named, as the swapper's indices "
                  "(INVALID_ARGUMENT naming the choices for an unknown one); FACES passes "
                  "through, so nothing else of the request runs when it refuses one",
                  publishes=(FACES,), graph=False),
        ModelSpec(SWAPPER, (frame(), landmarks, presence, target, largest_only),
                  (frame(SWAPPED),),
                  "align, autoencode as the chosen identity (one decoder per identity), "
                  "colour-match, blend back", publishes=(SWAPPED,)),
        ModelSpec(FORENSICS, (frame(), landmarks, presence), (fake_score,),
                  "forensic crop per face slot, forgery detector: probability of a swap "
                  "(-1 for an empty slot)"),
        ModelSpec(TRACKER, (frame(),), (faces, landmarks, presence),
                  "per stream: the detector on keyframes, each face's crop from its previous "
                  "landmarks between them, the landmarker on every frame (server/"
                  "tracker_model.py, calling both models)", graph=False, streams=True),
        ModelSpec(SAMPLER, (frame(), landmarks, presence), (fake_score,),
                  "per stream: forensics on a face that has no score yet, and beside the "
                  "frames' path every few frames; each slot carries its last score between "
                  "(server/sampler_model.py, calling forensics)", graph=False, streams=True),
        ModelSpec(STABILIZER, (faces, landmarks, presence), tuple(map(steady, steadied)),
                  "per stream: faces kept in their slots across frames, One Euro filter on "
                  "the landmarks, a missed face held a few frames",
                  publishes=(steady(landmarks).name,),
                  stands_for=tuple((steady(t).name, t.name) for t in steadied),
                  states=(state("BOXES", (max_faces, 5)),
                          state("LANDMARKS", (max_faces, NUM_LANDMARKS, 2)),
                          state("SPEED", (max_faces,)), state("MISSED", (max_faces,)))),
    ]
    return {spec.name: spec for spec in specs}


def request_choices() -> tuple[TensorSpec, TensorSpec]:
    """The optional inputs of a swap request: IDENTITY and WHICH_FACES, one name each."""
    return (TensorSpec(IDENTITY, "STRING", (1,), optional=True),
            TensorSpec(WHICH_FACES, "STRING", (1,), optional=True))


def ensemble(name: str, steps: tuple[Step, ...], outputs: tuple[TensorSpec, ...]
             ) -> EnsembleSpec:
    """An ensemble of FRAME in (and the request's choices when it swaps), the given outputs
    out, batch axis included."""
    choices = request_choices() if any(s.model.name == SELECTOR for s in steps) else ()
    return EnsembleSpec(name, steps, tuple(with_batch_axis(t) for t in (frame(), *choices)),
                        tuple(with_batch_axis(t) for t in outputs))


def swap_outputs(specs: dict[str, ModelSpec], *extra: TensorSpec) -> tuple[TensorSpec, ...]:
    """What a swapping ensemble returns: SWAPPED, FACES and LANDMARKS, then `extra`."""
    return (frame(SWAPPED), specs[DETECTOR].network_outputs[0],
            specs[LANDMARKER].network_outputs[0], *extra)


def swap_steps(specs: dict[str, ModelSpec], stateful: bool) -> tuple[Step, ...]:
    """detector -> selector -> landmarker -> swapper; a stream (stateful): tracker (the
    detector on keyframes, the landmarker on every frame) -> selector -> stabilizer ->
    swapper."""
    names = ((TRACKER, SELECTOR, STABILIZER, SWAPPER) if stateful
             else (DETECTOR, SELECTOR, LANDMARKER, SWAPPER))
    return tuple(Step(specs[name]) for name in names)


def faceswap_ensemble(max_faces: int, stateful: bool = False) -> EnsembleSpec:
    """`faceswap`: detector -> landmarker -> swapper; FRAME in, SWAPPED, FACES, LANDMARKS out.
    `faceswap_stream` (stateful): the stabilizer between landmarker and swapper, so FACES and
    LANDMARKS are the stabilizer's; requests need a sequence id (one per video stream)."""
    specs = model_specs(max_faces)
    return ensemble(STREAM if stateful else ENSEMBLE, swap_steps(specs, stateful),
                    swap_outputs(specs))


def scan_ensemble(max_faces: int) -> EnsembleSpec:
    """`scan`: detector -> landmarker -> forensics; FACES, LANDMARKS and FAKE_SCORE out."""
    specs = model_specs(max_faces)
    outputs = (specs[DETECTOR].network_outputs[0], specs[LANDMARKER].network_outputs[0],
               specs[FORENSICS].network_outputs[0])
    return ensemble(SCAN, tuple(Step(specs[name]) for name in (DETECTOR, LANDMARKER, FORENSICS)),
                    outputs)


def checked_ensemble(max_faces: int, stateful: bool = False) -> EnsembleSpec:
    """`faceswap_checked` (`faceswap_stream_checked`): `faceswap` (`faceswap_stream`), then
    `forensics` (a stream: `sampler`, which calls it every few frames) on the swapped frame
    (with the landmarks of the original, which the swap keeps): the outputs of the swap plus
    FAKE_SCORE of the result."""
    specs = model_specs(max_faces)
    scorer = SAMPLER if stateful else FORENSICS  # a stream's scores are sampled
    steps = (*swap_steps(specs, stateful), Step(specs[scorer], ((FRAME, SWAPPED),)))
    return ensemble(STREAM_CHECKED if stateful else CHECKED, steps,
                    swap_outputs(specs, specs[FORENSICS].network_outputs[0]))


def ensembles(max_faces: int, forensics: bool) -> list[EnsembleSpec]:
    """The ensembles of a repository (the scan and checked ones when a detector is exported)."""
    found = [faceswap_ensemble(max_faces), faceswap_ensemble(max_faces, stateful=True)]
    if forensics:
        found += [scan_ensemble(max_faces), checked_ensemble(max_faces),
                  checked_ensemble(max_faces, stateful=True)]
    return found


def stateful_ensemble(name: str) -> bool:
    """True for the ensembles whose requests need a sequence id."""
    return name in (STREAM, STREAM_CHECKED)
