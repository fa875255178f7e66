"""The `forensics` graph: a fake score per face slot, every per-frame step inside the graph.

Inputs `FRAME` uint8 [B,H,W,3] BGR, `LANDMARKS` [B,K,468,2] and `PRESENCE` [B,K] (the
landmarker's). Each slot's face is cropped with the forensic crop (networks/crops.py: the
training data's crop), the detector scores it, and `FAKE_SCORE` [B,K] is the probability that
the face was swapped, in [0,1]. A slot without a face (presence at or below the threshold)
carries EMPTY_SCORE, -1, so that no client mistakes it for a real face. Fixed shapes: every slot
runs through the detector.

With `ScoreServing` (carried in the committed detector file by `swaptron forensics evaluate`) the
graph also calibrates and guards the score: the logit goes through the Platt calibration fitted on
the video validation split (p = sigmoid(scale * logit + bias)), the logit fused with the detail
cues (networks/detail_cues.py) when the file carries a fusion, and a face outside the detector's
domain (swaptron/verdicts.py DomainRules: narrower than min_width_px, a Laplacian variance under
min_sharpness, mean luma outside [min_luma, max_luma], all measured inside the graph) has its
score clamped into the uncertain band [real_below, threshold - BAND_MARGIN], so that it can never
read as "likely swapped" nor "likely real". Inputs and outputs are unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

from swaptron.networks.crops import forensic_crops, forensic_template
from swaptron.networks.detail_cues import CueFusion, Fusion
from swaptron.networks.forensics import build_members
from swaptron.networks.geometry import GraphOptions, Precision
from swaptron.verdicts import DomainRules, check_cuts

EMPTY_SCORE = -1.0
PRESENCE_THRESHOLD = 0.5
LUMA_WEIGHTS = (0.114, 0.587, 0.299)  # BGR
BAND_MARGIN = 1e-4  # a guarded score stays this far under `threshold` (clients that read
# "at or above the threshold" as swapped see it as uncertain too)


@dataclass(frozen=True)
class ScoreServing:
    """How the graph turns a logit into the served score: Platt calibration, the two cuts of
    the verdict bands, and the domain rules."""

    scale: float = 1.0
    bias: float = 0.0
    real_below: float = 0.0
    threshold: float = 1.0
    rules: DomainRules = field(default_factory=DomainRules)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (stored in the detector file and on the card)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ScoreServing:
        """The inverse of to_dict."""
        rules = DomainRules(**data["rules"])  # type: ignore[arg-type]
        return cls(**{**data, "rules": rules})  # type: ignore[arg-type]


def domain_facts(crops: torch.Tensor, landmarks: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per face: width in frame pixels (landmarks' x extent), sharpness (variance of the 3x3
    Laplacian of the grey crop, 0-255 scale) and mean luma (0-255) of the crop's central half.
    `crops` [N,3,S,S] BGR in [0,1], `landmarks` [N,468,2] -> three [N] tensors."""
    x = landmarks[..., 0]
    width = x.max(dim=-1).values - x.min(dim=-1).values
    weights = torch.tensor(LUMA_WEIGHTS, dtype=crops.dtype).reshape(1, 3, 1, 1)
    grey = (crops * weights).sum(dim=1, keepdim=True) * 255.0
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
                          dtype=crops.dtype).reshape(1, 1, 3, 3)
    laplacian = functional.conv2d(grey, kernel)
    mean = laplacian.mean(dim=(1, 2, 3))
    sharpness = (laplacian * laplacian).mean(dim=(1, 2, 3)) - mean * mean
    side = crops.shape[-1]
    centre = grey[:, :, side // 4:side - side // 4, side // 4:side - side // 4]
    return width, sharpness, centre.mean(dim=(1, 2, 3))


class FakeScorer(nn.Module):
    """Frame + landmarks -> the detector's probability of a swap, per face slot (calibrated and
    guarded by `serving` when given)."""

    def __init__(self, detector: nn.Module, input_size: int,
                 graph: GraphOptions | None = None, serving: ScoreServing | None = None) -> None:
        super().__init__()
        self.graph = graph or GraphOptions()
        self.detector = detector
        self.input_size = input_size
        self.serving = serving
        if serving is not None:
            check_cuts(serving.real_below, serving.threshold)
        self.register_buffer("template", forensic_template(input_size).float(),
                             persistent=False)

    def forward(self, frame: torch.Tensor, landmarks: torch.Tensor, presence: torch.Tensor
                ) -> torch.Tensor:
        """-> FAKE_SCORE [B,K]."""
        batch, slots = landmarks.shape[0], landmarks.shape[1]
        crops, _ = forensic_crops(frame, landmarks, self.template, self.input_size, self.graph,
                                  presence > PRESENCE_THRESHOLD)
        logits = self.detector(crops).reshape(batch, slots).float()
        if self.serving is None:
            scores = torch.sigmoid(logits)
        else:
            scores = self.guarded(torch.sigmoid(logits * self.serving.scale + self.serving.bias),
                                  crops.float(), landmarks.float())
        empty = torch.full_like(scores, EMPTY_SCORE)
        return torch.where(presence > PRESENCE_THRESHOLD, scores, empty)

    def inside(self, crops: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """[B,K] bool: which faces are within the detector's domain."""
        rules = self.serving.rules if self.serving is not None else DomainRules()
        batch, slots = landmarks.shape[0], landmarks.shape[1]
        width, sharpness, luma = domain_facts(crops, landmarks.reshape(batch * slots, -1, 2))
        inside = ((width >= rules.min_width_px) & (sharpness >= rules.min_sharpness)
                  & (luma >= rules.min_luma) & (luma <= rules.max_luma))
        return inside.reshape(batch, slots)

    def guarded(self, scores: torch.Tensor, crops: torch.Tensor, landmarks: torch.Tensor
                ) -> torch.Tensor:
        """Scores of faces outside the domain clamped into [real_below, threshold]."""
        serving = self.serving or ScoreServing()
        top = max(serving.real_below, serving.threshold - BAND_MARGIN)
        banded = scores.clamp(min=serving.real_below, max=top)
        return torch.where(self.inside(crops, landmarks), scores, banded)


def load_detector(path: Path) -> tuple[nn.Module, dict[str, object]]:
    """A trained detector (eval mode, float32) and its metadata (model, input_size, recipe)
    from a `detector.pt` that `swaptron forensics train` wrote (or its committed copy); fused
    with the detail cues (networks/detail_cues.py) when the file carries a fusion."""
    network, meta = load_network(path)
    return fused(network, meta), meta


def fused(network: nn.Module, meta: dict[str, object]) -> nn.Module:
    """The network fused with the detail cues when `meta` carries a fusion, else the network."""
    fusion = meta.get("fusion")
    if not isinstance(fusion, dict):
        return network
    return CueFusion(network, int(meta["input_size"]), Fusion.from_dict(fusion)).eval()


def load_network(path: Path) -> tuple[nn.Module, dict[str, object]]:
    """The trained network alone (eval mode, float32; a MeanLogit when the file carries several
    `members`, `swaptron forensics combine`) and its metadata."""
    if not path.is_file():
        raise FileNotFoundError(f"detector weights {path} do not exist: run "
                                "`make forensics-weights`")
    saved = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data
    model = build_members(saved["model"], saved["input_size"], int(saved.get("members", 1)))
    model.load_state_dict({key: value.float() if value.is_floating_point() else value
                           for key, value in saved["state_dict"].items()})
    return model.eval(), {key: value for key, value in saved.items() if key != "state_dict"}


def build_scorer(path: Path, graph: GraphOptions | None = None) -> FakeScorer:
    """The `forensics` graph's module around a trained detector file (float16 network with
    the tensorrt target's --fp16)."""
    network, meta = load_network(path)
    graph = graph or GraphOptions()
    serving = meta.get("serving")
    detector = fused(Precision(network, graph.fp16_networks), meta)
    return FakeScorer(detector, int(meta["input_size"]),
                      graph, ScoreServing.from_dict(serving) if isinstance(serving, dict)
                      else None).eval()
