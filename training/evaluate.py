"""Quality of a trained autoencoder on held-out faces, written as a training card.

Measured on the frames `swaptron extract` held out, through the real swap pipeline (detector,
landmarker and swapper modules with the trained weights):
- `recon_error`: mean absolute error (0..1) of each identity through its own decoder, in the mask;
- `swap_rate`: share of swapped faces a small A-versus-B classifier labels as the target;
- `pose_error_deg`: head rotation between input and swapped face (from FaceMesh's 3D landmarks,
  found again on the swapped frame), mean over yaw, pitch and roll;
- `mouth_corr`: correlation of mouth opening between input and swapped faces;
- `seam_ratio`: mean gradient magnitude on the blend border, swapped over original.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from swaptron.networks.autoencoder import FaceAutoencoder
from swaptron.networks.face_template import (
    FACE_OVAL,
    LEFT_EYE_OUTER,
    LOWER_LIP_INNER,
    RIGHT_EYE_OUTER,
    RIGID_POINTS,
    UPPER_LIP_INNER,
)
from swaptron.networks.pipeline import Pipeline, PipelineOptions, build_pipeline
from swaptron.training.extract import read_source
from swaptron.training.train import CHECKPOINT, HISTORY, WEIGHTS, History, load_faces, write_history

TARGETS = {"swap_rate": (">=", 0.90), "pose_error_deg": ("<=", 5.0), "mouth_corr": (">=", 0.80),
           "seam_ratio": ("<=", 1.5)}


class EvaluateError(ValueError):
    """Missing weights or dataset; the message says which."""


@dataclass
class SwappedFrame:
    """One held-out frame before and after the swap."""

    original: np.ndarray
    swapped: np.ndarray
    landmarks_in: np.ndarray  # [468,2]
    landmarks_out: np.ndarray | None  # found again on the swapped frame
    mesh_in: np.ndarray  # [468,3]
    mesh_out: np.ndarray | None


class IdentityClassifier(nn.Module):
    """Tiny CNN telling identity A from B on masked, colour-normalised aligned faces.

    It sees grey levels standardised inside the face mask, so it judges facial features, not
    the lighting or skin tone that the swapper's colour transfer deliberately keeps.
    """

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 2))

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """Logits [N,2] (class 0 = A, 1 = B)."""
        return self.body(faces)


def train_classifier(faces_a: torch.Tensor, faces_b: torch.Tensor, steps: int = 300
                     ) -> IdentityClassifier:
    """Fit the classifier on training faces of both identities (flips and small shifts)."""
    torch.manual_seed(0)
    model = IdentityClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    images = torch.cat([faces_a, faces_b])
    labels = torch.cat([torch.zeros(len(faces_a)), torch.ones(len(faces_b))]).long()
    for _ in range(steps):
        picks = torch.randint(0, len(images), (32,))
        batch = images[picks]
        flip = torch.rand(32) < 0.5
        batch[flip] = batch[flip].flip(-1)
        shift = [int(v) for v in torch.randint(-3, 4, (2,))]
        batch = torch.roll(batch, shifts=shift, dims=(2, 3))
        loss = F.cross_entropy(model(batch), labels[picks])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def masked(faces: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Grey faces standardised inside the mask, zero outside: [N,1,S,S]."""
    grey = (faces * torch.tensor([0.114, 0.587, 0.299]).reshape(1, 3, 1, 1)).sum(1, keepdim=True)
    weight = masks.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
    mean = (grey * masks).sum(dim=(2, 3), keepdim=True) / weight
    std = torch.sqrt((((grey - mean) ** 2) * masks).sum(dim=(2, 3), keepdim=True) / weight + 1e-6)
    return (grey - mean) / std * masks


def holdout_frames(dataset: Path, identity: str) -> list[tuple[str, int]]:
    """(source, frame index) of an identity's held-out faces; an identity may come from
    several videos."""
    meta = json.loads((dataset / identity / "meta.json").read_text())
    return [(r["source"], r["frame"]) for r in meta["faces"] if r["split"] == "holdout"]


def read_holdout(dataset: Path, identity: str) -> list[np.ndarray]:
    """The frames of an identity's held-out faces, each video read once."""
    wanted = holdout_frames(dataset, identity)
    by_source: dict[str, list[int]] = {}
    for source, frame in wanted:
        by_source.setdefault(source, []).append(frame)
    frames = {}
    for source, indices in by_source.items():
        if not Path(source).exists():
            raise EvaluateError(f"{source}, a source of identity {identity}, is gone: the card "
                                "needs the held-out frames")
        video = read_source(Path(source))
        for index in indices:
            frames[(source, index)] = video[index]
    return [frames[key] for key in wanted]


