"""`swaptron train`: the swap autoencoder, one shared encoder and a decoder per identity.

Classic deepfake training: every step reconstructs a batch of each identity through its own
decoder, from a randomly warped, colour-jittered, sometimes flipped copy of the face. The loss is
L1 plus structural dissimilarity (DSSIM), weighted towards the face, plus a mask loss on the
decoders' mask channel. Checkpoints allow resuming; `--minutes` bounds the run.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from tqdm import tqdm

from swaptron.networks.autoencoder import PRESETS, FaceAutoencoder

MOUTH_POINTS = (13, 14, 61, 291, 0, 17)
RIGHT_EYE_POINTS = (33, 133, 159, 145)
LEFT_EYE_POINTS = (362, 263, 386, 374)
CHECKPOINT = "checkpoint.pt"
WEIGHTS = "autoencoder.safetensors"
HISTORY = "history.json"


class TrainError(ValueError):
    """Bad dataset or options; the message says which."""


@dataclass(frozen=True)
class TrainOptions:
    """What to train and for how long."""

    dataset: Path
    output: Path
    identities: tuple[str, ...] = ("a", "b")
    preset: str = "lite"
    batch_size: int = 16
    learning_rate: float = 3e-4
    minutes: float | None = None
    steps: int | None = None
    mask_loss: bool = True
    resume: bool = False
    checkpoint_every: int = 500
    seed: int = 0
    threads: int | None = None


@dataclass
class Faces:
    """One identity's faces in memory: [N,3,S,S] in [0,1], masks and eye/mouth weights
    [N,1,S,S]."""

    images: torch.Tensor
    masks: torch.Tensor
    regions: torch.Tensor


@dataclass
class History:
    """What the run has done so far (kept in checkpoints)."""

    steps: int = 0
    minutes: float = 0.0
    losses: list[float] = field(default_factory=list)


def load_faces(dataset: Path, identity: str, split: str = "train") -> Faces:
    """Faces of one split written by `swaptron extract`."""
    folder = dataset / identity
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise TrainError(f"{meta_path} is missing: run `swaptron extract` for identity {identity}")
    records = [r for r in json.loads(meta_path.read_text())["faces"] if r["split"] == split]
    if not records:
        raise TrainError(f"{folder} has no {split} faces")
    images = np.stack([cv2.imread(str(folder / "faces" / r["file"])) for r in records])
    masks = np.stack([cv2.imread(str(folder / "masks" / r["file"]), cv2.IMREAD_GRAYSCALE)
                      for r in records])
    landmarks = torch.tensor(np.array([r["landmarks"] for r in records]), dtype=torch.float32)
    return Faces(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0,
                 torch.from_numpy(masks).unsqueeze(1).float() / 255.0,
                 feature_regions(landmarks, images.shape[1]))


def feature_regions(landmarks: torch.Tensor, face_size: int) -> torch.Tensor:
    """[N,1,S,S] soft blobs over the eyes and the mouth of aligned faces (in [0,1]).

    landmarks [N,468,2] in frame pixels are aligned with the swapper's own similarity; the
    blobs weight the loss where expressions live and where an autoencoder blurs first.
    """
    from swaptron.networks.face_template import load_template
    from swaptron.networks.geometry import apply_affine, pixel_centres
    from swaptron.networks.swapper import alignment

    template = torch.from_numpy(load_template() * face_size).float()
    aligned = apply_affine(landmarks[:, None], alignment(landmarks[:, None], template))[:, 0]
    points = pixel_centres(face_size, face_size)[:, 0:2]  # [P,2]
    regions = torch.zeros(len(landmarks), face_size * face_size)
    for group, spread in ((MOUTH_POINTS, 0.09), (RIGHT_EYE_POINTS, 0.06),
                          (LEFT_EYE_POINTS, 0.06)):
        centre = aligned[:, list(group)].mean(dim=1)  # [N,2]
        distance2 = ((points[None] - centre[:, None]) ** 2).sum(-1)
        regions = torch.maximum(regions, torch.exp(-distance2 / (2 * (spread * face_size) ** 2)))
    return regions.reshape(-1, 1, face_size, face_size)


def random_affine(batch: int, strength: float, generator: torch.Generator) -> torch.Tensor:
    """[N,2,3] small rotations, zooms, shifts and horizontal flips (GridSample units)."""
    angle = (torch.rand(batch, generator=generator) * 2 - 1) * math.radians(10) * strength
    scale = 1 + (torch.rand(batch, generator=generator) * 2 - 1) * 0.05 * strength
    shift = (torch.rand(batch, 2, generator=generator) * 2 - 1) * 0.05 * strength
    flip = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    return torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], dim=1),
                        torch.stack([sin * flip, cos, shift[:, 1]], dim=1)], dim=1)


def random_warp(batch: int, size: int, generator: torch.Generator,
                amplitude: float = 0.035) -> torch.Tensor:
    """[N,S,S,2] smooth random displacement (a 5x5 grid of offsets, upsampled)."""
    offsets = torch.randn(batch, 2, 5, 5, generator=generator) * amplitude
    offsets[:, :, [0, -1], :] = 0
    offsets[:, :, :, [0, -1]] = 0
    flow = F.interpolate(offsets, size=(size, size), mode="bicubic", align_corners=True)
    return flow.permute(0, 2, 3, 1)


def jitter_parameters(count: int, generator: torch.Generator) -> torch.Tensor:
    """[N,5]: brightness, contrast and three channel gains per face."""
    brightness = (torch.rand(count, 1, generator=generator) * 2 - 1) * 0.08
    contrast = 1 + (torch.rand(count, 1, generator=generator) * 2 - 1) * 0.15
    gains = 1 + (torch.rand(count, 3, generator=generator) * 2 - 1) * 0.05
    return torch.cat([brightness, contrast, gains], dim=1)


def colour_jitter(images: torch.Tensor, parameters: torch.Tensor) -> torch.Tensor:
    """Apply per-face brightness, contrast and channel gains."""
    brightness = parameters[:, 0].reshape(-1, 1, 1, 1)
    contrast = parameters[:, 1].reshape(-1, 1, 1, 1)
    gains = parameters[:, 2:5].reshape(-1, 3, 1, 1)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * contrast + mean + brightness).mul(gains).clamp(0.0, 1.0)


def augment(faces: Faces, indices: torch.Tensor, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(warped input, target, target mask and eye/mouth weights) for one identity's batch.

    Input and target share one random affine, flip and colour change; only the input is warped.
    """
    images, masks = faces.images[indices], faces.masks[indices]
    count, size = len(indices), images.shape[-1]
    layers = torch.cat([images, masks, faces.regions[indices]], dim=1)
    grid = F.affine_grid(random_affine(count, 1.0, generator), list(layers.shape),
                         align_corners=False)
    target = F.grid_sample(layers, grid, mode="bilinear", padding_mode="reflection",
                           align_corners=False)
    warped = F.grid_sample(images, grid + random_warp(count, size, generator), mode="bilinear",
                           padding_mode="reflection", align_corners=False)
    colours = jitter_parameters(count, generator)
    return (colour_jitter(warped, colours), colour_jitter(target[:, 0:3], colours),
            target[:, 3:4], target[:, 4:5])


