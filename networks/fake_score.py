"""The `forensics` graph: a fake score per face slot, every per-frame step inside the graph.

Inputs `FRAME` uint8 [B,H,W,3] BGR, `LANDMARKS` [B,K,468,2] and `PRESENCE` [B,K] (the
landmarker's). Each slot's face is cropped with the forensic crop (networks/crops.py: the
training data's crop), the detector scores it, and `FAKE_SCORE` [B,K] is the probability that
the face was swapped, in [0,1]. A slot without a face (presence at or below the threshold)
carries EMPTY_SCORE, -1, so that no client mistakes it for a real face. Fixed shapes: every slot
runs through the detector.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from swaptron.networks.crops import forensic_crops, forensic_template
from swaptron.networks.forensics import build_detector
from swaptron.networks.geometry import GraphOptions, Precision

EMPTY_SCORE = -1.0
PRESENCE_THRESHOLD = 0.5


class FakeScorer(nn.Module):
    """Frame + landmarks -> the detector's probability of a swap, per face slot."""

    def __init__(self, detector: nn.Module, input_size: int,
                 graph: GraphOptions | None = None) -> None:
        super().__init__()
        self.graph = graph or GraphOptions()
        self.detector = detector
        self.input_size = input_size
        self.register_buffer("template", forensic_template(input_size).float(),
                             persistent=False)

    def forward(self, frame: torch.Tensor, landmarks: torch.Tensor, presence: torch.Tensor
                ) -> torch.Tensor:
        """-> FAKE_SCORE [B,K]."""
        batch, slots = landmarks.shape[0], landmarks.shape[1]
        crops, _ = forensic_crops(frame, landmarks, self.template, self.input_size, self.graph,
                                  presence > PRESENCE_THRESHOLD)
        scores = torch.sigmoid(self.detector(crops)).reshape(batch, slots)
        empty = torch.full_like(scores, EMPTY_SCORE)
        return torch.where(presence > PRESENCE_THRESHOLD, scores, empty)


def load_detector(path: Path) -> tuple[nn.Module, dict[str, object]]:
    """A trained detector (eval mode, float32) and its metadata (model, input_size, recipe)
    from a `detector.pt` that `swaptron forensics train` wrote (or its committed copy)."""
    if not path.is_file():
        raise FileNotFoundError(f"detector weights {path} do not exist: run "
                                "`make forensics-weights`")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    model = build_detector(saved["model"], saved["input_size"])
    model.load_state_dict({key: value.float() if value.is_floating_point() else value
                           for key, value in saved["state_dict"].items()})
    return model.eval(), {key: value for key, value in saved.items() if key != "state_dict"}


def build_scorer(path: Path, graph: GraphOptions | None = None) -> FakeScorer:
    """The `forensics` graph's module around a trained detector file (float16 network with
    the tensorrt target's --fp16)."""
    detector, meta = load_detector(path)
    graph = graph or GraphOptions()
    return FakeScorer(Precision(detector, graph.fp16_networks), int(meta["input_size"]),
                      graph).eval()
