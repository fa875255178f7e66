"""Build the three PyTorch modules of the pipeline and run them on frames (the eager reference)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from swaptron import assets
from swaptron.networks.autoencoder import PRESETS, FaceAutoencoder
from swaptron.networks.detector import (
    DEFAULT_VARIANT,
    VARIANTS,
    DetectorOptions,
    FaceDetector,
)
from swaptron.networks.face_template import load_template
from swaptron.networks.fake_score import FakeScorer, build_scorer
from swaptron.networks.geometry import GraphOptions
from swaptron.networks.landmarker import FaceLandmarker
from swaptron.networks.mark_reader import MarkReader
from swaptron.networks.stabilizer import Stabilizer, initial_state
from swaptron.networks.swapper import BlendOptions, FaceSwapper
from swaptron.networks.watermark import MarkOptions, build_mark
from swaptron.specs import (
    DETECTOR,
    FACES,
    FAKE_SCORE,
    FORENSICS,
    FRAME,
    KEYPOINTS,
    LANDMARKER,
    LANDMARKS,
    LARGEST_ONLY,
    MARK,
    MARK_READER,
    NUM_LANDMARKS,
    PRESENCE,
    RESET,
    STABILIZER,
    SWAPPED,
    SWAPPER,
    TARGET,
    model_specs,
)

RANDOM_SEED = 0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineOptions:
    """What the exported graphs are built from."""

    max_faces: int = 2
    weights: Path | None = None  # autoencoder safetensors; None: the demo weights if present
    identity: str | None = None  # the default target; None: the weights' last identity (b)
    preset: str = "lite"  # used only when there are no weights (random initialisation)
    face_size: int | None = None  # only with random weights: overrides the preset's S
    graph: GraphOptions = field(default_factory=GraphOptions)  # tensorrt: fixed shapes, fp16
    face_detector: str = DEFAULT_VARIANT  # BlazeFace variant: short, back or full
    detector: str | None = "default"  # forgery detector of the `forensics` model: a name
    # (meso4, dldfd, sbi), "default" (the card's pick, when its weights exist) or None (none)
    mark: MarkOptions = field(default_factory=MarkOptions)  # the swapper's invisible mark

    def weights_file(self) -> Path | None:
        """The autoencoder weights to load, None for a randomly initialised autoencoder."""
        if self.weights is not None:
            return self.weights
        demo = assets.demo_weights()
        return demo if demo.is_file() else None

    def detector_file(self) -> Path | None:
        """The forgery detector's weights, None for no `forensics` model."""
        if self.detector is None:
            return None
        if self.detector == "default":
            path = assets.forensics_weights(assets.default_forensic_detector())
            return path if path.is_file() else None
        return assets.forensics_weights(self.detector)


