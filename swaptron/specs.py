"""The contract of every model in the repository: model and tensor names, types and shapes.

One source of truth: the ONNX export names its tensors from these specs, the `config.pbtxt`
files and the ensembles' wiring (swaptron/wiring.py) are generated from them, and every other
module (clients, benchmarks, training, tests) takes the names from here. A test checks that no
tensor name is typed anywhere else. The workarounds for Triton 2.51 that shape some specs (the
published copies, the selector's pass-through) are named in swaptron/triton_workarounds.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from swaptron.mark_code import CODE_BITS
from swaptron.refusals import identity_refusal as identity_refusal
from swaptron.triton_workarounds import PUBLISHED_SUFFIX as PUBLISHED_SUFFIX
from swaptron.triton_workarounds import passed_through_selector, published

# tensor names
FRAME = "FRAME"
SWAPPED = "SWAPPED"
FACES = "FACES"
KEYPOINTS = "KEYPOINTS"
LANDMARKS = "LANDMARKS"
PRESENCE = "PRESENCE"
FAKE_SCORE = "FAKE_SCORE"
MARK = "MARK"  # the mark reader's soft bits per face slot [K,CODE_BITS] (swaptron/mark_code.py)
MARK_PRESENCE = "MARK_PRESENCE"  # PRESENCE passed through the mark reader (stands for PRESENCE)
IDENTITY = "IDENTITY"  # optional request input: the identity faces become (a name)
WHICH_FACES = "WHICH_FACES"  # optional request input: "all" (default) or "largest"
TARGET = "TARGET"  # the identity's index among the swapper's decoders (INT32)
LARGEST_ONLY = "LARGEST_ONLY"  # 1 to swap only the largest face (INT32)
RESET = "RESET"  # 1 on a stream's first frame (Triton's CONTROL_SEQUENCE_START)
STATE_PREFIX = "STATE_"  # a stream's state before a frame (graph input)
NEXT_PREFIX = "NEXT_"  # ... and after it (graph output)
MORPH = "MORPH"  # optional request input with --dfm: an AMP model's morph value (FP32 0..1)
DFM_FACES = "DFM_FACES"  # the crop graph's whole_face crops [K,R,R,3], BGR 0..1
DFM_MATRICES = "DFM_MATRICES"  # ... their matrices [K,2,3], frame pixels -> crop pixels
DFM_VALID = "DFM_VALID"  # ... 1 for the slots to swap [K]
DFM_FACE = "DFM_FACE"  # a served DFM's input [R,R,3] (its in_face, renamed)
DFM_MORPH = "DFM_MORPH"  # ... its morph_value [1] (AMP models)
DFM_OUTPUTS = ("DFM_FACE_MASK", "DFM_CELEB_FACE", "DFM_CELEB_MASK")  # its outputs, by position
STEADY_PREFIX = "STEADY_"  # the stabilizer's FACES, LANDMARKS, PRESENCE (an ONNX graph cannot
# name an output like an input; in an ensemble they stand for the tensors they steady)
# model names
DETECTOR = "detector"
LANDMARKER = "landmarker"
SWAPPER = "swapper"
FORENSICS = "forensics"
MARK_READER = "mark_reader"  # reads the swapper's invisible mark (networks/mark_reader.py)
ENSEMBLE = "faceswap"
SCAN = "scan"
CHECKED = "faceswap_checked"
SELECTOR = "selector"
STABILIZER = "stabilizer"
TRACKER = "tracker"
SAMPLER = "sampler"
STREAM = "faceswap_stream"
STREAM_CHECKED = "faceswap_stream_checked"
DFM_ROUTER = "dfm_router"  # with --dfm: the swap step, routing each frame to its identity
DFM_PREFIX = "dfm_"  # a served DFM is the model dfm_<name>
NETWORKS = (DETECTOR, LANDMARKER, SWAPPER)  # the swap chain
DEFAULT_MORPH = 0.75  # DeepFaceLive's morph factor for AMP models

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
    twice (`publishes`): as itself, for the later step, and as an identical `<NAME>_PUBLISHED`
    copy that only the ensemble output takes (a Triton 2.51 workaround: see
    triton_workarounds.published). The copies are listed in `outputs` after the network's own
    outputs.

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

def frame(name: str = FRAME) -> TensorSpec:
    """A BGR frame of any size."""
    return TensorSpec(name, "UINT8", (-1, -1, 3))


def steady(tensor: TensorSpec) -> TensorSpec:
    """The stabilizer's version of a tensor."""
    return TensorSpec(STEADY_PREFIX + tensor.name, tensor.triton_type, tensor.dims)


