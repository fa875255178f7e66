"""The mark's embedder in the swapper graph: a keyed tile anchored to the frame.

The code (payload, keyed CRC, patterns) is swaptron/mark_code.py, shared with the reader graph
(networks/mark_reader.py) and the client. Each identity's codeword tile (mark_code.codeword_tile,
T x T luma levels) is a constant of the graph. Where a swapped face is blended into the frame,
the swapper adds to its colour the tile's value at the pixel's frame position modulo T
(`FrameMark.delta`), before the blend: the face's own blend mask carries the mark into the frame
and nowhere else. The same shift goes into B, G and R (a luma-only change; yuv420p chroma
subsampling does not touch it). Anchored to the frame rather than to the face, the mark needs
no face alignment to be read: a reader folds the frame's pixels onto the tile.

In a graph this is two small Gathers and an add: the tile rows of each image's window rows
(from a constant [identities*T, T] table), then, transposed, their columns; no per-pixel index
is computed. ONNX opset 17, and TensorRT 10.5 takes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from swaptron.mark_code import MarkKey, codeword_tile


@dataclass(frozen=True)
class MarkOptions:
    """The swapper's mark, fixed at export: on or off (`swaptron export --no-mark`), the
    server id it carries and the key."""

    enabled: bool = True
    server_id: int = 0
    key: MarkKey = field(default_factory=MarkKey)


class FrameMark(nn.Module):
    """The luma shift the mark adds at given frame pixels, for each image's identity."""

    def __init__(self, identities: int, server_id: int, key: MarkKey | None = None) -> None:
        super().__init__()
        self.key = key or MarkKey()
        self.server_id = server_id
        self.tile = self.key.tile
        tiles = np.stack([codeword_tile(server_id, index, self.key)
                          for index in range(identities)])
        self.register_buffer("tiles", torch.from_numpy(tiles.reshape(-1, self.tile)).float(),
                             persistent=False)  # [I*T,T] luma levels: the tiles' rows

    def delta(self, rows: torch.Tensor, columns: torch.Tensor, targets: torch.Tensor
              ) -> torch.Tensor:
        """rows [B,h] and columns [B,w] (int64 frame pixels), targets [B] (int64 identity
        index) -> the luma shift [B,h,w] (levels)."""
        tile, batch = self.tile, rows.shape[0]
        tile_rows = self.tiles[(targets * tile).reshape(-1, 1) + rows % tile]  # [B,h,T]
        by_column = tile_rows.transpose(1, 2).reshape(batch * tile, -1)  # [B*T,h]
        first_column = (torch.arange(batch) * tile).reshape(-1, 1)
        return by_column[first_column + columns % tile].transpose(1, 2)  # [B,h,w]


def build_mark(options: MarkOptions, identities: int) -> FrameMark | None:
    """The swapper's embedder, None when the operator turned the mark off."""
    if not options.enabled:
        return None
    return FrameMark(identities, options.server_id, options.key).eval()
