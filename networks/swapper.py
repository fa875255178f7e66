"""Swapper graph: align each face, swap it through the autoencoder, blend it back into the frame.

Inputs `FRAME` uint8 [B,H,W,3] BGR, `LANDMARKS` [B,K,468,2] and `PRESENCE` [B,K] from the
landmarker. Output `SWAPPED` uint8 [B,H,W,3]. Per face slot: a least-squares similarity from rigid
landmarks to the template, a warp to SxS, encoder and the target identity's decoder, a feathered
mask from the face outline, mean/std colour transfer inside the mask, and an inverse warp into a
window around the face only. Pixels outside every window are copied unchanged; slots whose
presence is below the threshold change nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from swaptron.networks.autoencoder import FaceAutoencoder
from swaptron.networks.face_template import FACE_OVAL, RIGID_POINTS
from swaptron.networks.geometry import (
    GraphOptions,
    Precision,
    apply_affine,
    as_float32,
    dims_of,
    invert_similarity,
    pixel_centres,
    sample_frame,
    scatter_rows,
    select_rows,
    similarity_fit,
)
from swaptron.networks.watermark import FrameMark


@dataclass(frozen=True)
class BlendOptions:
    """How the swapped face is blended (fractions of the face size S unless noted)."""

    presence_threshold: float = 0.5
    feather: float = 0.10
    erode: float = 0.02
    std_ratio_limits: tuple[float, float] = (0.5, 2.0)
    window_step: int = 16  # window sides are rounded up to a multiple of this many pixels
    window_margin: float = 2.0  # pixels around the outline


def alignment(landmarks: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """Similarity [B,K,2,3] taking frame pixels to aligned-face pixels (rigid landmarks fit)."""
    rigid = list(RIGID_POINTS)
    return similarity_fit(landmarks[:, :, rigid], template[rigid])


def align_faces(frame: torch.Tensor, landmarks: torch.Tensor, template: torch.Tensor,
                face_size: int, feather: float, erode: float, keep: torch.Tensor | None = None,
                graph: GraphOptions | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Aligned crops of every face slot, exactly as the swapper sees them.

    frame uint8 [B,H,W,3]; landmarks [B,K,468,2]; template [468,2] in aligned pixels.
    Returns the frame-to-face similarity [B,K,2,3], the crops [B*K,3,S,S] in [0,1] and the
    outline masks [B*K,1,S,S]; with `keep` [B,K] (bool), masks are only computed for the slots
    it marks (the others are zero). Extraction for training uses this same function.
    """
    to_face, crops = align_crops(frame, landmarks, template, face_size, graph, keep)
    outline = apply_affine(landmarks[:, :, list(FACE_OVAL)], to_face)
    if keep is None:  # every slot (fixed shapes)
        return to_face, crops, outline_mask(outline.flatten(0, 1), face_size, feather, erode)
    kept, rows = select_rows(outline.flatten(0, 1), keep.reshape(-1))
    mask = outline_mask(kept, face_size, feather, erode)
    return to_face, crops, scatter_rows(mask, rows, crops.shape[0])


