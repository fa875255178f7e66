"""A lever study for issue 26: detector files compared on one dataset, the pick made on the video
validation split alone.

    .venv/bin/python -m swaptron.training.detector_study --detector A.pt --detector B.pt \
        [--dataset build/forensics/dataset] [--ood build/forensics/ood]

For each file, the served rule's figures (cue_channels.served_row: the fusion and the cuts
refitted on the validation split, the in-domain test rows, the out-of-domain stills) and two
validation-only figures that stand in for photos: on PHOTO_DRAWS photo-augmented copies of the
validation faces (a seed apart from the fusion's), the share of real faces scored above the
served threshold (`photo_val_fpr`) and the AUC of real faces against our swaps
(`photo_val_auc`). The pick is the lowest photo_val_fpr, then the highest photo_val_auc; the
stills' rows are printed beside it and play no part in it. `--ensemble` adds one more
candidate: the mean logit of every file (networks/forensics.py MeanLogit), fused and cut like
the others; `--top-real N` adds each candidate's N highest-scoring real stills. Prints one JSON
line per candidate and one for the pick; nothing is served from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from swaptron.arguments import non_negative_int
from swaptron.networks.detail_cues import CueFusion
from swaptron.networks.fake_score import FakeScorer, ScoreServing
from swaptron.networks.forensics import MeanLogit
from swaptron.training.cue_channels import StudyInputs, load_detector, load_inputs, served_row
from swaptron.training.forensics_cli import forensics_dir
from swaptron.training.forensics_domains import logits_of, still_scores
from swaptron.training.forensics_metrics import auc
from swaptron.training.forensics_train import ForensicsTrainError
from swaptron.training.photo_augment import photo_augment

PHOTO_DRAWS = 4
PHOTO_SEED = 2026  # apart from forensics_report.FUSION_SEED


def photo_validation(inputs: StudyInputs, model: CueFusion, serving: ScoreServing
                     ) -> dict[str, float]:
    """photo_val_fpr and photo_val_auc (see the module's docstring)."""
    rng = np.random.default_rng(PHOTO_SEED)
    val = inputs.sets["val"]
    scores = {}
    for kind in ("real", "swaps"):
        augmented = [photo_augment(face, rng) for _ in range(PHOTO_DRAWS)
                     for face in val[kind][0]]
        with torch.no_grad():
            scores[kind] = 1.0 / (1.0 + np.exp(-logits_of(model, inputs.size, augmented)))
    return {"photo_val_fpr": round(float((scores["real"] > serving.threshold).mean()), 4),
            "photo_val_auc": round(auc(scores["real"], scores["swaps"]), 4)}


def detector_row(inputs: StudyInputs, name: str, network: torch.nn.Module, size: int,
                 top_real: int = 0) -> dict[str, object]:
    """One candidate's figures, measured on the shared domains (and its `top_real`
    highest-scoring real stills, when asked)."""
    own = dataclasses.replace(inputs, network=network, size=size)
    row, model, serving = served_row(own)
    found = {"detector": name, **photo_validation(own, model, serving), **row}
    if top_real > 0:
        found["top_real_stills"] = highest_real_stills(
            own, FakeScorer(model, size, serving=serving).eval(), top_real)
    return found


def highest_real_stills(inputs: StudyInputs, scorer: FakeScorer, count: int
                        ) -> list[tuple[str, float]]:
    """The `count` real still faces the served graph scores highest: (photo, served score)."""
    served, _, _ = still_scores(scorer, inputs.ood, inputs.stills)
    real = [(face.photo, round(float(score), 3))
            for face, score in zip(inputs.stills.faces, served, strict=True) if face.label == 0]
    return sorted(real, key=lambda item: -item[1])[:count]


def pick(rows: list[dict[str, object]]) -> dict[str, object]:
    """The row with the lowest photo_val_fpr, then the highest photo_val_auc (the first file
    wins a tie)."""
    return min(rows, key=lambda row: (row["photo_val_fpr"], -float(row["photo_val_auc"])))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector", type=Path, action="append", required=True)
    parser.add_argument("--dataset", type=Path, default=forensics_dir() / "dataset")
    parser.add_argument("--ood", type=Path, default=forensics_dir() / "ood")
    parser.add_argument("--ensemble", action="store_true",
                        help="also the mean logit of every file, as one candidate")
    parser.add_argument("--top-real", type=non_negative_int, default=0, metavar="N",
                        help="also each candidate's N highest-scoring real stills (a diagnosis; "
                             "the pick does not use them)")
    args = parser.parse_args(argv)
    try:
        inputs = load_inputs(args.detector[0], args.dataset, args.ood)
        loaded = [(inputs.network, inputs.size),
                  *(load_detector(detector) for detector in args.detector[1:])]
        candidates = [(str(d), network, size)
                      for d, (network, size) in zip(args.detector, loaded, strict=True)]
        if args.ensemble:
            sizes = {size for _, size in loaded}
            if len(sizes) != 1:
                raise ForensicsTrainError(f"--ensemble needs one input size, got {sorted(sizes)}")
            candidates.append((f"mean of {len(loaded)}",
                               MeanLogit([network for network, _ in loaded]).eval(),
                               sizes.pop()))
        rows = []
        for name, network, size in candidates:
            rows.append(detector_row(inputs, name, network, size, args.top_real))
            print(json.dumps(rows[-1]), flush=True)
    except ForensicsTrainError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"pick": pick(rows)["detector"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