def gaussian_window(size: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """[1,1,size,size] normalised Gaussian for SSIM."""
    axis = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    kernel = torch.exp(-(axis ** 2) / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    return (kernel[:, None] * kernel[None, :]).reshape(1, 1, size, size)


def dssim(prediction: torch.Tensor, target: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Structural dissimilarity (1 - SSIM) / 2 per pixel, [N,C,S,S]."""
    channels = prediction.shape[1]
    kernel = window.expand(channels, 1, *window.shape[2:])
    pad = window.shape[-1] // 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (pad,) * 4, mode="reflect"), kernel, groups=channels)

    mu_p, mu_t = blur(prediction), blur(target)
    var_p = blur(prediction * prediction) - mu_p ** 2
    var_t = blur(target * target) - mu_t ** 2
    covariance = blur(prediction * target) - mu_p * mu_t
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = ((2 * mu_p * mu_t + c1) * (2 * covariance + c2)) / (
        (mu_p ** 2 + mu_t ** 2 + c1) * (var_p + var_t + c2))
    return (1 - ssim) / 2


def reconstruction_loss(prediction: torch.Tensor, mask_logit: torch.Tensor,
                        target: torch.Tensor, target_mask: torch.Tensor, regions: torch.Tensor,
                        window: torch.Tensor, mask_loss: bool) -> torch.Tensor:
    """L1 + 2*DSSIM weighted 4x inside the face mask and up to 4x more on the eyes and mouth,
    plus the mask's BCE."""
    weight = 0.25 + target_mask + 3.0 * regions
    l1 = ((prediction - target).abs() * weight).mean()
    structural = (dssim(prediction, target, window) * weight).mean()
    loss = l1 + 2.0 * structural
    if mask_loss:
        loss = loss + 0.5 * F.binary_cross_entropy_with_logits(mask_logit, target_mask)
    return loss


def learning_rate(options: TrainOptions, progress: float) -> float:
    """Constant, then a cosine decay over the last 40% of the budget."""
    if progress < 0.6:
        return options.learning_rate
    phase = (progress - 0.6) / 0.4
    return options.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(phase, 1.0))))


