"""DeepFaceLive's whole_face alignment for DFM models, in numpy: frame -> R x R face crop.

DeepFaceLive (FaceAligner, FLandmarks2D.calc_cut) fits a similarity from FaceMesh landmarks onto
a mean face whose unit square is the face's central box, and cuts the square of side `coverage`
(2.2) around that square's centre, moved by (x_offset, y_offset) (0, -0.08: more forehead), in
the template's units, scaled to R pixels. A similarity maps squares to squares, so building the
crop from the square's corners, as DeepFaceLive does, gives the same crop.

The mean face here is our own (`dfm_template`): our face template (networks/face_template.py)
under one fixed normalisation to that convention, fitted on our rigid points (RIGID_POINTS); no
data of DeepFaceLive's is used. docs/dfm.md states how close the crop comes to DeepFaceLive's.

Coordinates here are swaptron's: continuous pixels, pixel (0, 0) covering [0,1) x [0,1), as the
landmarker's LANDMARKS. `opencv_matrix` converts a matrix for cv2.warpAffine (integer centres).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from swaptron.networks.face_template import RIGID_POINTS, load_template

# The normalisation taking our template (unit square, outline TEMPLATE_FILL = 0.8 tall) to the
# DFM convention "unit square = the face's central box": scale by 7/4 about the square's centre,
# so the outline is 1.4 units tall and the unit square covers the central 5/7 of it (brows to
# mouth), then put our square's centre at (0.5, 0.48), 0.02 units up (docs/dfm.md).
DFM_TEMPLATE_SCALE = 1.75
DFM_TEMPLATE_CENTRE = (0.5, 0.48)


@dataclass(frozen=True)
class AlignOptions:
    """DeepFaceLive's FaceAligner defaults for DFM models (align mode FROM_POINTS)."""

    coverage: float = 2.2
    x_offset: float = 0.0
    y_offset: float = -0.08
    rigid_only: bool = True  # fit on the rigid points alone (DeepFaceLive: no moving parts)


@dataclass(frozen=True)
class DfmTemplate:
    """The mean face DFM crops are aligned to: 468 points and the rigid points' indices."""

    points: np.ndarray  # [468,2] in template units
    rigid: tuple[int, ...]

    def fitted_indices(self, rigid_only: bool) -> np.ndarray:
        """Indices of the landmarks the similarity is fitted on."""
        every = np.arange(self.points.shape[0])
        return np.asarray(sorted(self.rigid)) if rigid_only else every


def dfm_normalisation() -> np.ndarray:
    """The fixed affine [2,3] from our template's unit square to DFM template units."""
    scale = DFM_TEMPLATE_SCALE
    centre_x, centre_y = DFM_TEMPLATE_CENTRE
    return np.array([[scale, 0.0, centre_x - 0.5 * scale], [0.0, scale, centre_y - 0.5 * scale]])


def load_dfm_template() -> DfmTemplate:
    """Our template in DFM units (dfm_normalisation), fitted on RIGID_POINTS."""
    points = transform(load_template().astype(np.float64), dfm_normalisation())
    return DfmTemplate(points, tuple(RIGID_POINTS))


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity [2,3] (scale, rotation, shift) taking source [N,2] to target
    [N,2] (Umeyama's estimate without reflection)."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    s, t = source - source_mean, target - target_mean
    norm = max(float((s * s).sum()), 1e-12)
    a = float((s * t).sum()) / norm
    b = float((s[:, 0] * t[:, 1] - s[:, 1] * t[:, 0]).sum()) / norm
    linear = np.array([[a, -b], [b, a]])
    return np.hstack([linear, (target_mean - linear @ source_mean)[:, None]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The affine [2,3] applying `inner` first, then `outer`."""
    linear = outer[:, :2] @ inner[:, :2]
    return np.hstack([linear, (outer[:, :2] @ inner[:, 2:3]) + outer[:, 2:3]])


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of an invertible affine [2,3]."""
    linear = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear, -(linear @ matrix[:, 2:3])])


def transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points [N,2] through an affine [2,3]."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def template_to_crop(resolution: int, options: AlignOptions) -> np.ndarray:
    """Affine [2,3] from template units to crop pixels: the square of side `coverage` centred
    at (0.5 + x_offset, 0.5 + y_offset) becomes [0,R] x [0,R]."""
    scale = resolution / options.coverage
    centre = np.array([0.5 + options.x_offset, 0.5 + options.y_offset])
    shift = resolution / 2.0 - scale * centre
    return np.array([[scale, 0.0, shift[0]], [0.0, scale, shift[1]]])


def whole_face_matrix(landmarks: np.ndarray, template: DfmTemplate, resolution: int,
                      options: AlignOptions | None = None) -> np.ndarray:
    """Affine [2,3] from frame pixels to the R x R whole_face crop of one face.

    landmarks: the face's 468 FaceMesh points [468,2] in frame pixels.
    """
    options = options or AlignOptions()
    fitted = template.fitted_indices(options.rigid_only)
    to_template = similarity(np.asarray(landmarks, np.float64)[fitted], template.points[fitted])
    return compose(template_to_crop(resolution, options), to_template)


def opencv_matrix(matrix: np.ndarray) -> np.ndarray:
    """The affine for cv2.warpAffine (pixel centres at integers) of one in continuous pixels."""
    half = np.array([0.5, 0.5])
    shifted = matrix.copy()
    shifted[:, 2] = matrix[:, 2] + matrix[:, :2] @ half - half
    return shifted


def cut_face(frame: np.ndarray, matrix: np.ndarray, resolution: int) -> np.ndarray:
    """The R x R crop [R,R,3] float32 in 0..1 (BGR) of a uint8 BGR frame, bilinear, zero
    outside the frame (as DeepFaceLive's cut)."""
    crop = cv2.warpAffine(frame, opencv_matrix(matrix), (resolution, resolution),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return crop.astype(np.float32) / 255.0
