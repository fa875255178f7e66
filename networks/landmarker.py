"""Landmarker graph: MediaPipe FaceMesh on an eye-aligned crop per detected face.

Inputs `FRAME` uint8 [B,H,W,3] BGR, `FACES` [B,K,5] and `KEYPOINTS` [B,K,6,2] from the detector.
Output `LANDMARKS` [B,K,468,2] in frame pixels (zeros for empty slots) and `PRESENCE` [B,K], the
mesh's face-presence probability (0 for empty slots).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from swaptron.networks.geometry import (
    GraphOptions,
    Precision,
    apply_affine,
    rotated_rect_matrix,
    sample_frame,
    scatter_rows,
    select_rows,
)
from swaptron.networks.tflite_port import TfliteNetwork
from swaptron.specs import NUM_LANDMARKS

INPUT_SIZE = 192
ROI_SCALE = 1.5


def face_roi(faces: torch.Tensor, keypoints: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MediaPipe's detection-to-ROI: square of 1.5x the box's long side, rotated to level the eyes.

    Returns centre [B,K,2], side [B,K] and the direction of the crop's x axis [B,K,2] (from the
    right eye to the left eye).
    """
    centre = (faces[..., 0:2] + faces[..., 2:4]) / 2.0
    extent = faces[..., 2:4] - faces[..., 0:2]
    side = torch.amax(extent, dim=-1) * ROI_SCALE
    eye_vector = keypoints[..., 1, :] - keypoints[..., 0, :]
    return centre, side, eye_vector


class FaceLandmarker(nn.Module):
    """Aligned crops -> FaceMesh -> 468 landmarks in frame pixels, inside one graph."""

    def __init__(self, tflite_file: Path, graph: GraphOptions | None = None) -> None:
        super().__init__()
        self.graph = graph or GraphOptions()
        self.network = Precision(TfliteNetwork(tflite_file), self.graph.fp16_networks)

    def run_mesh(self, frame: torch.Tensor, faces: torch.Tensor, keypoints: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Crops through FaceMesh: raw mesh [B,K,468,3] in crop pixels, presence logits [B,K],
        the crop-to-frame affine [B,K,2,3] and which slots hold a face [B,K]."""
        batch, slots = faces.shape[0], faces.shape[1]
        centre, side, direction = face_roi(faces, keypoints)
        matrix = rotated_rect_matrix(centre, side, direction, INPUT_SIZE)  # crop -> frame
        crops = sample_frame(frame, matrix, INPUT_SIZE, INPUT_SIZE, self.graph,
                             faces[..., 4] > 0)
        present = (faces[..., 4] > 0).to(torch.float32)
        rgb = crops[:, [2, 1, 0]] / 255.0
        if self.graph.fixed_shapes:  # every slot; the empty ones are masked below
            mesh, presence_logit = self.network(rgb)
        else:  # only the slots that hold a face
            kept, rows = select_rows(rgb, present.reshape(-1) > 0)
            mesh, presence_logit = self.network(kept)
            mesh = scatter_rows(mesh.reshape(-1, NUM_LANDMARKS * 3), rows, batch * slots)
            presence_logit = scatter_rows(presence_logit.reshape(-1), rows, batch * slots)
        return (mesh.reshape(batch, slots, NUM_LANDMARKS, 3),
                presence_logit.reshape(batch, slots), matrix, present)

    def forward(self, frame: torch.Tensor, faces: torch.Tensor, keypoints: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> LANDMARKS [B,K,468,2], PRESENCE [B,K]."""
        mesh, presence_logit, matrix, present = self.run_mesh(frame, faces, keypoints)
        landmarks = apply_affine(mesh[..., 0:2], matrix) * present.unsqueeze(-1).unsqueeze(-1)
        return landmarks, torch.sigmoid(presence_logit) * present

    def mesh_3d(self, frame: torch.Tensor, faces: torch.Tensor, keypoints: torch.Tensor
                ) -> torch.Tensor:
        """[B,K,468,3] landmarks in frame pixels with FaceMesh's depth on the same scale.

        Not part of the served graph: quality metrics (head pose) use it.
        """
        mesh, _, matrix, present = self.run_mesh(frame, faces, keypoints)
        points = apply_affine(mesh[..., 0:2], matrix)
        scale = matrix[..., 0, 0:2].norm(dim=-1).unsqueeze(-1).unsqueeze(-1)  # crop px -> frame px
        depth = mesh[..., 2:3] * scale
        return torch.cat([points, depth], dim=-1) * present.unsqueeze(-1).unsqueeze(-1)
