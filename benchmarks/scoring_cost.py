"""The cost of scoring one face: the committed default detector's served `forensics` graph with
and without the detail cues (networks/detail_cues.py), and, when the detector is a mean of
training seeds (networks/forensics.py MeanLogit), with its first seed alone, side by side in one
run.

    nice -n 10 .venv/bin/python -m swaptron.benchmarks.scoring_cost [--rounds N] [--runs N]

Both graphs are built from the same committed detector file, exported to ONNX and run in ONNX
Runtime (1 thread) on the demo video's anchor frame (one face), alternating rounds (plain, fused,
[one_seed,] plain, fused, ...); each round times `runs` calls after a warm-up. Reports the median
ms per face of each and their ratios. Writes benchmarks/results/scoring_cost.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import onnxruntime as ort
import torch

from swaptron import assets
from swaptron.benchmarks.alternating import (
    INPUT_NAMES,
    alternate,
    anchor_inputs,
    exported_session,
)
from swaptron.benchmarks.alternating import medians as median_ms
from swaptron.networks.fake_score import (
    FakeScorer,
    ScoreServing,
    build_scorer,
    fused,
    load_network,
)
from swaptron.networks.forensics import MeanLogit
from swaptron.specs import FAKE_SCORE

RESULTS = Path(__file__).resolve().parent / "results"


def served_sessions(detector_file: Path, inputs: tuple[torch.Tensor, ...]
                    ) -> dict[str, ort.InferenceSession]:
    """The served graph with the detail cues (`fused`, as exported) and without (`plain`: the
    same network, calibration and domain guard), and for a seed mean `one_seed` (the fused
    graph around its first seed alone), exported on `inputs`."""
    network, meta = load_network(detector_file)
    saved = meta.get("serving")
    serving = ScoreServing.from_dict(saved) if isinstance(saved, dict) else None
    size = int(meta["input_size"])
    sessions = {"plain": onnx_session(FakeScorer(network, size, serving=serving).eval(), inputs),
                "fused": onnx_session(build_scorer(detector_file), inputs)}
    if isinstance(network, MeanLogit):
        one_seed = FakeScorer(fused(network.networks[0], meta), size, serving=serving).eval()
        sessions["one_seed"] = onnx_session(one_seed, inputs)
    return sessions


def onnx_session(scorer: FakeScorer, inputs: tuple[torch.Tensor, ...]) -> ort.InferenceSession:
    """The scorer exported to ONNX, in a 1-thread CPU session."""
    return exported_session(scorer, inputs, [FAKE_SCORE], dynamic=False)


def main(argv: list[str] | None = None) -> int:
    """Measure, print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    detector_file = assets.weights_root() / "forensics" / f"{assets.default_forensic_detector()}.pt"
    inputs = anchor_inputs()
    feeds = {name: tensor.numpy() for name, tensor in zip(INPUT_NAMES, inputs, strict=True)}
    times = alternate(served_sessions(detector_file, inputs), feeds, args.rounds, args.runs)
    medians = median_ms(times)
    result = {"detector": detector_file.name, "rounds": args.rounds, "runs": args.runs,
              "ms_per_face": medians, "rounds_ms": {k: [round(v, 3) for v in values]
                                                    for k, values in times.items()},
              "fused_over_plain": round(medians["fused"] / medians["plain"], 3)}
    if "one_seed" in medians:
        result["fused_over_one_seed"] = round(medians["fused"] / medians["one_seed"], 3)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scoring_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    header = ["detector", "plain ms/face", "with detail cues ms/face (served)", "ratio"]
    row = [detector_file.name, medians["plain"], medians["fused"],
           f"{result['fused_over_plain']}x"]
    if "one_seed" in medians:
        header += ["its first seed alone, with the cues ms/face", "served over one seed"]
        row += [medians["one_seed"], f"{result['fused_over_one_seed']}x"]
    (RESULTS / "scoring_cost.md").write_text(
        "# Scoring one face: the served `forensics` graph with and without the detail cues\n\n"
        "`python -m swaptron.benchmarks.scoring_cost` (ONNX Runtime, 1 thread, one face, "
        f"{args.rounds} alternating rounds of {args.runs} calls, medians)\n\n"
        + "".join("| " + " | ".join(str(cell) for cell in cells) + " |\n"
                  for cells in (header, ["---"] * len(header), row)))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