def align_crops(frame: torch.Tensor, landmarks: torch.Tensor, template: torch.Tensor,
                face_size: int, graph: GraphOptions | None = None,
                keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The frame-to-face similarity [B,K,2,3] and the aligned crops [B*K,3,S,S] in [0,1] (the
    swapper's, the mark reader's)."""
    to_face = alignment(landmarks, template)
    crops = sample_frame(frame, invert_similarity(to_face), face_size, face_size,
                         graph or GraphOptions(), keep) / 255.0
    return to_face, crops


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


def largest_face(landmarks: torch.Tensor, valid: torch.Tensor, largest_only: torch.Tensor
                 ) -> torch.Tensor:
    """[B,K] of 1 for the slots to swap: all of them, or (largest_only [B,1] = 1) the present
    face whose landmarks span the largest area."""
    extent = landmarks.amax(dim=2) - landmarks.amin(dim=2)  # [B,K,2]
    area = extent[..., 0] * extent[..., 1] * valid - (1.0 - valid)  # empty slots lose
    slots = torch.arange(landmarks.shape[1]).reshape(1, -1)
    biggest = (slots == area.argmax(dim=1, keepdim=True)).to(torch.float32)
    only = (largest_only > 0).to(torch.float32)  # [B,1]
    return only * biggest + (1.0 - only)


class FaceSwapper(nn.Module):
    """Frame + landmarks -> frame with the present faces replaced by the chosen identity.

    Every decoder of the autoencoder is in the graph, in the order of `identities`; TARGET
    picks one per frame, so one exported swapper serves every identity and frames asking for
    different ones still batch together.
    With `mark` (networks/watermark.py), every swapped face gets the invisible mark where it is
    blended into the frame, carrying the server id and its identity index; no input of the
    graph reaches it.
    """

    def __init__(self, autoencoder: FaceAutoencoder, default: str, template: np.ndarray,
                 options: BlendOptions | None = None, graph: GraphOptions | None = None,
                 mark: FrameMark | None = None) -> None:
        super().__init__()
        self.mark = mark  # the invisible mark, fixed at export (None: the operator's --no-mark)
        self.graph = graph or GraphOptions()
        self.identities = tuple(autoencoder.decoders)
        if default not in self.identities:
            raise ValueError(f"identity {default!r} is not in the weights "
                             f"({', '.join(self.identities)})")
        self.default = default
        self.encoder = Precision(autoencoder.encoder, self.graph.fp16_networks)
        self.decoders = nn.ModuleList(Precision(autoencoder.decoders[name],
                                                self.graph.fp16_networks)
                                      for name in self.identities)
        self.face_size = autoencoder.preset.face_size
        self.options = options or BlendOptions()
        self.register_buffer("template", torch.from_numpy(template * self.face_size).float(),
                             persistent=False)

    def with_mark(self, mark: FrameMark | None) -> FaceSwapper:
        """The same swapper, sharing its networks, with another mark (None: unmarked)."""
        clone = copy.copy(self)
        clone._modules = dict(self._modules)  # its own registry, so the original keeps its mark
        clone.mark = mark
        return clone

    def choices(self, batch: int, identity: str | None = None, largest_only: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """TARGET and LARGEST_ONLY [B,1] int32 for a batch (the default identity unless named)."""
        target = self.identities.index(identity or self.default)
        return (torch.full((batch, 1), target, dtype=torch.int32),
                torch.full((batch, 1), int(largest_only), dtype=torch.int32))

    def swap_faces(self, faces: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Aligned faces [N,3,S,S] in [0,1] and the identity index of each [N] -> the faces as
        those identities. Fixed shapes: every decoder on every face, each output kept where it
        is wanted; otherwise each decoder runs on its own faces only (none: an empty batch)."""
        latent = self.encoder(faces)
        generated = torch.zeros_like(faces)
        for index, decoder in enumerate(self.decoders):
            wanted = targets == index
            if self.graph.fixed_shapes:
                decoded, _mask_logit = decoder(latent)
                generated = torch.where(wanted.reshape(-1, 1, 1, 1), decoded, generated)
                continue
            rows = torch.nonzero(wanted).reshape(-1)
            decoded, _mask_logit = decoder(latent[rows])
            generated = generated.index_put((rows,), as_float32(decoded))
        return generated

    def forward(self, frame: torch.Tensor, landmarks: torch.Tensor, presence: torch.Tensor,
                target: torch.Tensor | None = None, largest_only: torch.Tensor | None = None
                ) -> torch.Tensor:
        """-> SWAPPED uint8 [B,H,W,3]. target, largest_only [B,1] int32 (default: the default
        identity, every face)."""
        options, size = self.options, self.face_size
        batch, slots = landmarks.shape[0], landmarks.shape[1]
        if target is None or largest_only is None:
            target, largest_only = self.choices(batch)
        valid = (presence > options.presence_threshold).to(torch.float32)
        valid = valid * largest_face(landmarks, valid, largest_only)
        targets = target.to(torch.int64).expand(batch, slots).reshape(-1)  # per slot
        if self.graph.fixed_shapes:  # every slot; the empty ones are masked
            to_face, originals, mask = align_faces(frame, landmarks, self.template, size,
                                                   options.feather, options.erode,
                                                   graph=self.graph)
            generated = self.swap_faces(originals, targets)
        else:  # only the slots that hold a face
            to_face, originals, mask = align_faces(frame, landmarks, self.template, size,
                                                   options.feather, options.erode, valid > 0,
                                                   self.graph)
            kept, rows = select_rows(originals, valid.reshape(-1) > 0)
            generated = scatter_rows(self.swap_faces(kept, targets[rows]), rows, batch * slots)
        mask = mask * valid.reshape(-1, 1, 1, 1)
        generated = transfer_colour(generated, originals, mask, options.std_ratio_limits)
        layers = torch.cat([generated * 255.0, mask], dim=1).reshape(batch, slots, 4, size, size)
        return self.composite(frame, layers, landmarks[:, :, list(FACE_OVAL)], to_face, valid,
                              target.to(torch.int64).reshape(-1))

    def slot_window(self, pixels: torch.Tensor, outline: torch.Tensor, valid: torch.Tensor,
                    slot: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Where a slot is blended: the columns [B,w] and rows [B,h] of frame pixels, int64.

        Fixed shapes: the whole frame. Otherwise a square window of one side for the batch (the
        slot's largest face, outline plus a margin, rounded up to `window_step`; tiny when the
        slot is empty everywhere), placed over each image's face and moved inside the frame.
        """
        batch = pixels.shape[0]
        size_wh = dims_of(pixels, 1, 3).flip(0)  # (W, H) int64
        if self.graph.fixed_shapes:
            origin = torch.zeros(batch, 2, dtype=torch.int64)
            extent = size_wh
        else:
            margin = self.options.window_margin
            low = torch.floor(outline[:, slot].amin(dim=-2) - margin)  # [B,2]
            high = torch.ceil(outline[:, slot].amax(dim=-2) + margin)
            span = ((high - low).amax(dim=-1) * valid[:, slot]).amax(dim=0)  # largest face
            step = float(self.options.window_step)
            side = (torch.ceil(span / step).clamp_min(1.0) * step).to(torch.int64)
            extent = torch.minimum(side, size_wh)  # (w, h)
            origin = torch.minimum(low.clamp(0.0, 1e9).to(torch.int64), size_wh - extent)
        columns = origin[:, 0:1] + torch.arange(extent[0]).unsqueeze(0)
        rows = origin[:, 1:2] + torch.arange(extent[1]).unsqueeze(0)
        return columns, rows

    def composite(self, frame: torch.Tensor, layers: torch.Tensor, outline: torch.Tensor,
                  to_face: torch.Tensor, valid: torch.Tensor,
                  target: torch.Tensor | None = None) -> torch.Tensor:
        """Warp each slot's face and mask back into the frame and blend them in (with the
        mark of each image's identity, target [B] int64, added to the face's colour).

        frame: uint8 [B,H,W,3]; layers [B,K,4,S,S] (BGR 0..255 and mask). The slots are
        blended one after the other, the last slot first and slot 0 (the most confident face)
        last, each rounded before the next: where two faces overlap, the
        more confident one is on top. The order is part of the graph, so the pixels are the
        same on every run and every device, and both variants give the same frame. Pixels no
        mask touches keep their exact value. With fixed shapes each slot is blended over the
        whole frame (an alpha of 0 gives the original back exactly). Otherwise each slot is
        blended in its window (slot_window) and only the pixels its mask touches are written
        back: one scatter per slot, in order, each with unique indices from int64 arithmetic,
        into the uint8 frame itself (only the pixels blended are cast, so the cost follows the
        faces, not the frame); fixed shapes cast the whole frame to float, as TensorRT needs.
        """
        pixels = frame.to(torch.float32) if self.graph.fixed_shapes else frame
        shape = pixels.shape
        batch, height, width = shape[0], shape[1], shape[2]
        if not self.graph.fixed_shapes:
            pixels = pixels.reshape(-1, 3)
            image_start = torch.arange(batch).reshape(batch, 1, 1) * (height * width)
        for slot in reversed(range(layers.shape[1])):
            columns, rows = self.slot_window(pixels.reshape(shape), outline, valid, slot)
            centre_x = (columns.to(torch.float32) + 0.5).unsqueeze(1)  # [B,1,w]
            centre_y = (rows.to(torch.float32) + 0.5).unsqueeze(2)  # [B,h,1]
            coefficient = (to_face[:, slot] / self.face_size * 2.0).reshape(batch, 6, 1, 1)
            grid_x = (coefficient[:, 0] * centre_x + coefficient[:, 1] * centre_y
                      + coefficient[:, 2] - 1.0)
            grid_y = (coefficient[:, 3] * centre_x + coefficient[:, 4] * centre_y
                      + coefficient[:, 5] - 1.0)
            warped = F.grid_sample(layers[:, slot], torch.stack([grid_x, grid_y], dim=-1),
                                   mode="bilinear", padding_mode="zeros",
                                   align_corners=False)  # [B,4,h,w]
            alpha = warped[:, 3] * valid[:, slot].reshape(batch, 1, 1)  # [B,h,w]
            colour = warped[:, 0:3]  # [B,3,h,w]
            if self.mark is not None and target is not None:  # channel-first: a cheap add
                colour = colour + self.mark.delta(rows, columns, target).unsqueeze(1)
            colour = colour.permute(0, 2, 3, 1)  # [B,h,w,3]
            if self.graph.fixed_shapes:
                blended = pixels + alpha.unsqueeze(-1) * (colour - pixels)
                pixels = blended.round().clamp(0.0, 255.0)
                continue
            index = (image_start + rows.unsqueeze(2) * width + columns.unsqueeze(1)).reshape(-1)
            touched = torch.nonzero(alpha.reshape(-1) > 0).reshape(-1)
            index = index[touched]
            original = pixels[index].to(torch.float32)
            weight = alpha.reshape(-1)[touched].unsqueeze(1)
            face = colour.reshape(-1, 3)[touched]
            blended = original + weight * (face - original)
            pixels = pixels.index_put((index,), blended.round().clamp(0.0, 255.0).to(torch.uint8))
        if self.graph.fixed_shapes:
            return pixels.to(torch.uint8)
        return pixels.reshape(shape)
