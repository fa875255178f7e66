"""The cost of scoring one face: the committed default detector's served `forensics` graph with
and without the detail cues (networks/detail_cues.py), side by side in one run.

    nice -n 10 .venv/bin/python -m swaptron.benchmarks.scoring_cost [--rounds N] [--runs N]

Both graphs are built from the same committed detector file, exported to ONNX and run in ONNX
Runtime (1 thread) on the demo video's anchor frame (one face), alternating rounds (plain, fused,
plain, fused, ...); each round times `runs` calls after a warm-up. Reports the median ms per face
of each and their ratio. Writes benchmarks/results/scoring_cost.json and .md.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import onnxruntime as ort
import torch

from swaptron import assets
from swaptron.networks.fake_score import FakeScorer, ScoreServing, build_scorer, load_network
from swaptron.networks.pipeline import build_finder
from swaptron.specs import FAKE_SCORE, FRAME, LANDMARKS, PRESENCE

NAMES = (FRAME, LANDMARKS, PRESENCE)
RESULTS = Path(__file__).resolve().parent / "results"


def served_sessions(detector_file: Path) -> dict[str, ort.InferenceSession]:
    """The served graph with the detail cues (`fused`, as exported) and without (`plain`: the
    same network, calibration and domain guard)."""
    fused = build_scorer(detector_file)
    network, meta = load_network(detector_file)
    serving = meta.get("serving")
    plain = FakeScorer(network, int(meta["input_size"]), serving=ScoreServing.from_dict(
        serving) if isinstance(serving, dict) else None).eval()
    return {"plain": onnx_session(plain), "fused": onnx_session(fused)}


def onnx_session(scorer: FakeScorer) -> ort.InferenceSession:
    """The scorer exported to ONNX, in a 1-thread CPU session."""
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(scorer, anchor_inputs(), buffer, dynamo=False, opset_version=17,
                          input_names=list(NAMES), output_names=[FAKE_SCORE])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])


def anchor_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The demo video's anchor frame, its face's landmarks and presence (batch 1, one slot)."""
    frame = assets.read_frames(assets.demo_video(), [assets.ANCHOR_FRAME])[0][None]
    found = build_finder(1).find(frame)
    return (torch.from_numpy(frame), torch.from_numpy(found[LANDMARKS]),
            torch.from_numpy(found[PRESENCE]))


def alternate(sessions: dict[str, ort.InferenceSession], rounds: int, runs: int
              ) -> dict[str, list[float]]:
    """ms per face of each session, one figure per round, the sessions taking turns."""
    feeds = {name: tensor.numpy() for name, tensor in zip(NAMES, anchor_inputs(), strict=True)}
    for session in sessions.values():
        for _ in range(3):
            session.run(None, feeds)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            started = time.perf_counter()
            for _ in range(runs):
                session.run(None, feeds)
            times[name].append((time.perf_counter() - started) / runs * 1000.0)
    return times


def main(argv: list[str] | None = None) -> int:
    """Measure, print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    detector_file = assets.weights_root() / "forensics" / f"{assets.default_forensic_detector()}.pt"
    times = alternate(served_sessions(detector_file), args.rounds, args.runs)
    medians = {name: round(statistics.median(values), 3) for name, values in times.items()}
    result = {"detector": detector_file.name, "rounds": args.rounds, "runs": args.runs,
              "ms_per_face": medians, "rounds_ms": {k: [round(v, 3) for v in values]
                                                    for k, values in times.items()},
              "fused_over_plain": round(medians["fused"] / medians["plain"], 3)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scoring_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "scoring_cost.md").write_text(
        "# Scoring one face: the served `forensics` graph with and without the detail cues\n\n"
        "`python -m swaptron.benchmarks.scoring_cost` (ONNX Runtime, 1 thread, one face, "
        f"{args.rounds} alternating rounds of {args.runs} calls, medians)\n\n"
        "| detector | plain ms/face | with detail cues ms/face | ratio |\n|---|---|---|---|\n"
        f"| {detector_file.name} | {medians['plain']} | {medians['fused']} | "
        f"{result['fused_over_plain']}x |\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