@torch.no_grad()
def swap_frames(pipeline: Pipeline, frames: list[np.ndarray]) -> list[SwappedFrame]:
    """Swap each frame and find the face again on the result."""
    results = []
    for frame in frames:
        tensor = torch.from_numpy(frame)[None]
        faces, keypoints = pipeline.detector(tensor)
        landmarks, presence = pipeline.landmarker(tensor, faces, keypoints)
        mesh = pipeline.landmarker.mesh_3d(tensor, faces, keypoints)
        swapped = pipeline.swapper(tensor, landmarks, presence)
        faces_out, keypoints_out = pipeline.detector(swapped)
        found = bool(faces_out[0, 0, 4] > 0)
        landmarks_out, _ = pipeline.landmarker(swapped, faces_out, keypoints_out)
        mesh_out = pipeline.landmarker.mesh_3d(swapped, faces_out, keypoints_out)
        results.append(SwappedFrame(frame, swapped[0].numpy(), landmarks[0, 0].numpy(),
                                    landmarks_out[0, 0].numpy() if found else None,
                                    mesh[0, 0].numpy(), mesh_out[0, 0].numpy() if found else None))
    return results


def rotation_between(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares rotation (Kabsch) taking centred, scale-normalised source to target."""
    a = source - source.mean(axis=0)
    b = target - target.mean(axis=0)
    a /= np.linalg.norm(a)
    b /= np.linalg.norm(b)
    u, _, vt = np.linalg.svd(a.T @ b)
    sign = np.sign(np.linalg.det(vt.T @ u.T))
    return vt.T @ np.diag([1.0, 1.0, sign]) @ u.T


def euler_degrees(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation matrix (image axes: x right, y down)."""
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, -rotation[2, 0]))))
    pitch = math.degrees(math.atan2(rotation[2, 1], rotation[2, 2]))
    roll = math.degrees(math.atan2(rotation[1, 0], rotation[0, 0]))
    return yaw, pitch, roll


def mouth_opening(landmarks: np.ndarray) -> float:
    """Inner-lip gap over the outer eye-corner distance."""
    gap = np.linalg.norm(landmarks[UPPER_LIP_INNER] - landmarks[LOWER_LIP_INNER])
    eyes = np.linalg.norm(landmarks[LEFT_EYE_OUTER] - landmarks[RIGHT_EYE_OUTER])
    return float(gap / max(eyes, 1e-6))


def seam_ratio(item: SwappedFrame) -> float:
    """Mean gradient magnitude on a band along the face outline, swapped over original."""
    outline = item.landmarks_in[list(FACE_OVAL)].astype(np.int32)
    width = max(3, int(0.08 * np.ptp(outline[:, 0])))
    band = np.zeros(item.original.shape[:2], np.uint8)
    cv2.polylines(band, [outline], isClosed=True, color=255, thickness=width)

    def gradient(image: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
        return np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))

    inside = band > 0
    original = gradient(item.original)[inside].mean()
    return float(gradient(item.swapped)[inside].mean() / max(original, 1e-6))


def recon_errors(pipeline_weights: Path, dataset: Path, identities: list[str]
                 ) -> dict[str, float]:
    """Masked mean absolute error of held-out faces through their own decoder."""

    model = FaceAutoencoder.load(pipeline_weights).eval()
    errors = {}
    with torch.no_grad():
        for name in identities:
            faces = load_faces(dataset, name, "holdout")
            prediction, _ = model(faces.images, name)
            weight = faces.masks.sum() * 3
            errors[name] = float(((prediction - faces.images).abs() * faces.masks).sum() / weight)
    return errors


def aligned_swaps(items: list[SwappedFrame], pipeline: Pipeline) -> torch.Tensor:
    """Masked aligned crops of the swapped faces, aligned on the input landmarks."""
    from swaptron.networks.swapper import align_faces

    swapper = pipeline.swapper
    crops = []
    with torch.no_grad():
        for item in items:
            landmarks = torch.from_numpy(item.landmarks_in)[None, None]
            swapped = torch.from_numpy(item.swapped)[None]
            _, crop, mask = align_faces(swapped, landmarks, swapper.template, swapper.face_size,
                                        swapper.options.feather, swapper.options.erode)
            crops.append(masked(crop, mask))
    return torch.cat(crops)