def model_specs(max_faces: int, dfm: bool = False) -> dict[str, ModelSpec]:
    """The networks for K = max_faces face slots: the swap chain and the forgery scorer. With
    `dfm` (DFM models exported) the selector also passes MORPH on and the router is added."""
    faces = TensorSpec(FACES, "FP32", (max_faces, 5))
    keypoints = TensorSpec(KEYPOINTS, "FP32", (max_faces, NUM_KEYPOINTS, 2))
    landmarks = TensorSpec(LANDMARKS, "FP32", (max_faces, NUM_LANDMARKS, 2))
    presence = TensorSpec(PRESENCE, "FP32", (max_faces,))
    fake_score = TensorSpec(FAKE_SCORE, "FP32", (max_faces,))
    mark = TensorSpec(MARK, "FP32", (max_faces, CODE_BITS))
    steadied = (faces, landmarks, presence)
    morph_out = (TensorSpec(MORPH, "FP32", (1,)),) if dfm else ()
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
        # FACES passes through the selector so that the landmarker waits for it (a Triton 2.51
        # workaround: see triton_workarounds.passed_through_selector)
        ModelSpec(SELECTOR, (*passed_through_selector(faces), *request_choices(dfm)),
                  (target, largest_only, *passed_through_selector(faces), *morph_out),
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
        # PRESENCE passes through, so the scan's next step reads an output of this one (every
        # ensemble is a chain: tests/unit/test_configs.py)
        ModelSpec(MARK_READER, (frame(), landmarks, presence),
                  (mark, TensorSpec(MARK_PRESENCE, "FP32", (max_faces,))),
                  "per face slot: the high-passed luma over the face, weighed down where the "
                  "face is busy, folded onto the mark's tile and projected on its patterns "
                  "(soft bits, 0 for an empty slot); PRESENCE passes through",
                  stands_for=((MARK_PRESENCE, PRESENCE),)),
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
    if dfm:  # the swapper's inputs and MORPH in, SWAPPED out (server/dfm_router_model.py)
        swapper = next(spec for spec in specs if spec.name == SWAPPER)
        specs.append(ModelSpec(DFM_ROUTER, (*swapper.inputs, *morph_out), (frame(SWAPPED),),
                               "the swap step with DFM models: a native identity's frames go "
                               "to the swapper, a DFM's to its crop, model and merge (BLS)",
                               publishes=(SWAPPED,), graph=False))
    return {spec.name: spec for spec in specs}


def request_choices(dfm: bool = False) -> tuple[TensorSpec, ...]:
    """The optional inputs of a swap request: IDENTITY and WHICH_FACES, one name each, and with
    DFM models MORPH (one value per frame)."""
    morph = (TensorSpec(MORPH, "FP32", (1,), optional=True),) if dfm else ()
    return (TensorSpec(IDENTITY, "STRING", (1,), optional=True),
            TensorSpec(WHICH_FACES, "STRING", (1,), optional=True), *morph)


def dfm_model_name(name: str) -> str:
    """The Triton model serving the DFM identity `name`."""
    return f"{DFM_PREFIX}{name}"


def dfm_specs(max_faces: int, resolution: int) -> tuple[ModelSpec, ModelSpec]:
    """The crop and merge graphs of DFMs of side R (networks/dfm_graphs.py)."""
    slots = max_faces
    landmarks = TensorSpec(LANDMARKS, "FP32", (slots, NUM_LANDMARKS, 2))
    presence = TensorSpec(PRESENCE, "FP32", (slots,))
    largest_only = TensorSpec(LARGEST_ONLY, "INT32", (1,))
    matrices = TensorSpec(DFM_MATRICES, "FP32", (slots, 2, 3))
    valid = TensorSpec(DFM_VALID, "FP32", (slots,))
    layers = tuple(TensorSpec(name, "FP32", (slots, resolution, resolution, channels))
                   for name, channels in zip(DFM_OUTPUTS, (1, 3, 1), strict=True))
    crop = ModelSpec(f"{DFM_PREFIX}crop_{resolution}", (frame(), landmarks, presence, largest_only),
                     (TensorSpec(DFM_FACES, "FP32", (slots, resolution, resolution, 3)),
                      matrices, valid),
                     "DeepFaceLive's whole_face crop of every face slot for a DFM of this R")
    merge = ModelSpec(f"{DFM_PREFIX}merge_{resolution}",
                      (frame(), *layers, matrices, valid, TensorSpec(TARGET, "INT32", (1,))),
                      (frame(SWAPPED),),
                      "DeepFaceLive's default merge of a DFM's faces back into the frame, "
                      "with the invisible mark of the frame's identity (TARGET)")
    return crop, merge


def dfm_model_spec(name: str, resolution: int, morph: bool) -> ModelSpec:
    """A served DFM: its graph with the tensors renamed (DFM_FACE [, DFM_MORPH] -> outputs)."""
    inputs = (TensorSpec(DFM_FACE, "FP32", (resolution, resolution, 3)),
              *((TensorSpec(DFM_MORPH, "FP32", (1,)),) if morph else ()))
    outputs = tuple(TensorSpec(output, "FP32", (resolution, resolution, channels))
                    for output, channels in zip(DFM_OUTPUTS, (1, 3, 1), strict=True))
    return ModelSpec(dfm_model_name(name), inputs, outputs, f"the DFM identity {name}")


def stateful_ensemble(name: str) -> bool:
    """True for the ensembles whose requests need a sequence id."""
    return name in (STREAM, STREAM_CHECKED)


MOVED_TO_WIRING = ("ensembles",)  # re-exported for importers not switched to swaptron.wiring


def __getattr__(name: str) -> object:
    """A name that moved to swaptron.wiring (MOVED_TO_WIRING), for its old importers; loaded on
    first use, since swaptron.wiring imports this module."""
    if name in MOVED_TO_WIRING:
        from swaptron import wiring

        return getattr(wiring, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
