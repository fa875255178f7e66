"""Swapper graph: align each face, swap it through the autoencoder, blend it back into the frame.

Inputs `FRAME` uint8 [B,H,W,3] BGR, `LANDMARKS` [B,K,468,2] and `PRESENCE` [B,K] from the
landmarker. Output `SWAPPED` uint8 [B,H,W,3]. Per face slot: a least-squares similarity from rigid
landmarks to the template, a warp to SxS, encoder and the target identity's decoder, a feathered
mask from the face outline, mean/std colour transfer inside the mask, and an inverse warp into a
window around the face only. Pixels outside every window are copied unchanged; slots whose
presence is below the threshold change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from swaptron.export.autoencoder import FaceAutoencoder
from swaptron.export.face_template import FACE_OVAL, RIGID_POINTS
from swaptron.export.geometry import (
    apply_affine,
    frame_to_planar,
    invert_similarity,
    pixel_centres,
    sample_affine,
    scatter_rows,
    select_rows,
    similarity_fit,
)


@dataclass(frozen=True)
class BlendOptions:
    """How the swapped face is blended (fractions of the face size S unless noted)."""

    presence_threshold: float = 0.5
    feather: float = 0.10
    erode: float = 0.02
    std_ratio_limits: tuple[float, float] = (0.5, 2.0)
    use_learned_mask: bool = False
    window_step: int = 16  # window sides are rounded up to a multiple of this many pixels


def alignment(landmarks: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """Similarity [B,K,2,3] taking frame pixels to aligned-face pixels (rigid landmarks fit)."""
    rigid = list(RIGID_POINTS)
    return similarity_fit(landmarks[:, :, rigid], template[rigid])


def align_faces(planar: torch.Tensor, landmarks: torch.Tensor, template: torch.Tensor,
                face_size: int, feather: float, erode: float, keep: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Aligned crops of every face slot, exactly as the swapper sees them.

    planar [B,3,H,W] float 0..255; landmarks [B,K,468,2]; template [468,2] in aligned pixels.
    Returns the frame-to-face similarity [B,K,2,3], the crops [B*K,3,S,S] in [0,1] and the
    outline masks [B*K,1,S,S]; with `keep` [B,K] (bool), masks are only computed for the slots
    it marks (the others are zero). Extraction for training uses this same function.
    """
    to_face = alignment(landmarks, template)
    crops = sample_affine(planar, invert_similarity(to_face), face_size, face_size) / 255.0
    outline = apply_affine(landmarks[:, :, list(FACE_OVAL)], to_face)
    if keep is None:
        return to_face, crops, outline_mask(outline.flatten(0, 1), face_size, feather, erode)
    kept, rows = select_rows(outline.flatten(0, 1), keep.reshape(-1))
    mask = outline_mask(kept, face_size, feather, erode)
    return to_face, crops, scatter_rows(mask, rows, crops.shape[0])


