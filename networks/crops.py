"""Face crops for the forgery detectors: the swapper's alignment with room around the face.

A detector must see the blend boundary, so the face outline spans FORENSIC_FILL of the crop (the
swapper's crop fits it to 0.8). Training data and the served `forensics` graph take their crops
with this same function.
"""

from __future__ import annotations

import torch

from swaptron.networks.face_template import RIGID_POINTS, TEMPLATE_FILL, load_template
from swaptron.networks.geometry import (
    GraphOptions,
    invert_similarity,
    sample_frame,
    similarity_fit,
)

FORENSIC_FILL = 0.55  # the face outline's longer side, as a fraction of the crop side


def forensic_template(size: int) -> torch.Tensor:
    """The 468 template points [468,2] in the pixels of a size x size forensic crop."""
    unit = torch.from_numpy(load_template())
    scaled = (unit - 0.5) * (FORENSIC_FILL / TEMPLATE_FILL) + 0.5
    return scaled * size


def forensic_alignment(landmarks: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """Similarity [...,2,3] taking frame pixels to crop pixels (fit on the rigid points)."""
    rigid = list(RIGID_POINTS)
    return similarity_fit(landmarks[..., rigid, :], template[rigid])


def forensic_crops(frame: torch.Tensor, landmarks: torch.Tensor, template: torch.Tensor,
                   size: int, graph: GraphOptions | None = None,
                   valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops [B*K,3,size,size] in [0,1] (BGR) of every face slot, and the frame-to-crop
    similarity [B,K,2,3].

    frame uint8 [B,H,W,3]; landmarks [B,K,468,2] in frame pixels; template from
    forensic_template(size); valid [B,K] marks the slots whose crops matter (default all).
    """
    to_crop = forensic_alignment(landmarks, template)
    crops = sample_frame(frame, invert_similarity(to_crop), size, size,
                         graph or GraphOptions(), valid) / 255.0
    return crops, to_crop
