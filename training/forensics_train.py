"""`swaptron forensics train`: the forgery detectors on the prepared faces.

Every batch is half real faces and half fakes. A fake is, with the `swaps` recipe, one of our own
swaps or a self-blended image made on the spot from a real training face (half each); with the
`sbi-only` recipe always a self-blended image, so that our swaps stay an unseen generator. Real
and fake alike get a random flip, a small random crop and JPEG compression at quality 40-100.
The `photo` and `photo-sbi` recipes are `swaps` and `sbi-only` with photo-like degradations
instead of the JPEG step (training/photo_augment.py: rescale, blur, sharpening, noise, colour,
gamma, grey, JPEG 30-95), so that face size, sharpness and camera tell nothing.
The loss is binary cross-entropy (weighted by class frequency, as DLDFD does). Runs are bounded
by minutes or steps, checkpoint on the way and resume.
"""

from __future__ import annotations

import json
import math
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from tqdm import tqdm

from swaptron import assets
from swaptron.networks.fake_score import load_detector, load_network
from swaptron.networks.forensics import DEFAULT_INPUT_SIZE, DETECTOR_NAMES, build_detector
from swaptron.training.forensics_data import Dataset, load_dataset
from swaptron.training.photo_augment import photo_augment
from swaptron.training.self_blend import jpeg, self_blend

RECIPES = ("swaps", "sbi-only", "photo", "photo-sbi")
WITH_SWAPS = ("swaps", "photo")  # recipes whose fakes include our swaps
PHOTO = ("photo", "photo-sbi")  # recipes with photo-like degradations
LEARNING_RATES = {"meso4": 1e-3, "dldfd": 1e-3, "sbi": 3e-4}  # Adam; the papers' 1e-3
CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"


class ForensicsTrainError(ValueError):
    """Bad options or dataset; the message says which."""


@dataclass(frozen=True)
class ForensicsTrainOptions:
    """One model, one recipe, and the budget."""

    dataset: Path
    output: Path  # the run's folder: weights, checkpoint, history
    model: str = "sbi"
    recipe: str = "swaps"
    input_size: int | None = None
    batch_size: int = 16
    minutes: float | None = None
    steps: int | None = None
    resume: bool = False
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 200


@dataclass
class RunHistory:
    """What a run has done (kept in its checkpoint)."""

    steps: int = 0
    minutes: float = 0.0
    losses: list[float] = field(default_factory=list)


@dataclass
class Pools:
    """The training faces in memory: real ones (with landmarks) and our swaps."""

    real: list[np.ndarray]
    real_landmarks: list[np.ndarray]
    swaps: list[np.ndarray]


def load_pools(folder: Path, dataset: Dataset, split: str = "train") -> Pools:
    """Read a split's crops."""
    real, landmarks, swaps = [], [], []
    for face in tqdm(dataset.faces, desc=f"loading {split} faces", unit="face"):
        if face.split != split:
            continue
        image = cv2.imread(str(folder / "faces" / face.file))
        if image is None:
            raise ForensicsTrainError(f"cannot read {folder / 'faces' / face.file}")
        if face.label == 0:
            real.append(image)
            landmarks.append(np.asarray(face.landmarks, np.float32))
        else:
            swaps.append(image)
    if not real:
        raise ForensicsTrainError(f"{folder} has no real {split} face: prepare it again")
    return Pools(real, landmarks, swaps)


def augment(image: np.ndarray, size: int, rng: np.random.Generator, photo: bool = False
            ) -> np.ndarray:
    """Flip, crop up to 6% away at random, resize to the model's input, JPEG (or, with
    `photo`, the photo-like degradations at crop size before the resize)."""
    if rng.random() < 0.5:
        image = image[:, ::-1]
    side = image.shape[0]
    keep = int(side * rng.uniform(0.94, 1.0))
    top, left = (int(v) for v in rng.integers(0, side - keep + 1, 2))
    crop = np.ascontiguousarray(image[top:top + keep, left:left + keep])
    if photo:
        return cv2.resize(photo_augment(crop, rng), (size, size), interpolation=cv2.INTER_AREA)
    return jpeg(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA), rng)