def outline_mask(outline: torch.Tensor, face_size: int, feather: float, erode: float
                 ) -> torch.Tensor:
    """Feathered mask [N,1,S,S] inside outline polygons [N,V,2] given in aligned pixels.

    Inside is decided by the winding number, so outlines that fold over themselves (the far
    side of a face turned away) still cover the face; the distance to the nearest outline
    segment feathers the edge: 0 at `erode` inside it, 1 at `erode + feather`. The mask also
    fades out at the crop border, where the aligned face ends. It is computed at half
    resolution (it is smooth) with x and y kept apart, which ONNX Runtime runs much faster than
    trailing pairs, and upsampled.
    """
    half = face_size // 2
    points = pixel_centres(half, half)[:, 0:2] * (face_size / half)  # [P,2] in aligned pixels
    point_x, point_y = points[:, 0], points[:, 1]
    start_x, start_y = outline[..., 0:1], outline[..., 1:2]  # [N,V,1]
    edge = torch.roll(outline, shifts=-1, dims=-2) - outline
    edge_x, edge_y = edge[..., 0:1], edge[..., 1:2]
    to_x, to_y = point_x - start_x, point_y - start_y  # [N,V,P]
    cross = edge_x * to_y - edge_y * to_x
    end_y = start_y + edge_y
    upward = ((start_y <= point_y) & (end_y > point_y) & (cross > 0)).to(torch.float32)
    downward = ((start_y > point_y) & (end_y <= point_y) & (cross < 0)).to(torch.float32)
    inside = (upward - downward).sum(dim=-2).abs() > 0.5  # [N,P]
    length2 = (edge_x * edge_x + edge_y * edge_y).clamp_min(1e-6)
    along = ((to_x * edge_x + to_y * edge_y) / length2).clamp(0.0, 1.0)
    near_x, near_y = to_x - along * edge_x, to_y - along * edge_y
    distance = torch.sqrt(near_x * near_x + near_y * near_y + 1e-9).amin(dim=-2)  # [N,P]
    signed = torch.where(inside, distance, -distance)
    border = torch.minimum(points, face_size - points).amin(dim=-1)
    signed = torch.minimum(signed, border)
    ramp = ((signed - erode * face_size) / (feather * face_size)).clamp(0.0, 1.0)
    ramp = ramp.reshape(-1, 1, half, half)
    return F.interpolate(ramp, size=(face_size, face_size), mode="bilinear", align_corners=False)


