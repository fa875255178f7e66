"""The `swaptron` command: one entry point, one subcommand per job.

Each subcommand's options and code live with its job (server/, export/, client/, benchmarks/).
Only the option modules are imported to build the parser (no torch, no ONNX Runtime); the code
of a subcommand is imported when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """A subcommand: its help, and `module:function` of its options and of its runner."""

    name: str
    help: str
    runner: str
    options: str | None = None


COMMANDS = (
    Command("demo", "export, serve and stream the demo video, then report FPS and latency "
            "(make run)", "swaptron.demo:run", "swaptron.demo:add_arguments"),
    Command("serve", "run the embedded Triton server", "swaptron.server.serve:run",
            "swaptron.server.serve:add_arguments"),
    Command("doctor", "check this machine and print versions", "swaptron.doctor:run"),
    Command("weights", "fetch the pinned MediaPipe weights into the cache",
            "swaptron.assets:run_fetch"),
    Command("export", "export the models to ONNX and a Triton repository",
            "swaptron.export.cli:run", "swaptron.export.cli:add_arguments"),
    Command("export-dfm", "write one identity of the autoencoder as a DeepFaceLab/DeepFaceLive "
            "model (.dfm)", "swaptron.export.dfm_cli:run", "swaptron.export.dfm_cli:add_arguments"),
    Command("extract", "aligned face datasets from a video or image folder",
            "swaptron.training.cli:run_extract",
            "swaptron.training.cli:add_extract_arguments"),
    Command("train", "train the swap autoencoder", "swaptron.training.cli:run_train",
            "swaptron.training.cli:add_train_arguments"),
    Command("evaluate", "quality card of trained weights on held-out faces",
            "swaptron.training.cli:run_evaluate",
            "swaptron.training.cli:add_evaluate_arguments"),
    Command("forensics", "forgery detectors: prepare the faces, train, evaluate (the card)",
            "swaptron.training.forensics_cli:run_prepare",
            "swaptron.training.forensics_cli:add_arguments"),
    Command("scan", "is this clip swapped? forgery scores per frame and face, and a verdict",
            "swaptron.scan:run", "swaptron.scan:add_arguments"),
    Command("stream", "stream a camera, video or image folder through the ensemble and measure "
            "FPS and latency", "swaptron.client.cli:run", "swaptron.client.cli:add_arguments"),
    Command("web", "the browser page: webcam in, swapped stream back, live FPS and latency "
            "(serves the embedded server too unless --url)", "swaptron.web.cli:run",
            "swaptron.web.cli:add_arguments"),
    Command("identities", "list the identities a server swaps into (for --identity)",
            "swaptron.client.identities:run", "swaptron.client.identities:add_arguments"),
    Command("bench", "perf_analyzer and the baselines side by side, with the targets, tables "
            "and plots (make bench)", "swaptron.benchmarks.cli:run",
            "swaptron.benchmarks.cli:add_arguments"),
)


def resolve(target: str) -> Callable[..., object]:
    """`package.module:function` -> the function."""
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="swaptron", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        sub.set_defaults(runner=command.runner)
        if command.options is not None:
            resolve(command.options)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the chosen subcommand."""
    args = build_parser().parse_args(argv)
    return int(resolve(args.runner)(args))  # type: ignore[call-overload]


if __name__ == "__main__":
    sys.exit(main())