def batch(pools: Pools, recipe: str, size: int, count: int, rng: np.random.Generator
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """A balanced batch: faces [N,3,S,S] BGR in [0,1] and labels [N] (1 fake)."""
    images, labels = [], []
    for position in range(count):
        pick = int(rng.integers(len(pools.real)))
        if position % 2 == 0:
            image, label = pools.real[pick], 0.0
        elif recipe in WITH_SWAPS and pools.swaps and rng.random() < 0.5:
            image, label = pools.swaps[int(rng.integers(len(pools.swaps)))], 1.0
        else:
            image = self_blend(pools.real[pick], pools.real_landmarks[pick], rng).image
            label = 1.0
        images.append(augment(image, size, rng, recipe in PHOTO))
        labels.append(label)
    faces = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return faces, torch.tensor(labels)


def learning_rate(base: float, progress: float) -> float:
    """Cosine decay to 5% of the base rate over the run."""
    return base * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def build(options: ForensicsTrainOptions) -> tuple[torch.nn.Module, int]:
    """The model to train and its input size (sbi starts from the ImageNet weights)."""
    if options.model not in DETECTOR_NAMES:
        raise ForensicsTrainError(f"model must be one of {DETECTOR_NAMES}, got {options.model}")
    if options.recipe not in RECIPES:
        raise ForensicsTrainError(f"recipe must be one of {RECIPES}, got {options.recipe}")
    size = options.input_size or DEFAULT_INPUT_SIZE[options.model]
    pretrained = assets.efficientnet_weights() if options.model == "sbi" else None
    return build_detector(options.model, size, pretrained), size


def train_detector(options: ForensicsTrainOptions) -> RunHistory:
    """Train one model with one recipe; writes `<output>/detector.pt` and `history.json`."""
    if options.minutes is None and options.steps is None:
        raise ForensicsTrainError("give --minutes or --steps")
    torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    folder = options.dataset
    dataset = load_dataset(folder)
    pools = load_pools(folder, dataset)
    if options.recipe in WITH_SWAPS and not pools.swaps:
        raise ForensicsTrainError(f"{folder} holds no swap to train the `swaps` recipe on")
    model, size = build(options)
    base_rate = LEARNING_RATES[options.model]
    optimizer = torch.optim.Adam(model.parameters(), lr=base_rate)
    history = RunHistory()
    options.output.mkdir(parents=True, exist_ok=True)
    checkpoint = options.output / CHECKPOINT
    if options.resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = RunHistory(**state["history"])
        rng = np.random.default_rng(options.seed + history.steps)
    budget_s = None if options.minutes is None else options.minutes * 60.0
    started = time.monotonic() - history.minutes * 60.0
    model.train()
    with tqdm(desc=f"{options.model} ({options.recipe})", unit="step",
              initial=history.steps) as bar:
        while True:
            elapsed = time.monotonic() - started
            if budget_s is not None and elapsed >= budget_s:
                break
            if options.steps is not None and history.steps >= options.steps:
                break
            progress = (elapsed / budget_s if budget_s else history.steps / (options.steps or 1))
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(base_rate, progress)
            faces, labels = batch(pools, options.recipe, size, options.batch_size, rng)
            loss = F.binary_cross_entropy_with_logits(model(faces), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history.steps += 1
            history.minutes = (time.monotonic() - started) / 60.0
            history.losses.append(round(loss.item(), 4))
            bar.update(1)
            bar.set_postfix(loss=f"{history.losses[-1]:.3f}")
            if history.steps % options.checkpoint_every == 0:
                save(model, optimizer, history, options, size)
    save(model, optimizer, history, options, size)
    return history


def save(model: torch.nn.Module, optimizer: torch.optim.Optimizer, history: RunHistory,
         options: ForensicsTrainOptions, size: int) -> None:
    """The checkpoint (resumable) and the detector's weights and history (atomically)."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "history": asdict(history)}
    partial = options.output / (CHECKPOINT + ".part")
    torch.save(state, partial)
    partial.replace(options.output / CHECKPOINT)
    weights = {"model": options.model, "input_size": size, "recipe": options.recipe,
               "state_dict": model.state_dict()}
    partial = options.output / "detector.pt.part"
    torch.save(weights, partial)
    partial.replace(options.output / "detector.pt")
    (options.output / HISTORY).write_text(json.dumps(
        {"steps": history.steps, "minutes": round(history.minutes, 2),
         "losses": history.losses[-5000:]}))


def load_trained(path: Path, network_only: bool = False
                 ) -> tuple[torch.nn.Module, dict[str, object]]:
    """A trained detector (eval mode; without its detail cues when `network_only`) and its
    metadata, from `detector.pt`; ForensicsTrainError names a missing or unreadable file."""
    try:
        return load_network(path) if network_only else load_detector(path)
    except FileNotFoundError as error:
        raise ForensicsTrainError(str(error)) from error
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, KeyError) as error:
        raise ForensicsTrainError(f"{path} is not a detector file: "
                                  f"{error or type(error).__name__}") from error


def export_weights(run: Path, target: Path, serving: dict[str, object] | None = None,
                   fusion: dict[str, object] | None = None) -> None:
    """A run's detector as committed: the state dict in float16 (half the size), with the
    served calibration, bands and domain rules (networks/fake_score.ScoreServing) and the
    detail cues' fusion (networks/detail_cues.Fusion) when given."""
    saved = torch.load(run, map_location="cpu", weights_only=True)
    if serving is not None:
        saved["serving"] = serving
    if fusion is not None:
        saved["fusion"] = fusion
    saved["state_dict"] = {k: v.half() if v.is_floating_point() else v
                           for k, v in saved["state_dict"].items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    torch.save(saved, partial)
    partial.replace(target)
