"""In-domain and out-of-domain figures of a served detector, per source, side by side.

In domain: the held-out test segment of each video (and the unseen video), real faces against
our swaps of the same frames, scored on the dataset's crops. Out of domain: the still photos of
training/forensics_ood.py, real against the same photos swapped by our faceswap graphs, scored by
the served `forensics` graph itself (networks/fake_score.py FakeScorer on the whole photo and its
landmarks). Per source: AUC real vs our swaps, FPR at the served threshold (a real face scoring
above it), the share of real faces called "uncertain" and "likely real", and the share of swaps
flagged. Scores are the served ones: calibrated, and clamped into the uncertain band outside the
domain; `auc_unguarded` is the AUC before that clamp.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

from swaptron.networks.crops import forensic_crops
from swaptron.networks.fake_score import BAND_MARGIN, FakeScorer, ScoreServing
from swaptron.training.forensics_data import FaceRecord
from swaptron.training.forensics_metrics import auc
from swaptron.training.forensics_ood import StillSet, photo_of
from swaptron.training.forensics_serving import calibrated, crop_facts
from swaptron.verdicts import DomainRules, verdict_shares

OOD_TARGETS = {"ood_fpr_real": ("<=", 0.05), "ood_uncertain_real": ("<=", 0.25),
               "ood_auc_vs_our_swaps": (">=", 0.90), "ood_tpr_our_swaps": (">=", 0.70),
               "auc_vs_our_swaps": (">=", 0.99)}


@torch.no_grad()
def logits_of(model: torch.nn.Module, size: int, images: list[np.ndarray],
              batch_size: int = 32) -> np.ndarray:
    """The detector's logit for each face crop (uint8 BGR), resized as the card scores them."""
    out = []
    for start in range(0, len(images), batch_size):
        resized = [cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
                   for image in images[start:start + batch_size]]
        faces = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float() / 255.0
        out.append(model(faces).numpy().astype(np.float64))
    return np.concatenate(out) if out else np.zeros(0)


def guarded(scores: np.ndarray, inside: np.ndarray, serving: ScoreServing) -> np.ndarray:
    """The graph's clamp, in NumPy: outside the domain a score stays in the uncertain band."""
    top = max(serving.real_below, serving.threshold - BAND_MARGIN)
    return np.where(inside, scores, np.clip(scores, serving.real_below, top))


def source_row(real: np.ndarray, swaps: np.ndarray, real_inside: np.ndarray,
               swaps_inside: np.ndarray, serving: ScoreServing,
               unguarded: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, object]:
    """One source's figures (served scores in, unguarded ones for `auc_unguarded`)."""
    shares = verdict_shares(real.tolist(), serving.real_below, serving.threshold,
                            real_inside.tolist())
    swap_shares = verdict_shares(swaps.tolist(), serving.real_below, serving.threshold,
                                 swaps_inside.tolist())
    row: dict[str, object] = {
        "real_faces": len(real), "swapped_faces": len(swaps),
        "auc_vs_our_swaps": round(auc(real, swaps), 4),
        "fpr_real": round(float((real > serving.threshold).mean()), 4) if len(real) else None,
        "uncertain_real": round(shares["uncertain"], 4),
        "likely_real_real": round(shares["likely real"], 4),
        "tpr_our_swaps": round(float((swaps > serving.threshold).mean()), 4) if len(
            swaps) else None,
        "uncertain_swaps": round(swap_shares["uncertain"], 4),
        "outside_domain_real": round(float(1.0 - real_inside.mean()), 4) if len(real) else None,
    }
    if unguarded is not None:
        row["auc_unguarded"] = round(auc(*unguarded), 4)
    return row


def in_domain_rows(model: torch.nn.Module, size: int, serving: ScoreServing,
                   sets: dict[str, dict[str, tuple[list[np.ndarray], list[FaceRecord]]]]
                   ) -> dict[str, dict[str, object]]:
    """Per video (test segment; the unseen video whole) and all together. Faces of the videos
    are at least 126 px wide, so the width rule holds; sharpness and luma are measured."""
    pools: dict[str, dict[str, list[np.ndarray]]] = {}
    for split in ("test", "unseen"):
        for kind in ("real", "swaps"):
            images, records = sets[split][kind]
            for image, record in zip(images, records, strict=True):
                pools.setdefault(record.source, {"real": [], "swaps": []})[kind].append(image)
    rows = {}
    everything: dict[str, list[np.ndarray]] = {"real": [], "swaps": []}
    for source, pool in [*pools.items(), ("all", everything)]:
        scored = {kind: served_crops(model, size, serving, images)
                  for kind, images in pool.items()}
        if source != "all":
            everything["real"] += pool["real"]
            everything["swaps"] += pool["swaps"]
        (real, real_in, real_raw), (swaps, swaps_in, swaps_raw) = scored["real"], scored["swaps"]
        rows[source] = source_row(real, swaps, real_in, swaps_in, serving, (real_raw, swaps_raw))
    return rows


