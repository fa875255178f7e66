"""The swap autoencoder: one shared encoder, one decoder per identity (the classic deepfake AE).

Faces are aligned BGR crops in [0,1], [N,3,S,S]. Encoding face A and decoding with B's decoder
swaps the identity while pose and expression come through the shared latent. Each decoder also
predicts a mask logit, trained against the landmark mask when the mask loss is on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

IDENTITIES = ("a", "b")


@dataclass(frozen=True)
class AutoencoderPreset:
    """Size of the network; `lite` runs in real time on a 2-core CPU, `full` is for GPU hosts."""

    name: str
    face_size: int
    encoder_channels: tuple[int, ...]
    latent: int
    inter_channels: int
    decoder_channels: tuple[int, ...]
    residual_blocks: int


PRESETS = {
    "lite": AutoencoderPreset("lite", 64, (24, 48, 96, 192), 192, 128, (96, 48, 32), 0),
    "full": AutoencoderPreset("full", 128, (64, 128, 256, 512, 512), 512, 512,
                              (384, 256, 128, 64), 1),
}


def downscale(channels_in: int, channels_out: int) -> nn.Sequential:
    """Halve the resolution: 5x5 stride-2 convolution and leaky ReLU."""
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 5, stride=2, padding=2),
                         nn.LeakyReLU(0.1))


def upscale(channels_in: int, channels_out: int) -> nn.Sequential:
    """Double the resolution: 3x3 convolution to 4x channels and pixel shuffle."""
    return nn.Sequential(nn.Conv2d(channels_in, channels_out * 4, 3, padding=1),
                         nn.LeakyReLU(0.1), nn.PixelShuffle(2))


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(channels, channels, 3, padding=1))
        self.activation = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x + body(x), activated."""
        return self.activation(x + self.body(x))


class Encoder(nn.Module):
    """Face -> shared 8x8 feature map (convolutions, dense bottleneck, one upscale)."""

    def __init__(self, preset: AutoencoderPreset) -> None:
        super().__init__()
        channels = (3, *preset.encoder_channels)
        self.convs = nn.Sequential(*(downscale(a, b) for a, b in pairwise(channels)))
        self.bottom = preset.face_size // 2 ** len(preset.encoder_channels)
        flat = preset.encoder_channels[-1] * self.bottom * self.bottom
        self.inter_channels = preset.inter_channels
        self.to_latent = nn.Linear(flat, preset.latent)
        self.from_latent = nn.Linear(preset.latent, preset.inter_channels * self.bottom ** 2)
        self.up = upscale(preset.inter_channels, preset.inter_channels)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """[N,3,S,S] in [0,1] -> [N,C,2*bottom,2*bottom]."""
        x = self.convs(faces * 2.0 - 1.0)
        latent = self.to_latent(x.flatten(1))
        x = self.from_latent(latent).reshape(-1, self.inter_channels, self.bottom, self.bottom)
        return self.up(x)


class Decoder(nn.Module):
    """Shared features -> one identity's face [N,3,S,S] in [0,1] and mask logit [N,1,S,S]."""

    def __init__(self, preset: AutoencoderPreset) -> None:
        super().__init__()
        encoder_bottom = preset.face_size // 2 ** len(preset.encoder_channels)
        steps = int(math.log2(preset.face_size // (2 * encoder_bottom)))
        channels = (preset.inter_channels, *preset.decoder_channels)[: steps + 1]
        layers: list[nn.Module] = []
        for a, b in pairwise(channels):
            layers.append(upscale(a, b))
            layers.extend(ResidualBlock(b) for _ in range(preset.residual_blocks))
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels[-1], 4, 3, padding=1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (face in [0,1], mask logit)."""
        out = self.head(self.body(features))
        return torch.sigmoid(out[:, 0:3]), out[:, 3:4]


class FaceAutoencoder(nn.Module):
    """Shared encoder and one decoder per identity."""

    def __init__(self, preset: AutoencoderPreset, identities: tuple[str, ...] = IDENTITIES) -> None:
        super().__init__()
        self.preset = preset
        self.encoder = Encoder(preset)
        self.decoders = nn.ModuleDict({name: Decoder(preset) for name in sorted(identities)})

    def forward(self, faces: torch.Tensor, identity: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode faces and decode them as `identity`."""
        return self.decoders[identity](self.encoder(faces))

    def save(self, path: Path, extra: dict[str, str] | None = None) -> None:
        """Write weights as safetensors with the preset in the metadata."""
        metadata = {"preset": json_dumps(asdict(self.preset)), **(extra or {})}
        tensors = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: Path) -> FaceAutoencoder:
        """Read weights written by `save` (the preset comes from the file)."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if "preset" not in metadata:
            raise ValueError(f"{path} has no preset in its metadata: not written by swaptron train")
        preset = preset_from_json(metadata["preset"])
        identities = tuple(sorted({k.split(".")[1] for k in load_file(str(path))
                                   if k.startswith("decoders.")}))
        model = cls(preset, identities)
        model.load_state_dict(load_file(str(path)))
        return model


def json_dumps(value: dict[str, object]) -> str:
    """Compact JSON for safetensors metadata."""
    import json

    return json.dumps(value, separators=(",", ":"))


def preset_from_json(text: str) -> AutoencoderPreset:
    """Inverse of the metadata written by `FaceAutoencoder.save`."""
    import json

    fields = json.loads(text)
    for key in ("encoder_channels", "decoder_channels"):
        fields[key] = tuple(fields[key])
    return AutoencoderPreset(**fields)
