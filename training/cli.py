"""Command-line options of `swaptron extract`, `swaptron train` and `swaptron evaluate`."""

from __future__ import annotations

import argparse
from pathlib import Path

from swaptron.assets import DEMO_IDENTITIES, AssetError, project_dir

DEMO_FRAMES = ("a=0-97,154-199", "b=98-153,200-269")  # the two Megamind characters


def demo_output() -> Path:
    """Where `swaptron train` writes by default: the committed demo weights' folder."""
    return project_dir() / "weights" / DEMO_IDENTITIES


def demo_dataset() -> Path:
    """Where `swaptron extract` writes by default."""
    return project_dir() / "build" / "datasets" / DEMO_IDENTITIES


def add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `swaptron extract`."""
    parser.add_argument("--source", type=Path, default=None,
                        help="video file or image folder (default: the demo video)")
    parser.add_argument("--identity", action="append", default=None,
                        help="NAME=FRAMES, e.g. a=0-97,154-199 (repeat per identity; default: "
                             "the two Megamind characters)")
    parser.add_argument("--output", type=Path, default=demo_dataset())
    parser.add_argument("--face-size", type=int, default=64, help="S of the aligned crops")


def run_extract(args: argparse.Namespace) -> int:
    """Extract aligned faces per identity."""
    from swaptron import assets
    from swaptron.training.extract import ExtractError, extract

    try:
        source = args.source or assets.demo_video()
        counts = extract(source, list(args.identity or DEMO_FRAMES), args.output,
                         args.face_size)
    except (ExtractError, AssetError) as error:
        print(f"error: {error}")
        return 1
    for name, count in counts.items():
        print(f"{name}: {count} faces in {args.output / name}")
    return 0


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `swaptron train`."""
    parser.add_argument("--dataset", type=Path, default=demo_dataset())
    parser.add_argument("--output", type=Path, default=demo_output())
    parser.add_argument("--identities", default="a,b", help="comma-separated (default: a,b)")
    parser.add_argument("--preset", default="lite", choices=("lite", "full"))
    parser.add_argument("--minutes", type=float, default=None, help="time budget")
    parser.add_argument("--steps", type=int, default=None, help="step budget")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--no-mask-loss", action="store_true")
    parser.add_argument("--resume", action="store_true", help="continue from checkpoint.pt")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--no-evaluate", action="store_true",
                        help="skip the quality card at the end")


def run_train(args: argparse.Namespace) -> int:
    """Train, then measure quality and write the training card."""
    from swaptron.training.train import TrainError, TrainOptions, train

    options = TrainOptions(dataset=args.dataset, output=args.output,
                           identities=tuple(args.identities.split(",")), preset=args.preset,
                           batch_size=args.batch_size, learning_rate=args.learning_rate,
                           minutes=args.minutes, steps=args.steps,
                           mask_loss=not args.no_mask_loss, resume=args.resume,
                           threads=args.threads)
    try:
        _, history = train(options)
    except TrainError as error:
        print(f"error: {error}")
        return 1
    print(f"trained {history.steps} steps in {history.minutes:.1f} min -> {args.output}")
    if args.no_evaluate:
        return 0
    return evaluate_into(args.dataset, args.output)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `swaptron evaluate`."""
    parser.add_argument("--dataset", type=Path, default=demo_dataset())
    parser.add_argument("--output", type=Path, default=demo_output(),
                        help="folder holding autoencoder.safetensors; the card goes there")


def run_evaluate(args: argparse.Namespace) -> int:
    """Measure quality on the held-out faces and write the training card."""
    return evaluate_into(args.dataset, args.output)


def evaluate_into(dataset: Path, output: Path) -> int:
    """Write card.json, TRAINING.md and loss.png beside the weights."""
    from swaptron.training.evaluate import EvaluateError, write_card

    try:
        card = write_card(dataset, output)
    except (EvaluateError, AssetError) as error:
        print(f"error: {error}")
        return 1
    for key in ("recon_error", "swap_rate", "pose_error_deg", "mouth_corr", "seam_ratio"):
        print(f"{key}: {card[key]}")
    return 0
