"""The graphs around a served DFM: DeepFaceLive's whole_face crop of every face slot, and its
default merge back into the frame (PyTorch, traced to ONNX by export/dfm_serving.py).

`DfmCrop`: FRAME, LANDMARKS, PRESENCE, LARGEST_ONLY -> the crops [B,K,R,R,3] (BGR 0..1, as a DFM
takes them), their matrices [B,K,2,3] (frame pixels -> crop pixels, networks/dfm_align.py) and
the slots to swap [B,K] (present, and the largest only when asked, as the swapper decides).
`DfmMerge`: the frame, the DFM's three outputs per slot, the matrices and the slots -> SWAPPED,
as networks/dfm_merge.py does it in numpy: mask = face mask x celeb mask, eroded, cut to zero near
the crop border and blurred; mask and face warped back (bilinear), alpha at or under 1/255
dropped, composited. The slots are merged one after the other, the last first, so slot 0 (the
most confident face) is on top, as in our swapper. Both graphs have fixed shapes but for the batch
and the frame's size (no data-dependent shape): one graph serves every target.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from swaptron.networks.dfm_align import AlignOptions, load_dfm_template, template_to_crop
from swaptron.networks.dfm_merge import ALPHA_FLOOR, MergeOptions
from swaptron.networks.geometry import (
    dims_of,
    frame_to_planar,
    invert_similarity,
    sample_affine,
    similarity_fit,
)
from swaptron.networks.swapper import BlendOptions, largest_face
from swaptron.networks.watermark import FrameMark


class DfmCrop(nn.Module):
    """Frame and landmarks -> whole_face crops, their matrices and the slots to swap."""

    def __init__(self, resolution: int, align: AlignOptions | None = None) -> None:
        super().__init__()
        template = load_dfm_template()
        self.rigid = sorted(template.rigid)
        self.resolution = resolution
        self.threshold = BlendOptions().presence_threshold
        to_crop = template_to_crop(resolution, align or AlignOptions())
        self.register_buffer("template", torch.from_numpy(template.points[self.rigid]).float(),
                             persistent=False)
        self.register_buffer("to_crop", torch.from_numpy(to_crop).float(), persistent=False)

    def forward(self, frame: torch.Tensor, landmarks: torch.Tensor, presence: torch.Tensor,
                largest_only: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> crops [B,K,R,R,3] float BGR 0..1, matrices [B,K,2,3], valid [B,K] (0 or 1)."""
        slots, side = landmarks.shape[1], self.resolution
        valid = (presence > self.threshold).to(torch.float32)
        valid = valid * largest_face(landmarks, valid, largest_only)
        to_template = similarity_fit(landmarks[:, :, self.rigid], self.template)
        matrices = torch.matmul(self.to_crop[:, :2], to_template)
        matrices = torch.cat([matrices[..., :2], matrices[..., 2:] + self.to_crop[:, 2:]], -1)
        crops = sample_affine(frame_to_planar(frame), invert_similarity(matrices), side, side)
        crops = (crops / 255.0).reshape(-1, slots, 3, side, side).permute(0, 1, 3, 4, 2)
        return crops, matrices, valid


def gaussian_taps(blur: int) -> np.ndarray:
    """OpenCV's Gaussian kernel for GaussianBlur(ksize=(0,0), sigma=blur/4) on float32 (size
    round(8 sigma + 1), made odd)."""
    sigma = blur * 0.25
    size = int(np.floor(sigma * 8 + 1 + 0.5)) | 1
    return cv2.getGaussianKernel(size, sigma, cv2.CV_64F).reshape(-1)


def erode_cross(mask: torch.Tensor, steps: int) -> torch.Tensor:
    """`steps` erosions of [N,1,R,R] by OpenCV's 3x3 ellipse (a cross), zeros beyond the
    border."""
    side = mask.shape[-1]
    for _ in range(steps):
        padded = F.pad(mask, (1, 1, 1, 1))
        neighbours = (padded[..., 1:side + 1, 1:side + 1], padded[..., 0:side, 1:side + 1],
                      padded[..., 2:side + 2, 1:side + 1], padded[..., 1:side + 1, 0:side],
                      padded[..., 1:side + 1, 2:side + 2])
        mask = torch.stack(neighbours, dim=0).amin(dim=0)
    return mask


