"""A lever study for issue 26: the detail cues measured on luma (served) or on a chroma channel.

    .venv/bin/python -m swaptron.training.cue_channels [--detector weights/forensics/meso4.pt]

The provenance mark is a luma-only shift, so chroma cues are blind to it. For each channel the
fusion and the cuts are refitted on the video validation split (training/forensics_report.py
serving_for), then the in-domain test rows and the out-of-domain stills are scored, all in one
run from one detector file. Needs `swaptron forensics prepare` and `swaptron forensics ood`.
Prints one JSON line per channel; nothing is served from it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from swaptron import assets
from swaptron.networks.detail_cues import GREY_WEIGHTS, CueFusion
from swaptron.networks.fake_score import FakeScorer, ScoreServing
from swaptron.training.forensics_card import evaluation_sets
from swaptron.training.forensics_cli import forensics_dir
from swaptron.training.forensics_data import load_dataset
from swaptron.training.forensics_domains import in_domain_rows, out_of_domain_rows
from swaptron.training.forensics_ood import StillSet, load_ood
from swaptron.training.forensics_report import serving_for
from swaptron.training.forensics_train import ForensicsTrainError, load_trained

CHANNELS: dict[str, tuple[float, float, float]] = {  # (B, G, R) weights
    "luma": GREY_WEIGHTS,
    "red_minus_luma": (-0.114, -0.587, 0.701),
    "blue_minus_luma": (0.886, -0.587, -0.299),
}
KEYS = ("auc_vs_our_swaps", "fpr_real", "uncertain_real", "tpr_our_swaps")


@dataclass(frozen=True)
class StudyInputs:
    """What every channel is measured on, loaded once: the detector and both domains."""

    network: torch.nn.Module
    size: int
    sets: dict[str, dict]
    ood: Path
    stills: StillSet


def load_inputs(detector: Path, dataset: Path, ood: Path) -> StudyInputs:
    """The detector file, the video splits and the still set; ForensicsTrainError names a
    missing one."""
    for folder, command in ((dataset, "prepare"), (ood, "ood")):
        if not (folder / "meta.json").is_file():
            raise ForensicsTrainError(f"no {folder / 'meta.json'}: run `swaptron forensics "
                                      f"{command}` first")
    network, size = load_detector(detector)
    faces = load_dataset(dataset)
    sets = {split: evaluation_sets(dataset, faces, split) for split in ("val", "test", "unseen")}
    return StudyInputs(network, size, sets, ood, load_ood(ood))


def load_detector(detector: Path) -> tuple[torch.nn.Module, int]:
    """A detector file's network and input size; ForensicsTrainError names a bad file."""
    network, meta = load_trained(detector)
    return network, int(meta["input_size"])


def channel_row(inputs: StudyInputs, weights: tuple[float, float, float]) -> dict[str, object]:
    """The served rule's figures with cues on one channel: threshold, in domain (all videos)
    and out of domain (all stills)."""
    return served_row(inputs, weights)[0]


def served_row(inputs: StudyInputs, weights: tuple[float, float, float] = GREY_WEIGHTS
               ) -> tuple[dict[str, object], CueFusion, ScoreServing]:
    """channel_row's figures, with the fused detector and the serving they were measured
    with."""
    network, size, sets = inputs.network, inputs.size, inputs.sets
    serving, validation, fusion = serving_for(network, size, sets, weights)
    model = CueFusion(network, size, fusion, weights).eval()
    scorer = FakeScorer(model, size, serving=serving).eval()
    inside = in_domain_rows(model, size, serving, sets)["all"]
    outside = out_of_domain_rows(scorer, inputs.ood, inputs.stills)["all"]
    return ({"threshold": serving.threshold, **validation,
             "in_domain": {key: inside.get(key) for key in KEYS},
             "out_of_domain": {key: outside.get(key) for key in KEYS}}, model, serving)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", type=Path, default=assets.forensics_weights("meso4"))
    parser.add_argument("--dataset", type=Path, default=forensics_dir() / "dataset")
    parser.add_argument("--ood", type=Path, default=forensics_dir() / "ood")
    parser.add_argument("--channel", choices=CHANNELS, action="append", default=None)
    args = parser.parse_args(argv)
    try:
        inputs = load_inputs(args.detector, args.dataset, args.ood)
    except ForensicsTrainError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name in args.channel or list(CHANNELS):
        print(json.dumps({"channel": name, **channel_row(inputs, CHANNELS[name])}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
