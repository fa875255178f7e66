"""Run a DFM on a frame and merge its face back, as DeepFaceLive's FaceMerger does (numpy/cv2).

The reference the served path is measured against. Merge defaults are FaceMerger's: mask = face
mask x celeb mask, eroded (5) and blurred (25) with a fade to the crop border, warped back with
the inverse of the crop's matrix (bilinear), alpha below 1/255 dropped, then
frame x (1 - mask) + face x mask at opacity 1. No colour transfer (FaceMerger offers RCT).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import onnxruntime as ort

from swaptron.networks.dfm import DfmInfo
from swaptron.networks.dfm_align import (
    AlignOptions,
    DfmTemplate,
    cut_face,
    invert,
    opencv_matrix,
    whole_face_matrix,
)

DEFAULT_MORPH = 0.75  # DeepFaceLive's morph factor for AMP models
ALPHA_FLOOR = 1.0 / 255.0
MIN_SCALE = 1e-9  # determinant below which a face's crop matrix is degenerate


@dataclass(frozen=True)
class MergeOptions:
    """FaceMerger's defaults."""

    erode: int = 5
    blur: int = 25
    face_mask: bool = True  # use the model's mask of the input face
    celeb_mask: bool = True  # use the model's mask of the celeb face


@dataclass(frozen=True)
class DfmRun:
    """How a DFM is applied to frames."""

    align: AlignOptions = field(default_factory=AlignOptions)
    merge: MergeOptions = field(default_factory=MergeOptions)
    morph: float = DEFAULT_MORPH


def erode_blur(mask: np.ndarray, erode: int, blur: int) -> np.ndarray:
    """Mask [R,R] in 0..1 eroded (negative: dilated) by 3x3 ellipse steps of erode // 2, cut to
    zero within blur // 2 of the border, then Gaussian-blurred with sigma blur / 4; the border is
    padded with zeros by one crop side so the erosion and blur see black beyond it."""
    side_y, side_x = mask.shape
    padded = cv2.copyMakeBorder(mask.astype(np.float32), side_y, side_y, side_x, side_x,
                                cv2.BORDER_CONSTANT, value=0.0)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    if erode > 0:
        padded = cv2.erode(padded, kernel, iterations=max(1, erode // 2))
    elif erode < 0:
        padded = cv2.dilate(padded, kernel, iterations=max(1, -erode // 2))
    band_y, band_x = side_y + blur // 2, side_x + blur // 2
    padded[:band_y], padded[-band_y:] = 0.0, 0.0
    padded[:, :band_x], padded[:, -band_x:] = 0.0, 0.0
    if blur > 0:
        padded = cv2.GaussianBlur(padded, (0, 0), blur * 0.25)
    return padded[side_y:-side_y, side_x:-side_x]


def merge_face(frame: np.ndarray, matrix: np.ndarray, celeb_face: np.ndarray,
               face_mask: np.ndarray, celeb_mask: np.ndarray,
               options: MergeOptions | None = None) -> np.ndarray:
    """The uint8 BGR frame with one swapped face composited in.

    matrix: frame pixels -> crop pixels (whole_face_matrix); celeb_face [R,R,3], face_mask and
    celeb_mask [R,R,1] (or [R,R]), all in 0..1, as the DFM outputs them.
    """
    options = options or MergeOptions()
    mask = np.ones(celeb_face.shape[:2], np.float32)
    if options.face_mask:
        mask = mask * face_mask.reshape(mask.shape)
    if options.celeb_mask:
        mask = mask * celeb_mask.reshape(mask.shape)
    mask = erode_blur(mask, options.erode, options.blur)
    height, width = frame.shape[:2]
    back = invert(opencv_matrix(matrix))
    frame_mask = cv2.warpAffine(mask, back, (width, height), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT)
    frame_mask = np.where(frame_mask <= ALPHA_FLOOR, 0.0, np.minimum(frame_mask, 1.0))
    frame_face = cv2.warpAffine(celeb_face.astype(np.float32), back, (width, height),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    original = frame.astype(np.float32) / 255.0
    alpha = frame_mask[..., None].astype(np.float32)
    merged = original * (1.0 - alpha) + np.clip(frame_face, 0.0, 1.0) * alpha
    return np.clip(np.rint(merged * 255.0), 0, 255).astype(np.uint8)


def run_dfm(session: ort.InferenceSession, info: DfmInfo, faces: np.ndarray,
            morph: float = DEFAULT_MORPH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(face mask, celeb face, celeb mask) of aligned faces [N,R,R,3] float32 0..1 BGR."""
    feed = {info.input_names[0]: np.ascontiguousarray(faces, dtype=np.float32)}
    if info.has_morph:
        feed[info.input_names[1]] = np.array([morph], np.float32)
    face_mask, celeb_face, celeb_mask = session.run(None, feed)
    return face_mask, celeb_face, celeb_mask


def swap_frame(frame: np.ndarray, faces: list[np.ndarray], session: ort.InferenceSession,
               info: DfmInfo, template: DfmTemplate, run: DfmRun | None = None) -> np.ndarray:
    """A uint8 BGR frame with every face (468 landmarks [468,2] in frame pixels each) swapped
    through the DFM: align, one batched run, merge one face after the other."""
    run = run or DfmRun()
    if not faces:
        return frame.copy()
    matrices = [whole_face_matrix(points, template, info.resolution, run.align)
                for points in faces]
    matrices = [matrix for matrix in matrices if abs(np.linalg.det(matrix[:, :2])) > MIN_SCALE]
    if not matrices:  # only degenerate landmarks (all points equal)
        return frame.copy()
    crops = np.stack([cut_face(frame, matrix, info.resolution) for matrix in matrices])
    face_masks, celeb_faces, celeb_masks = run_dfm(session, info, crops, run.morph)
    merged = frame
    for index, matrix in enumerate(matrices):
        merged = merge_face(merged, matrix, celeb_faces[index], face_masks[index],
                            celeb_masks[index], run.merge)
    return merged
