"""Detail cues: the swap's own signature, measured against the same photo, inside the graph.

Our autoencoder draws the face at its own resolution, so a swapped face lacks the fine detail
that the hair, ears and background around it keep. Four cues per forensic crop (networks/crops.py:
faces aligned to the template, so the regions are fixed masks), each a log of a mean absolute
Laplacian of the grey crop, fine (3x3) or after a Gaussian blur (`MID_SIGMA`, the coarse band):
- fine detail inside the face against the ring around it (hair, ears, background);
- fine against coarse detail inside the face;
- that fine/coarse ratio inside the face against the ring's;
- fine detail inside the face.
The first three are ratios within one photo: a blurred, rescaled or recompressed photo moves its
face and its surroundings alike. `CueFusion` adds them to the detector's logit with the weights
fitted on the video validation split (training/forensics_serving.py fit_fusion).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional

from swaptron.networks.crops import forensic_template

CUES = 4
INNER_SCALE = 0.7  # the face's inner part: the template hull shrunk about its centre
RING_SCALES = (1.15, 1.6)  # the ring around the face: between these two scalings of the hull
MID_SIGMA = 2.0
LOG_FLOOR = 1e-2  # added before the log, so a flat region stays finite
GREY_WEIGHTS = (0.114, 0.587, 0.299)  # BGR
LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


@dataclass(frozen=True)
class Fusion:
    """logit' = logit_weight * logit + sum(weights * (cues - mean) / spread) + bias."""

    logit_weight: float
    weights: tuple[float, ...]
    mean: tuple[float, ...]
    spread: tuple[float, ...]
    bias: float

    def __post_init__(self) -> None:
        if not len(self.weights) == len(self.mean) == len(self.spread) == CUES:
            raise ValueError(f"a fusion needs {CUES} weights, means and spreads")
        if min(self.spread) <= 0.0:
            raise ValueError("a fusion's spreads must be positive")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (stored in the detector file and on the card)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Fusion:
        """The inverse of to_dict."""
        return cls(float(data["logit_weight"]),  # type: ignore[arg-type]
                   *(tuple(float(v) for v in data[key])  # type: ignore[union-attr]
                     for key in ("weights", "mean", "spread")),
                   float(data["bias"]))  # type: ignore[arg-type]


def hull_mask(template: np.ndarray, size: int, scale: float) -> np.ndarray:
    """[size,size] float32: the template points' convex hull scaled about their centre."""
    centre = template.mean(axis=0)
    points = (template - centre) * scale + centre
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    return mask.astype(np.float32)


class DetailCues(nn.Module):
    """Forensic crops [N,3,S,S] (BGR in [0,1]) -> cues [N,CUES] (float32), measured on one
    channel: `grey_weights` (B, G, R) mixes it (the served default: luma)."""

    def __init__(self, size: int, grey_weights: tuple[float, float, float] = GREY_WEIGHTS
                 ) -> None:
        super().__init__()
        template = forensic_template(size).numpy()
        inner = hull_mask(template, size, INNER_SCALE)
        ring = hull_mask(template, size, RING_SCALES[1]) - hull_mask(template, size,
                                                                     RING_SCALES[0])
        border = 1 + int(np.ceil(3 * MID_SIGMA))  # the valid convolutions' margin
        if inner[:border].any() or ring[:border].any() or ring[-border:].any():
            raise ValueError(f"a {size}-px crop leaves no margin for the detail cues")
        regions = np.stack([inner, ring])[:, border:size - border, border:size - border]
        self.register_buffer("regions", torch.from_numpy(regions / regions.sum(axis=(1, 2),
                                                                             keepdims=True)),
                             persistent=False)
        self.fine_margin = border - 1
        gauss = cv2.getGaussianKernel(2 * (border - 1) + 1, MID_SIGMA).astype(np.float32)[:, 0]
        self.register_buffer("gauss", torch.from_numpy(gauss), persistent=False)
        self.register_buffer("laplacian", torch.tensor(LAPLACIAN).reshape(1, 1, 3, 3),
                             persistent=False)
        self.register_buffer("grey", torch.tensor(grey_weights).reshape(1, 3, 1, 1),
                             persistent=False)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """-> [N,CUES]."""
        grey = (crops.float() * self.grey).sum(dim=1, keepdim=True) * 255.0
        taps = self.gauss.numel()
        coarse = functional.conv2d(grey, self.gauss.reshape(1, 1, 1, taps))
        coarse = functional.conv2d(coarse, self.gauss.reshape(1, 1, taps, 1))
        mid = functional.conv2d(coarse, self.laplacian).abs()
        margin = self.fine_margin
        fine = functional.conv2d(grey[:, :, margin:-margin, margin:-margin],
                                 self.laplacian).abs()
        fine_means = (fine * self.regions).sum(dim=(2, 3))  # [N,2]: inner, ring
        mid_means = (mid * self.regions).sum(dim=(2, 3))
        fine_log, mid_log = torch.log(fine_means + LOG_FLOOR), torch.log(mid_means + LOG_FLOOR)
        ratio = fine_log - mid_log
        return torch.stack([fine_log[:, 0] - fine_log[:, 1], ratio[:, 0],
                            ratio[:, 0] - ratio[:, 1], fine_log[:, 0]], dim=1)


class CueFusion(nn.Module):
    """A detector whose logit is fused with the detail cues: crops [N,3,S,S] -> logit [N]."""

    def __init__(self, detector: nn.Module, size: int, fusion: Fusion,
                 grey_weights: tuple[float, float, float] = GREY_WEIGHTS) -> None:
        super().__init__()
        self.detector = detector
        self.cues = DetailCues(size, grey_weights)
        self.logit_weight = fusion.logit_weight
        self.fusion_bias = fusion.bias
        self.register_buffer("weights", torch.tensor(fusion.weights) / torch.tensor(
            fusion.spread), persistent=False)
        self.register_buffer("offset", torch.tensor(fusion.mean), persistent=False)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """-> the fused logit [N] (float32)."""
        logit = self.detector(crops).reshape(-1).float()
        cues = self.cues(crops)
        return (self.logit_weight * logit + ((cues - self.offset) * self.weights).sum(dim=1)
                + self.fusion_bias)