def save_checkpoint(path: Path, model: FaceAutoencoder, optimizer: torch.optim.Optimizer,
                    history: History, options: TrainOptions) -> None:
    """Everything needed to resume."""
    partial = path.with_suffix(".part")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "history": asdict(history), "preset": options.preset,
                "identities": list(options.identities)}, partial)
    partial.replace(path)


def train(options: TrainOptions) -> tuple[FaceAutoencoder, History]:
    """Run the training loop until the step or time budget; write weights and checkpoint."""
    if options.minutes is None and options.steps is None:
        raise TrainError("give --minutes or --steps")
    if options.preset not in PRESETS:
        raise TrainError(f"preset must be one of {sorted(PRESETS)}")
    if options.threads:
        torch.set_num_threads(options.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    faces = {name: load_faces(options.dataset, name) for name in options.identities}
    preset = PRESETS[options.preset]
    for name, data in faces.items():
        if data.images.shape[-1] != preset.face_size:
            raise TrainError(f"{name} faces are {data.images.shape[-1]}px; preset "
                             f"{preset.name} needs {preset.face_size}: extract with --face-size")
    model = FaceAutoencoder(preset, options.identities).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=options.learning_rate, betas=(0.5, 0.999))
    history = History()
    options.output.mkdir(parents=True, exist_ok=True)
    checkpoint = options.output / CHECKPOINT
    if options.resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = History(**state["history"])
    window = gaussian_window().to(device)
    started = time.monotonic() - history.minutes * 60
    bar = tqdm(total=options.steps, initial=history.steps, unit="step", desc="train")
    model.train()
    while True:
        elapsed = (time.monotonic() - started) / 60
        progress = max(history.steps / options.steps if options.steps else 0.0,
                       elapsed / options.minutes if options.minutes else 0.0)
        if progress >= 1.0:
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(options, progress)
        loss = torch.zeros((), device=device)
        for name, data in faces.items():
            picks = torch.randint(0, data.images.shape[0], (options.batch_size,),
                                  generator=generator)
            warped, target, target_mask, regions = (t.to(device) for t in
                                                    augment(data, picks, generator))
            prediction, mask_logit = model(warped, name)
            loss = loss + reconstruction_loss(prediction, mask_logit, target, target_mask,
                                              regions, window, options.mask_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.steps += 1
        history.minutes = (time.monotonic() - started) / 60
        history.losses.append(float(loss.item()))
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(history.losses[-50:]):.4f}",
                        minutes=f"{history.minutes:.1f}")
        if history.steps % options.checkpoint_every == 0:
            save_checkpoint(checkpoint, model, optimizer, history, options)
    bar.close()
    model.eval()
    save_checkpoint(checkpoint, model, optimizer, history, options)
    model.cpu().save(options.output / WEIGHTS, {"steps": str(history.steps),
                                                "minutes": f"{history.minutes:.1f}"})
    write_history(options.output / HISTORY, history)
    return model, history


def write_history(path: Path, history: History, points: int = 2000) -> None:
    """Steps, minutes and the loss curve (thinned to at most `points` values) as JSON."""
    stride = max(1, math.ceil(len(history.losses) / points))
    losses = [float(np.mean(history.losses[i:i + stride]))
              for i in range(0, len(history.losses), stride)]
    path.write_text(json.dumps({"steps": history.steps, "minutes": round(history.minutes, 2),
                                "loss_stride": stride, "losses": losses}) + "\n")