def evaluate(dataset: Path, weights: Path, identities: tuple[str, ...] = ("a", "b")
             ) -> dict[str, object]:
    """Every metric of the card (numbers rounded for reading). Each identity's held-out faces
    are swapped into the other one ("a2b": a's faces become b)."""
    if not weights.is_file():
        raise EvaluateError(f"{weights} is missing: run `swaptron train` first")
    if len(identities) != 2:
        raise EvaluateError(f"the card compares two identities, got {list(identities)}")
    train_faces = {n: load_faces(dataset, n, "train") for n in identities}
    holdout_faces = {n: load_faces(dataset, n, "holdout") for n in identities}
    classifier = train_classifier(*(masked(f.images, f.masks) for f in train_faces.values()))
    with torch.no_grad():
        real = torch.cat([classifier(masked(f.images, f.masks)).argmax(1) == label
                          for label, f in enumerate(holdout_faces.values())])
    swap_rates, pose_errors, openings, seams = {}, [], [], []
    opening_directions: list[str] = []
    for source_label, name in enumerate(identities):
        target = identities[1 - source_label]
        direction = f"{name}2{target}"
        pipeline = build_pipeline(PipelineOptions(weights=weights, identity=target))
        items = swap_frames(pipeline, read_holdout(dataset, name))
        with torch.no_grad():
            labels = classifier(aligned_swaps(items, pipeline)).argmax(1)
        swap_rates[direction] = float((labels == 1 - source_label).float().mean())
        for item in items:
            seams.append(seam_ratio(item))
            if item.mesh_out is None or item.landmarks_out is None:
                continue
            rigid = list(RIGID_POINTS)
            pose_errors.append(np.abs(euler_degrees(
                rotation_between(item.mesh_in[rigid], item.mesh_out[rigid]))))
            openings.append((mouth_opening(item.landmarks_in), mouth_opening(item.landmarks_out)))
            opening_directions.append(direction)
    pose = np.mean(pose_errors, axis=0) if pose_errors else np.full(3, np.nan)
    opening = np.array(openings)
    recon = recon_errors(weights, dataset, list(identities))
    return {
        "recon_error": round(float(np.mean(list(recon.values()))), 4),
        "recon_error_by_identity": {k: round(v, 4) for k, v in recon.items()},
        "swap_rate": round(float(np.mean(list(swap_rates.values()))), 3),
        "swap_rate_by_direction": {k: round(v, 3) for k, v in swap_rates.items()},
        "classifier_holdout_accuracy": round(float(real.float().mean()), 3),
        "pose_error_deg": round(float(pose.mean()), 2),
        "pose_error_by_axis_deg": dict(zip(("yaw", "pitch", "roll"),
                                           (round(float(v), 2) for v in pose), strict=True)),
        "mouth_corr": correlation(opening),
        "mouth_corr_by_direction": {d: correlation(opening[np.array(opening_directions) == d])
                                    for d in swap_rates},
        "seam_ratio": round(float(np.mean(seams)), 3),
        "holdout_frames": int(sum(len(holdout_frames(dataset, n)) for n in identities)),
        "faces_found_again": len(pose_errors),
    }


def correlation(pairs: np.ndarray) -> float:
    """Pearson correlation of the two columns, rounded; NaN with fewer than 3 pairs."""
    if len(pairs) < 3:
        return float("nan")
    return round(float(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]), 3)


def meets(card: dict[str, object]) -> dict[str, bool]:
    """Which quality bars the card meets."""
    result = {}
    for key, (sense, bar) in TARGETS.items():
        value = float(card[key])  # type: ignore[arg-type]
        result[key] = value >= bar if sense == ">=" else value <= bar
    return result