class DfmMerge(nn.Module):
    """Frame, the DFM's outputs per slot, matrices and slots -> the merged uint8 frame."""

    def __init__(self, resolution: int, options: MergeOptions | None = None,
                 mark: FrameMark | None = None) -> None:
        super().__init__()
        self.mark = mark  # the swapper's invisible mark (None: the operator's --no-mark)
        options = options or MergeOptions()
        if options.erode < 0 or options.blur < 0:
            raise ValueError(f"erode and blur must be >= 0, got {options.erode}, {options.blur}")
        self.options, self.resolution = options, resolution
        self.erode_steps = max(1, options.erode // 2) if options.erode > 0 else 0
        band = options.blur // 2
        inside = torch.zeros(resolution, resolution)
        if resolution > 2 * band:
            inside[band:resolution - band, band:resolution - band] = 1.0
        taps = torch.from_numpy(gaussian_taps(options.blur)).float() if options.blur else None
        self.register_buffer("inside", inside.reshape(1, 1, resolution, resolution),
                             persistent=False)
        self.register_buffer("taps", taps if taps is not None else torch.ones(1),
                             persistent=False)

    def soften(self, mask: torch.Tensor) -> torch.Tensor:
        """networks/dfm_merge.erode_blur of [N,1,R,R]: erode, zero the border band, blur."""
        mask = erode_cross(mask, self.erode_steps) * self.inside
        if not self.options.blur:
            return mask
        half = self.taps.shape[0] // 2
        mask = F.conv2d(mask, self.taps.reshape(1, 1, 1, -1), padding=(0, half))
        return F.conv2d(mask, self.taps.reshape(1, 1, -1, 1), padding=(half, 0))

    def forward(self, frame: torch.Tensor, face_mask: torch.Tensor, celeb_face: torch.Tensor,
                celeb_mask: torch.Tensor, matrices: torch.Tensor, valid: torch.Tensor,
                target: torch.Tensor | None = None) -> torch.Tensor:
        """frame uint8 [B,H,W,3]; masks [B,K,R,R,1], face [B,K,R,R,3]; target [B,1] int32
        (the frame's identity, whose mark the faces get); -> SWAPPED uint8."""
        side, slots = self.resolution, matrices.shape[1]
        mask = torch.ones_like(face_mask)
        if self.options.face_mask:
            mask = mask * face_mask
        if self.options.celeb_mask:
            mask = mask * celeb_mask
        mask = self.soften(mask.reshape(-1, 1, side, side))
        layers = torch.cat([celeb_face.reshape(-1, side, side, 3).permute(0, 3, 1, 2), mask], 1)
        layers = layers.reshape(-1, slots, 4, side, side)
        pixels = frame.to(torch.float32)  # first: TensorRT takes uint8 only at the edges
        batch = pixels.shape[0]
        size = dims_of(pixels, 1, 3)  # (H, W)
        centre_x = (torch.arange(size[1]).to(torch.float32) + 0.5).reshape(1, 1, -1)
        centre_y = (torch.arange(size[0]).to(torch.float32) + 0.5).reshape(1, -1, 1)
        shift = None
        if self.mark is not None and target is not None:  # carried in by each face's alpha
            rows = torch.arange(size[0]).reshape(1, -1).expand(batch, -1)
            columns = torch.arange(size[1]).reshape(1, -1).expand(batch, -1)
            shift = self.mark.delta(rows, columns, target.to(torch.int64).reshape(-1))
        for slot in reversed(range(slots)):
            coefficient = (matrices[:, slot] / side * 2.0).reshape(batch, 6, 1, 1)
            grid_x = (coefficient[:, 0] * centre_x + coefficient[:, 1] * centre_y
                      + coefficient[:, 2] - 1.0)
            grid_y = (coefficient[:, 3] * centre_x + coefficient[:, 4] * centre_y
                      + coefficient[:, 5] - 1.0)
            warped = F.grid_sample(layers[:, slot], torch.stack([grid_x, grid_y], dim=-1),
                                   mode="bilinear", padding_mode="zeros", align_corners=False)
            alpha = warped[:, 3:4].clamp(max=1.0)
            alpha = torch.where(alpha <= ALPHA_FLOOR, torch.zeros_like(alpha), alpha)
            alpha = (alpha * valid[:, slot].reshape(batch, 1, 1, 1)).permute(0, 2, 3, 1)
            colour = warped[:, 0:3].clamp(0.0, 1.0).permute(0, 2, 3, 1) * 255.0
            if shift is not None:
                colour = colour + shift.unsqueeze(-1)
            pixels = torch.round(pixels * (1.0 - alpha) + colour * alpha)
        return pixels.clamp(0.0, 255.0).to(torch.uint8)