@dataclass
class FaceFinder:
    """The detector and landmarker modules, run eagerly: faces and landmarks of frames without
    an export (dataset extraction, evaluation)."""

    detector: FaceDetector
    landmarker: FaceLandmarker

    @torch.no_grad()
    def find(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """FRAME, FACES, KEYPOINTS, LANDMARKS and PRESENCE for uint8 BGR frames [B,H,W,3]."""
        frame = torch.from_numpy(np.ascontiguousarray(frames))
        faces, keypoints = self.detector(frame)
        landmarks, presence = self.landmarker(frame, faces, keypoints)
        return {FRAME: frames, FACES: faces.numpy(), KEYPOINTS: keypoints.numpy(),
                LANDMARKS: landmarks.numpy(), PRESENCE: presence.numpy()}


@dataclass
class Pipeline(FaceFinder):
    """The detector, landmarker and swapper modules (and the forgery scorer when a detector
    is given), in eval mode: the PyTorch reference of the ensembles, and what is exported."""

    swapper: FaceSwapper
    stabilizer: Stabilizer
    scorer: FakeScorer | None = None
    reader: MarkReader | None = None  # the mark reader of `scan` (build_pipeline gives one)

    def modules(self) -> dict[str, torch.nn.Module]:
        """Modules by model name."""
        found = {DETECTOR: self.detector, LANDMARKER: self.landmarker, SWAPPER: self.swapper,
                 STABILIZER: self.stabilizer}
        if self.scorer is not None:
            found[FORENSICS] = self.scorer
        if self.reader is not None:
            found[MARK_READER] = self.reader
        return found

    @torch.no_grad()
    def stabilizer_example(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The stabilizer's graph inputs for a stream's second frame: the frames' faces, the
        state their own first frame left, and RESET 0 (so the filter path runs)."""
        spec = model_specs(self.stabilizer.slots)[STABILIZER]
        faces, landmarks, presence = (torch.from_numpy(tensors[name])
                                      for name in (FACES, LANDMARKS, PRESENCE))
        batch = faces.shape[0]
        first = self.stabilizer(faces, landmarks, presence,
                                *initial_state(batch, self.stabilizer.slots, NUM_LANDMARKS),
                                torch.ones(batch, 1))
        after_first = first[len(spec.network_outputs):]
        example = {item.before.name: value.numpy()
                   for item, value in zip(spec.states, after_first, strict=True)}
        return {**example, RESET: np.zeros((batch, 1), np.float32)}

    @torch.no_grad()
    def run(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Every tensor of the ensembles for uint8 BGR frames [B,H,W,3] (FAKE_SCORE and MARK
        of the original frames, as `scan` gives them)."""
        tensors = self.find(frames)
        frame = torch.from_numpy(np.ascontiguousarray(frames))
        landmarks = torch.from_numpy(tensors[LANDMARKS])
        presence = torch.from_numpy(tensors[PRESENCE])
        target, largest_only = self.swapper.choices(frames.shape[0])
        tensors[TARGET], tensors[LARGEST_ONLY] = target.numpy(), largest_only.numpy()
        tensors[SWAPPED] = self.swapper(frame, landmarks, presence, target, largest_only).numpy()
        if self.scorer is not None:
            tensors[FAKE_SCORE] = self.scorer(frame, landmarks, presence).numpy()
        if self.reader is not None:
            tensors[MARK] = self.reader(frame, landmarks, presence)[0].numpy()
        return tensors


def default_identity(autoencoder: FaceAutoencoder) -> str:
    """The identity faces become when a request names none: the weights' last one in name
    order (b of the Megamind pair a, b; w of the real pair m, w)."""
    return list(autoencoder.decoders)[-1]


def load_autoencoder(options: PipelineOptions) -> FaceAutoencoder:
    """The trained autoencoder, or a seeded random one (with a warning) when none exists."""
    weights = options.weights_file()
    if weights is not None:
        if not weights.is_file():
            raise FileNotFoundError(f"autoencoder weights {weights} do not exist")
        return FaceAutoencoder.load(weights)
    log.warning("no trained autoencoder weights: using random weights (run `swaptron train`)")
    torch.manual_seed(RANDOM_SEED)
    preset = PRESETS[options.preset]
    if options.face_size is not None and options.face_size != preset.face_size:
        preset = type(preset)(**{**preset.__dict__, "face_size": options.face_size})
    return FaceAutoencoder(preset)


def build_finder(max_faces: int = 1, graph: GraphOptions | None = None,
                 face_detector: str = DEFAULT_VARIANT) -> FaceFinder:
    """The detector and landmarker modules for K = max_faces slots, in eval mode."""
    if face_detector not in VARIANTS:
        raise ValueError(f"face detector must be one of {sorted(VARIANTS)}, got {face_detector}")
    detector = FaceDetector(assets.tflite_path(assets.DETECTOR_WEIGHTS[face_detector]),
                            DetectorOptions(max_faces=max_faces), graph, VARIANTS[face_detector])
    landmarker = FaceLandmarker(assets.tflite_path(assets.LANDMARKER_TFLITE), graph)
    return FaceFinder(detector.eval(), landmarker.eval())


def build_pipeline(options: PipelineOptions) -> Pipeline:
    """Load weights and build the three modules."""
    finder = build_finder(options.max_faces, options.graph, options.face_detector)
    autoencoder = load_autoencoder(options)
    template = load_template()
    mark = build_mark(options.mark, len(autoencoder.decoders))
    swapper = FaceSwapper(autoencoder, options.identity or default_identity(autoencoder),
                          template, BlendOptions(), options.graph, mark)
    reader = MarkReader(options.mark.key)
    detector_file = options.detector_file()
    scorer = None if detector_file is None else build_scorer(detector_file, options.graph)
    return Pipeline(finder.detector, finder.landmarker, swapper.eval(),
                    Stabilizer(options.max_faces).eval(), scorer, reader.eval())
