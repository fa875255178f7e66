"""Three verdicts on a face from the forgery score: "likely real", "likely swapped", "uncertain".

A calibrated probability of a swap above `threshold` (the `forensics` model's config parameter)
says "likely swapped"; below `real_below` (a second, lower cut) "likely real"; between the two,
"uncertain". A face outside the detector's domain (too small, too blurry, too dark or too bright,
by the measurable facts of DomainRules) is "uncertain" whatever its score: the detector never saw
such faces, so its score claims nothing. Pure functions, no tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

LIKELY_REAL = "likely real"
LIKELY_SWAPPED = "likely swapped"
UNCERTAIN = "uncertain"
VERDICTS = (LIKELY_REAL, UNCERTAIN, LIKELY_SWAPPED)


@dataclass(frozen=True)
class DomainFacts:
    """What is measured of one face: its width in frame pixels (landmarks' horizontal extent),
    its sharpness (variance of the Laplacian of the grey crop, 0-255 scale, at the detector's
    input size) and its mean luma (0-255, the crop's central half)."""

    width_px: float
    sharpness: float
    luma: float


@dataclass(frozen=True)
class DomainRules:
    """The face the detector can judge: at least `min_width_px` wide, at least `min_sharpness`
    sharp, mean luma within [min_luma, max_luma]."""

    min_width_px: float = 0.0
    min_sharpness: float = 0.0
    min_luma: float = 0.0
    max_luma: float = 255.0


def in_domain(facts: DomainFacts, rules: DomainRules) -> bool:
    """True when every rule holds."""
    return (facts.width_px >= rules.min_width_px and facts.sharpness >= rules.min_sharpness
            and rules.min_luma <= facts.luma <= rules.max_luma)


def check_cuts(real_below: float, threshold: float) -> None:
    """ValueError unless 0 <= real_below <= threshold <= 1."""
    if not 0.0 <= real_below <= threshold <= 1.0:
        raise ValueError(f"need 0 <= real_below <= threshold <= 1, got real_below {real_below}, "
                         f"threshold {threshold}")


def verdict(score: float, real_below: float, threshold: float, inside: bool = True) -> str:
    """The verdict on one face: `score` the calibrated probability of a swap, `inside` whether
    the face is within the detector's domain."""
    check_cuts(real_below, threshold)
    if not inside:
        return UNCERTAIN
    if score > threshold:
        return LIKELY_SWAPPED
    if score < real_below:
        return LIKELY_REAL
    return UNCERTAIN


def verdict_shares(scores: list[float], real_below: float, threshold: float,
                   inside: list[bool] | None = None) -> dict[str, float]:
    """Share of faces per verdict (0 for every verdict when there is no face)."""
    flags = inside if inside is not None else [True] * len(scores)
    if len(flags) != len(scores):
        raise ValueError(f"{len(scores)} scores but {len(flags)} domain flags")
    counts = dict.fromkeys(VERDICTS, 0)
    for value, flag in zip(scores, flags, strict=True):
        counts[verdict(value, real_below, threshold, flag)] += 1
    total = max(len(scores), 1)
    return {name: count / total for name, count in counts.items()}


@dataclass(frozen=True)
class Cuts:
    """A served detector's two cuts, as its config gives them (`real_below` <= `threshold`)."""

    threshold: float
    real_below: float

    def band(self, score: float) -> str:
        """The verdict on one score of a face the served graph judged (it holds faces outside
        its domain in the uncertain band itself)."""
        return verdict(score, self.real_below, self.threshold)
