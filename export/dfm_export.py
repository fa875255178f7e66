"""Export one identity of our autoencoder as a DFM that DeepFaceLive, FaceFusion and VisoMaster
load: `swaptron export-dfm`.

The graph takes DeepFaceLive's whole_face crop (R x R, NHWC, BGR 0..1), resamples it to our S x S
crop with one fixed affine, runs the encoder and the identity's decoder, applies our mean/std
colour transfer inside the decoder's mask (as the swapper graph does), and resamples face and
mask back to R. Outside the part of the crop ours covers, the celeb face is the input face and
the masks are 0. Outputs by position: face mask (where our crop reaches), celeb face, celeb mask
(the decoder's mask).

The fixed affine between the two crops is found on our template: placed as if it were a face in
a frame, it gives both crops' matrices (our rigid-point similarity, and whole_face_matrix onto
the DFM template). Both fit the same rigid points onto templates one fixed similarity apart
(networks/dfm_align.dfm_normalisation), so on any face the affine is exact (up to rounding).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from swaptron.networks.autoencoder import FaceAutoencoder
from swaptron.networks.dfm import DFL_INPUT_NAMES, DFL_OUTPUT_NAMES, DfmInfo, read_dfm
from swaptron.networks.dfm_align import (
    AlignOptions,
    compose,
    invert,
    load_dfm_template,
    similarity,
    transform,
    whole_face_matrix,
)
from swaptron.networks.face_template import RIGID_POINTS, load_template
from swaptron.networks.swapper import BlendOptions, transfer_colour

OPSET = 17
DEFAULT_RESOLUTION = 224


def crop_bridge(resolution: int, face_size: int, options: AlignOptions | None = None
                ) -> np.ndarray:
    """Affine [2,3] from DFM crop pixels (R) to our crop pixels (S), found on our template."""
    ours = load_template().astype(np.float64)  # our template, as if it were a face in a frame
    to_dfm = whole_face_matrix(ours, load_dfm_template(), resolution, options)
    rigid = list(RIGID_POINTS)
    to_ours = similarity(ours[rigid], ours[rigid] * face_size)
    return compose(to_ours, invert(to_dfm))


def sampling_grid(matrix: np.ndarray, out_size: int, in_size: int) -> torch.Tensor:
    """GridSample grid [1,out,out,2] reading an in_size image at matrix(pixel centre) for each
    output pixel; matrix maps output pixels to input pixels."""
    centres = np.arange(out_size, dtype=np.float64) + 0.5
    xs, ys = np.meshgrid(centres, centres, indexing="xy")
    points = transform(np.stack([xs.ravel(), ys.ravel()], axis=1), matrix)
    grid = points / in_size * 2.0 - 1.0
    return torch.from_numpy(grid.reshape(1, out_size, out_size, 2).astype(np.float32))


class DfmWrapper(nn.Module):
    """in_face [N,R,R,3] -> (face mask [N,R,R,1], celeb face [N,R,R,3], celeb mask [N,R,R,1])."""

    def __init__(self, autoencoder: FaceAutoencoder, identity: str, resolution: int) -> None:
        super().__init__()
        if identity not in autoencoder.decoders:
            raise ValueError(f"identity {identity!r} is not in the weights "
                             f"({', '.join(autoencoder.decoders)})")
        size = autoencoder.preset.face_size
        bridge = crop_bridge(resolution, size)
        self.encoder = autoencoder.encoder
        self.decoder = autoencoder.decoders[identity]
        self.limits = BlendOptions().std_ratio_limits
        to_ours = sampling_grid(invert(bridge), size, resolution)  # our pixel -> DFM pixel
        to_dfm = sampling_grid(bridge, resolution, size)  # DFM pixel -> our pixel
        reach = (to_dfm.abs() <= 1.0).all(dim=-1).to(torch.float32).unsqueeze(1)
        self.register_buffer("to_ours", to_ours, persistent=False)
        self.register_buffer("to_dfm", to_dfm, persistent=False)
        self.register_buffer("reach", reach, persistent=False)  # [1,1,R,R]

    def forward(self, in_face: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three DFM outputs, NHWC, in 0..1."""
        batch = in_face.shape[0]
        planar = in_face.permute(0, 3, 1, 2)
        ours = F.grid_sample(planar, self.to_ours.expand(batch, -1, -1, -1), mode="bilinear",
                             padding_mode="zeros", align_corners=False)
        generated, mask_logit = self.decoder(self.encoder(ours))
        mask = torch.sigmoid(mask_logit)
        generated = transfer_colour(generated, ours, mask, self.limits)
        back = F.grid_sample(torch.cat([generated, mask], dim=1),
                             self.to_dfm.expand(batch, -1, -1, -1), mode="bilinear",
                             padding_mode="zeros", align_corners=False)
        celeb = back[:, 0:3] * self.reach + planar * (1.0 - self.reach)
        face_mask = self.reach.expand(batch, -1, -1, -1)
        return (face_mask.permute(0, 2, 3, 1), celeb.clamp(0.0, 1.0).permute(0, 2, 3, 1),
                back[:, 3:4].clamp(0.0, 1.0).permute(0, 2, 3, 1))


def wrapper_onnx(wrapper: DfmWrapper, resolution: int) -> onnx.ModelProto:
    """Trace the wrapper with DeepFaceLab's tensor names, batch axis dynamic, R fixed."""
    example = torch.rand(1, resolution, resolution, 3)
    names = [DFL_INPUT_NAMES[0], *DFL_OUTPUT_NAMES]
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns that it is legacy
        torch.onnx.export(wrapper.eval(), (example,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=names[:1], output_names=names[1:],
                          dynamic_axes={name: {0: "N"} for name in names},
                          do_constant_folding=True)
    model = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model)
    return model


def export_dfm(weights: Path, identity: str, out: Path,
               resolution: int = DEFAULT_RESOLUTION) -> DfmInfo:
    """Write identity `identity` of the autoencoder at `weights` as a DFM file; returns the
    checked description of the file written."""
    if resolution < 16 or resolution % 2:
        raise ValueError(f"resolution must be an even number of pixels >= 16, got {resolution}")
    autoencoder = FaceAutoencoder.load(weights).eval()
    model = wrapper_onnx(DfmWrapper(autoencoder, identity, resolution), resolution)
    model.doc_string = f"swaptron autoencoder {weights.name}, identity {identity}, as a DFM"
    onnx.helper.set_model_props(model, {"swaptron_identity": identity,
                                        "swaptron_face_size": str(autoencoder.preset.face_size)})
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return read_dfm(out)