def served_crops(model: torch.nn.Module, size: int, serving: ScoreServing,
                 images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Served scores, domain flags and unguarded scores of dataset crops."""
    raw = calibrated(logits_of(model, size, images), serving.scale, serving.bias)
    sharpness, luma = crop_facts(images, size)
    rules = serving.rules
    inside = ((sharpness >= rules.min_sharpness) & (luma >= rules.min_luma)
              & (luma <= rules.max_luma))
    return guarded(raw, inside, serving), inside, raw


@torch.no_grad()
def still_scores(scorer: FakeScorer, folder: Path, still_set: StillSet
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per face of the still set, in its order: served score, domain flag, unguarded score."""
    serving = scorer.serving or ScoreServing()
    unguarded_scorer = FakeScorer(scorer.detector, scorer.input_size, scorer.graph,
                                  replace(serving, rules=DomainRules())).eval()
    by_photo: dict[str, list[int]] = {}
    for index, face in enumerate(still_set.faces):
        by_photo.setdefault(face.photo, []).append(index)
    served, inside, raw = (np.zeros(len(still_set.faces)) for _ in range(3))
    for members in by_photo.values():
        frame = torch.from_numpy(photo_of(folder, still_set.faces[members[0]])[None])
        landmarks = torch.tensor([[still_set.faces[i].landmarks for i in members]],
                                 dtype=torch.float32)
        presence = torch.ones(1, len(members))
        served[members] = scorer(frame, landmarks, presence)[0].numpy()
        raw[members] = unguarded_scorer(frame, landmarks, presence)[0].numpy()
        crops = crops_of(scorer, frame, landmarks)
        inside[members] = scorer.inside(crops, landmarks)[0].numpy()
    return served, inside.astype(bool), raw


def crops_of(scorer: FakeScorer, frame: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """The graph's crops of a photo's faces."""
    crops, _ = forensic_crops(frame, landmarks, scorer.template, scorer.input_size, scorer.graph)
    return crops


def out_of_domain_rows(scorer: FakeScorer, folder: Path, still_set: StillSet
                       ) -> dict[str, dict[str, object]]:
    """Per still-photo source and all together."""
    if scorer.serving is None:
        raise ValueError("the out-of-domain figures need a scorer with its ScoreServing")
    served, inside, raw = still_scores(scorer, folder, still_set)
    labels = np.array([face.label for face in still_set.faces])
    sources = np.array([face.source for face in still_set.faces])
    rows = {}
    for source in [*still_set.photos, "all"]:
        pick = np.ones(len(labels), bool) if source == "all" else sources == source
        real, fake = pick & (labels == 0), pick & (labels == 1)
        rows[source] = source_row(served[real], served[fake], inside[real], inside[fake],
                                  scorer.serving, (raw[real], raw[fake]))
    return rows


def ood_targets(entry: dict[str, object]) -> dict[str, bool | None]:
    """The issue's targets: out of domain (all stills) and in domain."""
    ood = entry.get("out_of_domain", {}).get("all", {})  # type: ignore[union-attr]
    values = {"ood_fpr_real": ood.get("fpr_real"), "ood_uncertain_real": ood.get(
        "uncertain_real"), "ood_auc_vs_our_swaps": ood.get("auc_vs_our_swaps"),
        "ood_tpr_our_swaps": ood.get("tpr_our_swaps"),
        "auc_vs_our_swaps": entry.get("auc_vs_our_swaps")}
    met: dict[str, bool | None] = {}
    for key, (side, bar) in OOD_TARGETS.items():
        value = values[key]
        if not isinstance(value, int | float) or value != value:
            met[key] = None
        else:
            met[key] = value >= bar if side == ">=" else value <= bar
    return met
