"""Build the three PyTorch modules of the pipeline and run them on frames (the eager reference)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from swaptron import assets
from swaptron.networks.autoencoder import PRESETS, FaceAutoencoder
from swaptron.networks.detector import DetectorOptions, FaceDetector
from swaptron.networks.face_template import load_template
from swaptron.networks.geometry import GraphOptions
from swaptron.networks.landmarker import FaceLandmarker
from swaptron.networks.swapper import BlendOptions, FaceSwapper
from swaptron.specs import (
    DETECTOR,
    DIRECTIONS,
    FACES,
    FRAME,
    KEYPOINTS,
    LANDMARKER,
    LANDMARKS,
    PRESENCE,
    SWAPPED,
    SWAPPER,
)

RANDOM_SEED = 0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineOptions:
    """What the exported graphs are built from."""

    max_faces: int = 2
    weights: Path | None = None  # autoencoder safetensors; None: the demo weights if present
    direction: str = "a2b"
    preset: str = "lite"  # used only when there are no weights (random initialisation)
    face_size: int | None = None  # only with random weights: overrides the preset's S
    graph: GraphOptions = field(default_factory=GraphOptions)  # tensorrt: fixed shapes, fp16

    def weights_file(self) -> Path | None:
        """The autoencoder weights to load, None for a randomly initialised autoencoder."""
        if self.weights is not None:
            return self.weights
        demo = assets.demo_weights()
        return demo if demo.is_file() else None


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
    """The detector, landmarker and swapper modules, in eval mode: the PyTorch reference of
    the ensemble, and what is exported."""

    swapper: FaceSwapper

    def modules(self) -> dict[str, torch.nn.Module]:
        """Modules by model name."""
        return {DETECTOR: self.detector, LANDMARKER: self.landmarker, SWAPPER: self.swapper}

    @torch.no_grad()
    def run(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Every tensor of the ensemble for uint8 BGR frames [B,H,W,3]."""
        tensors = self.find(frames)
        swapped = self.swapper(torch.from_numpy(np.ascontiguousarray(frames)),
                               torch.from_numpy(tensors[LANDMARKS]),
                               torch.from_numpy(tensors[PRESENCE]))
        return {**tensors, SWAPPED: swapped.numpy()}


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


def build_finder(max_faces: int = 1, graph: GraphOptions | None = None) -> FaceFinder:
    """The detector and landmarker modules for K = max_faces slots, in eval mode."""
    detector = FaceDetector(assets.tflite_path(assets.DETECTOR_TFLITE),
                            DetectorOptions(max_faces=max_faces), graph)
    landmarker = FaceLandmarker(assets.tflite_path(assets.LANDMARKER_TFLITE), graph)
    return FaceFinder(detector.eval(), landmarker.eval())


def build_pipeline(options: PipelineOptions) -> Pipeline:
    """Load weights and build the three modules."""
    if options.direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {sorted(DIRECTIONS)}, got {options.direction}")
    finder = build_finder(options.max_faces, options.graph)
    autoencoder = load_autoencoder(options)
    swapper = FaceSwapper(autoencoder, DIRECTIONS[options.direction], load_template(),
                          BlendOptions(), options.graph)
    return Pipeline(finder.detector, finder.landmarker, swapper.eval())