def write_card(dataset: Path, output: Path) -> dict[str, object]:
    """Evaluate the weights in `output` (their two identities, in name order) and write
    card.json, TRAINING.md and loss.png there."""
    weights = output / WEIGHTS
    if not weights.is_file():
        raise EvaluateError(f"{weights} is missing: run `swaptron train` first")
    card = evaluate(dataset, weights, tuple(FaceAutoencoder.load(weights).decoders))
    history = load_history(output)
    card["steps"] = history.get("steps", 0)
    card["minutes"] = history.get("minutes", 0.0)
    card["targets"] = {k: f"{sense} {bar}" for k, (sense, bar) in TARGETS.items()}
    card["meets_targets"] = meets(card)
    (output / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    plot_loss(history.get("losses", []), int(history.get("loss_stride", 1)),  # type: ignore[call-overload]
              output / "loss.png")
    (output / "TRAINING.md").write_text(training_markdown(card, dataset))
    return card


def load_history(output: Path) -> dict[str, object]:
    """The training history beside the weights (from the checkpoint when only it is there)."""
    path = output / HISTORY
    if not path.is_file() and (output / CHECKPOINT).is_file():
        state = torch.load(output / CHECKPOINT, map_location="cpu", weights_only=False)
        write_history(path, History(**state["history"]))
    return json.loads(path.read_text()) if path.is_file() else {}


def plot_loss(losses: list[float], stride: int, path: Path) -> None:
    """Loss curve (raw and smoothed) as PNG; each value is the mean of `stride` steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.5), dpi=100)
    if losses:
        values = np.array(losses)
        window = max(1, len(values) // 100)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        steps = np.arange(len(values)) * stride
        axis.plot(steps, values, color="#bbbbbb", linewidth=0.5, label="loss")
        axis.plot(steps[window // 2:window // 2 + len(smooth)], smooth, color="#1f77b4",
                  label=f"mean of {window}")
        axis.set_yscale("log")
        axis.legend()
    axis.set_xlabel("step")
    axis.set_ylabel("weighted L1 + 2 DSSIM + mask BCE")
    axis.set_title("swap autoencoder training loss")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def identity_lines(dataset: Path, card: dict[str, object]) -> list[str]:
    """One line per identity: its sources and the frames its faces came from."""
    lines = []
    for name in card["recon_error_by_identity"]:  # type: ignore[attr-defined]
        faces = json.loads((dataset / name / "meta.json").read_text())["faces"]
        by_source: dict[str, list[int]] = {}
        for face in faces:
            by_source.setdefault(face["source"], []).append(face["frame"])
        parts = [f"`{Path(source).name}` frames {frame_ranges(sorted(frames))}"
                 for source, frames in by_source.items()]
        lines.append(f"- identity `{name}`: {len(faces)} faces from {'; '.join(parts)}")
    return lines


def frame_ranges(frames: list[int]) -> str:
    """[0, 1, 2, 5, 6] -> '0-2, 5-6'."""
    ranges: list[list[int]] = []
    for frame in frames:
        if ranges and frame == ranges[-1][1] + 1:
            ranges[-1][1] = frame
        else:
            ranges.append([frame, frame])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges)


def training_markdown(card: dict[str, object], dataset: Path) -> str:
    """Readable training card."""
    rows = []
    for key, (sense, bar) in TARGETS.items():
        verdict = "meets" if card["meets_targets"][key] else "misses"  # type: ignore[index]
        rows.append(f"| `{key}` | {card[key]} | {sense} {bar} | {verdict} |")
    return "\n".join([
        f"# Training card: {dataset.name}",
        "",
        *identity_lines(dataset, card),
        "",
        "Every fifth extracted face of each identity is held out; every number below is "
        "measured on those held-out frames through the real swap pipeline.",
        "",
        f"- steps: {card['steps']}, training minutes: {float(card['minutes']):.1f} (CPU)",
        f"- held-out frames: {card['holdout_frames']}, faces found again after the swap: "
        f"{card['faces_found_again']}",
        f"- reconstruction error (mean |error|, 0..1, inside the mask): "
        f"{card['recon_error_by_identity']}",
        f"- swap rate by direction: {card['swap_rate_by_direction']} (classifier accuracy on "
        f"real held-out faces: {card['classifier_holdout_accuracy']})",
        f"- pose error by axis (degrees): {card['pose_error_by_axis_deg']}",
        f"- mouth opening correlation by direction: {card['mouth_corr_by_direction']}",
        "",
        "| metric | value | target | |",
        "|---|---|---|---|",
        *rows,
        "",
        "![loss](loss.png)",
        "",
        f"Reproduce: `swaptron extract --pair {dataset.name} && swaptron train --pair "
        f"{dataset.name} --minutes {round(float(card['minutes']))} --threads 2` (dataset "
        f"`build/datasets/{dataset.name}`), then `swaptron evaluate --pair {dataset.name}`.",
        "",
    ])
