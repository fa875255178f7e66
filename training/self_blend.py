"""Self-blended images (Shiohara & Yamasaki, CVPR 2022): fakes made from one real face.

A copy of the face gets colour, brightness and sharpness changes and a small affine shift, and is
blended back into the original through a mask: the hull of the face outline, elastically
deformed, eroded or dilated, blurred, at a random blend ratio. A detector trained to find these
blends learns the traces every face swap leaves (a boundary, a colour and sharpness mismatch)
instead of one generator's fingerprints. JPEG compression at quality 40-100 is applied to real
and fake faces alike, so that compression tells nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from swaptron.networks.face_template import FACE_OVAL

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
JPEG_QUALITY = (40, 100)


@dataclass(frozen=True)
class SelfBlend:
    """One self-blended fake: the image (uint8 BGR) and the blend mask it was made with."""

    image: np.ndarray
    mask: np.ndarray  # float32 [H,W] in [0,1]; 0 wherever the fake equals the real face


def hull_mask(landmarks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 [H,W]: 1 inside the convex hull of the face outline, 0 outside."""
    mask = np.zeros(size, np.float32)
    hull = cv2.convexHull(landmarks[list(FACE_OVAL)].round().astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1.0)
    return mask


def elastic(mask: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """The mask moved by a smooth random displacement field of up to `strength` pixels."""
    height, width = mask.shape
    coarse = rng.uniform(-1.0, 1.0, (2, 5, 5)).astype(np.float32) * strength
    shift_x = cv2.resize(coarse[0], (width, height), interpolation=cv2.INTER_CUBIC)
    shift_y = cv2.resize(coarse[1], (width, height), interpolation=cv2.INTER_CUBIC)
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32),
                                 np.arange(height, dtype=np.float32))
    return cv2.remap(mask, grid_x + shift_x, grid_y + shift_y, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def blend_mask(landmarks: np.ndarray, size: tuple[int, int], rng: np.random.Generator
               ) -> np.ndarray:
    """The random blend mask [H,W] in [0,1] for a face (hull, deformed, eroded or dilated,
    blurred, scaled by a blend ratio)."""
    side = min(size)
    mask = elastic(hull_mask(landmarks, size), rng, strength=0.04 * side)
    radius = int(rng.integers(0, max(2, int(0.06 * side))))
    if radius > 0:
        kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
        mask = cv2.erode(mask, kernel) if rng.random() < 0.5 else cv2.dilate(mask, kernel)
    sigma = float(rng.uniform(0.01, 0.05)) * side
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    mask = mask / max(float(mask.max()), 1e-6)
    mask[mask < 1e-3] = 0.0  # the blur's far tails: keep the fake exact outside the face
    return (mask * float(rng.choice(BLEND_RATIOS))).astype(np.float32)


def altered_source(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of the face with other colours, brightness and sharpness, slightly moved."""
    source = image.astype(np.float32)
    gains = rng.uniform(0.9, 1.1, 3).astype(np.float32)
    source = source * gains + rng.uniform(-20.0, 20.0)
    contrast = rng.uniform(0.85, 1.15)
    source = (source - source.mean()) * contrast + source.mean()
    if rng.random() < 0.5:  # softer
        source = cv2.GaussianBlur(source, (0, 0), float(rng.uniform(0.5, 1.5)))
    else:  # sharper
        blurred = cv2.GaussianBlur(source, (0, 0), 1.0)
        source = source + float(rng.uniform(0.3, 1.0)) * (source - blurred)
    height, width = image.shape[:2]
    scale = rng.uniform(0.96, 1.04)
    shift = rng.uniform(-0.03, 0.03, 2) * np.array([width, height])
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, scale)
    matrix[:, 2] += shift
    source = cv2.warpAffine(source, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
    return np.clip(source, 0.0, 255.0)


def self_blend(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator
               ) -> SelfBlend:
    """A self-blended fake of a real face crop (uint8 BGR [H,W,3], its 468 landmarks in crop
    pixels). Pixels where the mask is 0 keep their exact value."""
    mask = blend_mask(landmarks, image.shape[:2], rng)
    source = altered_source(image, rng)
    weight = mask[..., None]
    fake = weight * source + (1.0 - weight) * image.astype(np.float32)
    fake = np.where(weight > 0, np.clip(np.round(fake), 0, 255), image)
    return SelfBlend(fake.astype(np.uint8), mask)


def jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image through JPEG at a random quality from JPEG_QUALITY."""
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode a JPEG")
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)
