"""The mark's reader graph (the `mark_reader` model of the `scan` ensemble).

FRAME uint8 [B,H,W,3], LANDMARKS [B,K,468,2] and PRESENCE [B,K] -> MARK [B,K,CODE_BITS]. The
mark is anchored to the frame (networks/watermark.py), so no face is aligned: the frame's luma
is high-passed (its Gaussian blur of sigma `key.highpass` taken off), weighed per face slot by a
smooth elliptical window over the face (`key.window` of the face outline's extent) over the local
power of that detail (the host's texture is the reader's noise: edges count less), folded onto
one T x T tile (the frame cut into tiles from its top-left corner, the tiles summed) and
projected on the key's patterns, each projection divided by the weights' energy on that pattern
and by the strength: soft bits, about +-1 where the swapper marked the face, 0 for an empty slot.
The same is done for a frame that was downscaled 2x after marking (tile T/2, the patterns
area-averaged, half the sigma) and each slot keeps the scale whose soft bits lie closer to +-1
(the least mean square of |soft| - 1): a mark read at the wrong scale is noise, spread far
wider. The vote over a face's frames and the payload check are the client's
(swaptron/mark_code.decode); the reading is its own output, never folded into FAKE_SCORE.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from swaptron.mark_code import LUMA_BGR, MarkKey, halved_patterns, tile_patterns
from swaptron.networks.face_template import FACE_OVAL
from swaptron.networks.geometry import as_float32

WINDOW_TAPER = 0.25  # the window falls from 1 to 0 over this share of its radius
SCALES = (1, 2)  # the frame as marked, and as a 2x downscale of it


def gaussian_taps(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian [2r+1] (r = ceil(3 sigma))."""
    radius = max(1, math.ceil(3.0 * sigma))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    return torch.from_numpy((taps / taps.sum()).astype(np.float32))