def transfer_colour(generated: torch.Tensor, original: torch.Tensor, mask: torch.Tensor,
                    limits: tuple[float, float]) -> torch.Tensor:
    """Give `generated` the per-channel mean and std of `original` inside the mask.

    generated, original [N,3,S,S]; mask [N,1,S,S].
    """
    weight = mask.sum(dim=(2, 3), keepdim=True).clamp_min(1e-3)

    def moments(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (image * mask).sum(dim=(2, 3), keepdim=True) / weight
        variance = (((image - mean) ** 2) * mask).sum(dim=(2, 3), keepdim=True) / weight
        return mean, torch.sqrt(variance + 1e-6)

    generated_mean, generated_std = moments(generated)
    original_mean, original_std = moments(original)
    ratio = (original_std / generated_std).clamp(*limits)
    return ((generated - generated_mean) * ratio + original_mean).clamp(0.0, 1.0)


class FaceSwapper(nn.Module):
    """Frame + landmarks -> frame with every present face replaced by the target identity."""

    def __init__(self, autoencoder: FaceAutoencoder, target: str, template: np.ndarray,
                 options: BlendOptions | None = None) -> None:
        super().__init__()
        self.encoder = autoencoder.encoder
        self.decoder = autoencoder.decoders[target]
        self.face_size = autoencoder.preset.face_size
        self.options = options or BlendOptions()
        self.register_buffer("template", torch.from_numpy(template * self.face_size).float(),
                             persistent=False)

    def swap_faces(self, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned faces [N,3,S,S] in [0,1] -> target identity faces and mask probabilities."""
        generated, mask_logit = self.decoder(self.encoder(faces))
        return generated, torch.sigmoid(mask_logit)

    def forward(self, frame: torch.Tensor, landmarks: torch.Tensor, presence: torch.Tensor
                ) -> torch.Tensor:
        """-> SWAPPED uint8 [B,H,W,3]."""
        options, size = self.options, self.face_size
        batch, slots = landmarks.shape[0], landmarks.shape[1]
        valid = (presence > options.presence_threshold).to(torch.float32)
        planar = frame_to_planar(frame)
        to_face, originals, mask = align_faces(planar, landmarks, self.template, size,
                                               options.feather, options.erode, valid > 0)
        kept, rows = select_rows(originals, valid.reshape(-1) > 0)
        generated, learned_mask = self.swap_faces(kept)
        generated = scatter_rows(generated, rows, batch * slots)
        learned_mask = scatter_rows(learned_mask, rows, batch * slots)
        mask = mask * valid.reshape(-1, 1, 1, 1)
        if options.use_learned_mask:
            mask = mask * learned_mask
        generated = transfer_colour(generated, originals, mask, options.std_ratio_limits)
        layers = torch.cat([generated * 255.0, mask], dim=1).reshape(batch, slots, 4, size, size)
        return self.composite(frame, layers, landmarks[:, :, list(FACE_OVAL)], to_face, valid)

    def composite(self, frame: torch.Tensor, layers: torch.Tensor, outline: torch.Tensor,
                  to_face: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Warp each slot's face and mask back into a window around it and blend them in.

        frame uint8 [B,H,W,3]; layers [B,K,4,S,S] (BGR 0..255 and mask). A slot's windows share
        one side L (its largest face's, rounded up; tiny when the slot is empty in every frame),
        each placed over its face and shifted to lie inside the frame. Only window pixels the
        mask touches are gathered, blended, rounded and scattered back, all slots in one scatter
        (where two faces overlap, the later slot's blend wins); every other pixel keeps its exact
        value. Blending is in float so every op is one TensorRT supports.
        """
        batch, height, width = frame.shape[0], frame.shape[1], frame.shape[2]
        size_hw = torch._shape_as_tensor(frame)[1:3]
        margin = 2.0
        low = torch.floor(outline.amin(dim=-2) - margin)  # [B,K,2] (x, y)
        high = torch.ceil(outline.amax(dim=-2) + margin)
        extent = ((high - low).amax(dim=-1) * valid).amax(dim=0)  # [K]: largest face per slot
        step = float(self.options.window_step)
        sides = (torch.ceil(extent / step).clamp_min(1.0) * step).to(torch.int64)
        sides = torch.minimum(sides, size_hw.amin())
        image_start = torch.arange(batch).reshape(batch, 1, 1) * (height * width)
        indices, alphas, colours = [], [], []
        for slot in range(layers.shape[1]):
            side = sides[slot]
            span = torch.arange(side, dtype=torch.float32)
            limit = (size_hw.flip(0) - side).to(torch.float32)  # largest origin (x, y)
            origin = torch.minimum(low[:, slot].clamp_min(0.0), limit)  # [B,2]
            xs = (origin[:, 0:1] + span).unsqueeze(1)  # [B,1,L]
            ys = (origin[:, 1:2] + span).unsqueeze(2)  # [B,L,1]
            matrix = to_face[:, slot] / self.face_size * 2.0  # to GridSample units
            coefficient = matrix.reshape(batch, 6, 1, 1)
            grid_x = (coefficient[:, 0] * (xs + 0.5) + coefficient[:, 1] * (ys + 0.5)
                      + coefficient[:, 2] - 1.0)
            grid_y = (coefficient[:, 3] * (xs + 0.5) + coefficient[:, 4] * (ys + 0.5)
                      + coefficient[:, 5] - 1.0)
            grid = torch.stack([grid_x, grid_y], dim=-1)  # [B,L,L,2]
            warped = F.grid_sample(layers[:, slot], grid, mode="bilinear", padding_mode="zeros",
                                   align_corners=False)  # [B,4,L,L]
            index = image_start + (ys * width + xs).to(torch.int64)  # [B,L,L]
            indices.append(index.reshape(-1))
            alphas.append(warped[:, 3].reshape(-1))
            colours.append(warped[:, 0:3].permute(0, 2, 3, 1).reshape(-1, 3))
        alpha = torch.cat(alphas)
        touched = torch.nonzero(alpha > 0).reshape(-1)
        index = torch.cat(indices)[touched]
        alpha = alpha[touched].unsqueeze(1).expand(-1, 3)
        colour = torch.cat(colours)[touched]
        pixels = frame.reshape(-1, 3).to(torch.float32)
        original = pixels[index]
        blended = (original + alpha * (colour - original)).round().clamp(0.0, 255.0)
        pixels = pixels.index_put((index,), blended)
        return pixels.reshape(frame.shape).to(torch.uint8)
