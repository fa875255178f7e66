"""The mark's embedder in the swapper graph: keyed spread spectrum with informed embedding.

The code (payload, keyed CRC, variants, patterns) is swaptron/mark_code.py, shared with the
reader graph (networks/mark_reader.py) and the client. Embedding is informed: the crop's
projection p on each pattern is measured and only the shortfall to the margin a is added,
c = b * max(a - b * p, 0), nothing for a bit whose shortfall exceeds `limit`; per face, the
variant whose bits cost least (fewest unreachable bits, then least energy) is taken. So the
face never fights the mark and bits the host already carries cost nothing.

In a graph this is two MatMuls with constant patterns, a Gather of the target's codewords,
elementwise clamps, a ReduceMin choice and adds: ONNX opset 17, and TensorRT 10.5 takes all of
it (no loops, no data-dependent shapes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from swaptron.mark_code import LUMA_BGR, VARIANTS, MarkKey, encode_payload, mark_patterns
from swaptron.networks.face_template import FACE_OVAL, load_template


@dataclass(frozen=True)
class MarkOptions:
    """The swapper's mark, fixed at export: on or off (`swaptron export --no-mark`), the
    server id it carries and the key."""

    enabled: bool = True
    server_id: int = 0
    key: MarkKey = field(default_factory=MarkKey)


def face_patterns(size: int, key: MarkKey) -> np.ndarray:
    """The key's patterns [CODE_BITS,S*S] for our template's S x S aligned crop."""
    return mark_patterns(size, key, load_template()[list(FACE_OVAL)])


def luma(faces: torch.Tensor) -> torch.Tensor:
    """BGR faces [N,3,S,S] in [0,1] -> luma [N,S*S] in 0..255."""
    blue, green, red = LUMA_BGR
    gray = faces[:, 0] * blue + faces[:, 1] * green + faces[:, 2] * red
    return (gray * 255.0).flatten(1)


class FaceMark(nn.Module):
    """Add the mark to aligned swapped faces: faces [N,3,S,S] BGR in [0,1] and each face's
    identity index [N] (int64) -> the marked faces, same shape.

    The codeword of every identity (for this server id) is a constant table; the patterns are
    constants of the graph. The same shift is added to B, G and R (a luma-only change).
    """

    def __init__(self, face_size: int, identities: int, server_id: int,
                 key: MarkKey | None = None) -> None:
        super().__init__()
        self.key = key or MarkKey()
        self.server_id = server_id
        codes = np.stack([[encode_payload(server_id, index, self.key, variant)
                           for variant in range(VARIANTS)] for index in range(identities)])
        self.register_buffer("signs", torch.from_numpy(codes.astype(np.float32) * 2.0 - 1.0),
                             persistent=False)  # [I,VARIANTS,CODE_BITS] of +-1
        self.register_buffer("patterns", torch.from_numpy(face_patterns(face_size, self.key)),
                             persistent=False)  # [CODE_BITS,S*S]
        self.face_size = face_size

    def forward(self, faces: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Marked faces [N,3,S,S] in [0,1]."""
        projection = torch.matmul(luma(faces), self.patterns.t()).unsqueeze(1)  # [N,1,BITS]
        candidates = self.signs.index_select(0, targets.reshape(-1))  # [N,VARIANTS,BITS]
        shortfall = (self.key.margin - candidates * projection).clamp_min(0.0)
        hopeless = (shortfall > self.key.limit).to(shortfall.dtype)
        cost = (shortfall * shortfall * (1.0 - hopeless)).sum(dim=2) + (
            hopeless.sum(dim=2) * (4.0 * self.key.limit * self.key.limit))  # [N,VARIANTS]
        best = (cost <= cost.amin(dim=1, keepdim=True)).to(cost.dtype)
        best = (best / best.sum(dim=1, keepdim=True)).unsqueeze(2)  # one-hot (ties: shared)
        push = (candidates * shortfall * (1.0 - hopeless) * best).sum(dim=1)  # [N,BITS]
        delta = torch.matmul(push, self.patterns) / 255.0  # [N,S*S]
        delta = delta.reshape(-1, 1, self.face_size, self.face_size)
        return (faces + delta).clamp(0.0, 1.0)


def build_mark(options: MarkOptions, face_size: int, identities: int) -> FaceMark | None:
    """The swapper's embedder, None when the operator turned the mark off."""
    if not options.enabled:
        return None
    return FaceMark(face_size, identities, options.server_id, options.key).eval()
