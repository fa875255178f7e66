"""Photo-like degradations for the forgery detectors' training faces, real and fake alike.

Video faces all come from a handful of cameras and codecs; photographs do not. Each degradation
below is drawn independently, so a face may be rescaled (0.25-2x, then back to its size), blurred,
sharpened, noised, recoloured (channel gains, gamma), turned grey and JPEG-compressed at quality
30-95. Applied to real faces and to fakes the same way, none of these tells real from fake, so the
detector cannot key on them (face size, sharpness, colour, compression) and has to find the blend.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PhotoAugment:
    """How often and how strongly each degradation is applied."""

    rescale: tuple[float, float] = (0.25, 2.0)
    p_rescale: float = 0.6
    blur_sigma: tuple[float, float] = (0.3, 1.8)
    p_blur: float = 0.3
    sharpen: tuple[float, float] = (0.3, 1.5)
    p_sharpen: float = 0.2
    noise_sigma: tuple[float, float] = (1.0, 8.0)
    p_noise: float = 0.3
    gain: tuple[float, float] = (0.85, 1.15)
    gamma: tuple[float, float] = (0.7, 1.4)
    p_colour: float = 0.5
    p_grey: float = 0.1
    jpeg_quality: tuple[int, int] = (30, 95)
    p_jpeg: float = 0.8


def rescaled(image: np.ndarray, scale: float) -> np.ndarray:
    """The image resized by `scale` and back to its size (detail lost below 1, resampled above)."""
    height, width = image.shape[:2]
    small = (max(8, round(width * scale)), max(8, round(height * scale)))
    down = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
    up = cv2.INTER_LINEAR if scale < 1.0 else cv2.INTER_AREA
    return cv2.resize(cv2.resize(image, small, interpolation=down), (width, height),
                      interpolation=up)


def recoloured(image: np.ndarray, gains: np.ndarray, gamma: float) -> np.ndarray:
    """Per-channel gains, then a gamma curve (float32 in [0,255] out)."""
    scaled = np.clip(image.astype(np.float32) * gains, 0.0, 255.0)
    return 255.0 * (scaled / 255.0) ** gamma


def jpeg_at(image: np.ndarray, quality: int) -> np.ndarray:
    """The image through JPEG at `quality`; ValueError when OpenCV cannot encode it."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode a JPEG")
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


def photo_augment(image: np.ndarray, rng: np.random.Generator,
                  config: PhotoAugment | None = None) -> np.ndarray:
    """A photo-like version of a face crop (uint8 BGR [H,W,3] in and out)."""
    config = config or PhotoAugment()
    out = image.astype(np.float32)
    if rng.random() < config.p_rescale:
        out = rescaled(out, float(rng.uniform(*config.rescale)))
    if rng.random() < config.p_blur:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(*config.blur_sigma)))
    elif rng.random() < config.p_sharpen:
        soft = cv2.GaussianBlur(out, (0, 0), 1.0)
        out = out + float(rng.uniform(*config.sharpen)) * (out - soft)
    if rng.random() < config.p_colour:
        out = recoloured(out, rng.uniform(*config.gain, 3).astype(np.float32),
                         float(rng.uniform(*config.gamma)))
    if rng.random() < config.p_noise:
        out = out + rng.normal(0.0, float(rng.uniform(*config.noise_sigma)), out.shape)
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    if rng.random() < config.p_grey:
        out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if rng.random() < config.p_jpeg:
        out = jpeg_at(out, int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1)))
    return out
