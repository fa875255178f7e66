"""The mark's reader graph (the `mark_reader` model of the `scan` ensemble).

FRAME uint8 [B,H,W,3], LANDMARKS [B,K,468,2] and PRESENCE [B,K] -> MARK [B,K,CODE_BITS]: each
present face is aligned exactly as the swapper aligns it (networks/swapper.alignment), its luma
is projected on the key's patterns (swaptron/mark_code.py) and divided by the margin: soft bits,
about +-1 where the swapper marked the face, 0 for an empty slot. The vote over a face's frames
and the payload check are the client's (swaptron/mark_code.decode); the reading is its own
output, never folded into FAKE_SCORE.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from swaptron.mark_code import MarkKey
from swaptron.networks.geometry import GraphOptions
from swaptron.networks.swapper import align_crops
from swaptron.networks.watermark import face_patterns, luma


class MarkReader(nn.Module):
    """Soft bits of every face slot's mark, for one key and crop size S (the swapper's)."""

    def __init__(self, face_size: int, template: np.ndarray, key: MarkKey | None = None,
                 presence_threshold: float = 0.5, graph: GraphOptions | None = None) -> None:
        super().__init__()
        self.key = key or MarkKey()
        self.face_size = face_size
        self.presence_threshold = presence_threshold
        self.graph = graph or GraphOptions()
        self.register_buffer("template", torch.from_numpy(template * face_size).float(),
                             persistent=False)
        self.register_buffer("patterns", torch.from_numpy(face_patterns(face_size, self.key)),
                             persistent=False)  # [CODE_BITS,S*S]

    def crops(self, frame: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """Every slot's aligned luma [B*K,S*S] (0..255), as the swapper's embedder saw it."""
        _, crops = align_crops(frame, landmarks, self.template, self.face_size, self.graph)
        return luma(crops)

    def forward(self, frame: torch.Tensor, landmarks: torch.Tensor, presence: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> MARK [B,K,CODE_BITS] float32 soft bits (0 for an empty slot), and PRESENCE as it
        came (the scan ensemble's next step reads it from here)."""
        batch, slots = landmarks.shape[0], landmarks.shape[1]
        soft = torch.matmul(self.crops(frame, landmarks), self.patterns.t()) / self.key.margin
        valid = (presence > self.presence_threshold).to(torch.float32).reshape(-1, 1)
        return (soft * valid).reshape(batch, slots, -1), presence * 1.0