class ScaleReader(nn.Module):
    """Soft bits at one scale: weighted, high-passed luma folded onto a tile and projected."""

    def __init__(self, key: MarkKey, factor: int, patterns: torch.Tensor) -> None:
        super().__init__()
        self.tile = key.tile // factor
        self.strength = key.strength
        self.noise_box = max(3, (key.noise_box // factor) | 1) if key.noise_box else 0  # odd
        self.noise_floor = key.noise_floor
        self.register_buffer("patterns", patterns, persistent=False)
        self.register_buffer("taps", gaussian_taps(key.highpass / factor), persistent=False)

    def highpass(self, grey: torch.Tensor) -> torch.Tensor:
        """[B,1,H,W] -> the same less its Gaussian blur (edges replicated)."""
        half = (self.taps.numel() - 1) // 2
        padded = functional.pad(grey, (half, half, half, half), mode="replicate")
        blurred = functional.conv2d(padded, self.taps.reshape(1, 1, 1, -1))
        blurred = functional.conv2d(blurred, self.taps.reshape(1, 1, -1, 1))
        return grey - blurred

    def weights(self, detail: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """Each slot's window [B,K,H,W] over (the detail's local mean square + the floor): the
        host's own texture is the reader's noise, so busy pixels count less. A key's
        noise_box of 0 weighs by the window alone."""
        if self.noise_box == 0:
            return windows
        half = self.noise_box // 2
        padded = functional.pad(detail * detail, (half, half, half, half), mode="replicate")
        power = functional.avg_pool2d(padded, self.noise_box, stride=1)  # [B,1,H,W]
        return windows / (power + self.noise_floor)

    def fold(self, images: torch.Tensor) -> torch.Tensor:
        """[N,H,W] -> [N,T*T]: zero-padded to whole tiles, the tiles summed."""
        tile = self.tile
        height, width = images.shape[-2], images.shape[-1]
        padded = functional.pad(images, (0, (tile - width % tile) % tile,
                                         0, (tile - height % tile) % tile))
        rows, columns = padded.shape[-2] // tile, padded.shape[-1] // tile
        tiles = padded.reshape(-1, rows, tile, columns, tile)
        return tiles.sum(dim=(1, 3)).reshape(-1, tile * tile)

    def folds(self, grey: torch.Tensor, windows: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """grey [B,1,H,W] (0..255), windows [B,K,H,W] -> the weighted detail and the weights,
        each folded onto the tile [B*K,T*T]. Only the tile, the high-pass and the noise weights
        of the key enter here, not its secret."""
        detail = self.highpass(grey)
        weights = self.weights(detail, windows)
        return self.fold((weights * detail).flatten(0, 1)), self.fold(weights.flatten(0, 1))

    def project(self, folded: tuple[torch.Tensor, torch.Tensor],
                patterns: torch.Tensor | None = None) -> torch.Tensor:
        """Folds -> soft bits [B*K,CODE_BITS]: each projection over the weights' energy on its
        pattern and the strength (patterns: another key's at this scale; default this one's)."""
        patterns = self.patterns if patterns is None else patterns
        detail, weights = folded
        energy = torch.matmul(weights, (patterns * patterns).t())
        return torch.matmul(detail, patterns.t()) / (energy.clamp_min(1e-9) * self.strength)

    def forward(self, grey: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """grey [B,1,H,W] (0..255), windows [B,K,H,W] -> soft bits [B,K,CODE_BITS]."""
        soft = self.project(self.folds(grey, windows))
        return soft.reshape(windows.shape[0], windows.shape[1], -1)


class MarkReader(nn.Module):
    """Soft bits of every face slot's mark, for one key."""

    def __init__(self, key: MarkKey | None = None, presence_threshold: float = 0.5) -> None:
        super().__init__()
        self.key = key or MarkKey()
        self.presence_threshold = presence_threshold
        self.scales = nn.ModuleList(
            ScaleReader(self.key, factor, patterns)
            for factor, patterns in zip(SCALES, scale_patterns(self.key), strict=True))
        self.register_buffer("luma_weights", torch.tensor(LUMA_BGR).reshape(1, 1, 1, 3),
                             persistent=False)

    def windows(self, grey: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """[B,K,H,W] for a grey frame [B,1,H,W]: per slot, 1 inside `key.window` of the face
        outline's extent (an ellipse about its centre), tapering to 0 at its edge."""
        outline = landmarks[:, :, list(FACE_OVAL)]  # [B,K,V,2]
        low, high = outline.amin(dim=2), outline.amax(dim=2)
        centre = ((low + high) / 2).unsqueeze(-1).unsqueeze(-1)  # [B,K,2,1,1]
        half = ((high - low) / 2 * self.key.window).clamp_min(1.0).unsqueeze(-1).unsqueeze(-1)
        height, width = grey.shape[2], grey.shape[3]
        xs = torch.arange(width, dtype=torch.float32).reshape(1, 1, 1, -1) + 0.5
        ys = torch.arange(height, dtype=torch.float32).reshape(1, 1, -1, 1) + 0.5
        radius = torch.sqrt(((xs - centre[:, :, 0]) / half[:, :, 0]) ** 2
                            + ((ys - centre[:, :, 1]) / half[:, :, 1]) ** 2)
        return ((1.0 - radius) / WINDOW_TAPER).clamp(0.0, 1.0)

    def folds(self, frame: torch.Tensor, landmarks: torch.Tensor, presence: torch.Tensor
              ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every scale's folds of every face slot [B*K,T*T] (ScaleReader.folds); an empty slot
        folds to zeros. Another key with the same tile, high-pass and noise weights can read
        these (soft_bits with its patterns) without folding the frame again."""
        batch, slots = landmarks.shape[0], landmarks.shape[1]
        valid = (presence > self.presence_threshold).to(torch.float32)  # [B,K]
        grey = (frame.to(torch.float32) * self.luma_weights).sum(dim=-1).unsqueeze(1)
        windows = self.windows(grey, landmarks.float()) * valid.reshape(batch, slots, 1, 1)
        return [reader.folds(grey, windows) for reader in self.scales]

    def soft_bits(self, folds: list[tuple[torch.Tensor, torch.Tensor]],
                  patterns: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Folds -> soft bits [B*K,CODE_BITS], each slot at the scale whose soft bits lie closer
        to +-1 (patterns: another key's, one per scale, from scale_patterns)."""
        best, best_sureness = None, None
        for index, reader in enumerate(self.scales):
            soft = reader.project(folds[index], None if patterns is None else patterns[index])
            sureness = -((soft.abs() - 1.0) ** 2).mean(dim=1, keepdim=True)
            if best is None or best_sureness is None:
                best, best_sureness = soft, sureness
                continue
            better = sureness > best_sureness
            best = torch.where(better, soft, best)
            best_sureness = torch.where(better, sureness, best_sureness)
        return best

    def forward(self, frame: torch.Tensor, landmarks: torch.Tensor, presence: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> MARK [B,K,CODE_BITS] float32 soft bits (0 for an empty slot), and PRESENCE as it
        came (the scan ensemble's next step reads it from here)."""
        batch, slots = landmarks.shape[0], landmarks.shape[1]
        valid = (presence > self.presence_threshold).to(torch.float32)
        # sums over whole windows overflow half: the reader stays float32 under autocast (a
        # no-op in the exported float32 graph)
        with torch.autocast(frame.device.type, enabled=False):
            folds = self.folds(frame, as_float32(landmarks), as_float32(presence))
            soft = self.soft_bits(folds).reshape(batch, slots, -1)
        return soft * valid.unsqueeze(-1), presence * 1.0


def scale_patterns(key: MarkKey) -> list[torch.Tensor]:
    """A key's patterns as each of SCALES shows them ([CODE_BITS,(T/f)^2] per scale)."""
    patterns = tile_patterns(key)
    return [torch.from_numpy(patterns if factor == 1 else halved_patterns(patterns, key.tile))
            for factor in SCALES]
