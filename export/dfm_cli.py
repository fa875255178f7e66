"""Command-line options of `swaptron export-dfm` (no torch here: the parser stays light)."""

from __future__ import annotations

import argparse
from pathlib import Path

from swaptron.arguments import positive_int

DEFAULT_RESOLUTION = 224  # DeepFaceLive's usual R


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `swaptron export-dfm`."""
    parser.add_argument("--weights", type=Path, default=None,
                        help="autoencoder safetensors (default: the committed demo weights)")
    parser.add_argument("--identity", default=None,
                        help="the identity the DFM swaps faces into (default: the weights' "
                             "last identity by name)")
    parser.add_argument("--out", type=Path, required=True, help="the .dfm file to write")
    parser.add_argument("--resolution", type=positive_int, default=DEFAULT_RESOLUTION,
                        help=f"R, the side of DeepFaceLive's face crop (default "
                             f"{DEFAULT_RESOLUTION})")


def run(args: argparse.Namespace) -> int:
    """Export the DFM and print what was written."""
    from swaptron.assets import AssetError, demo_weights
    from swaptron.export.dfm_export import export_dfm
    from swaptron.networks.autoencoder import FaceAutoencoder
    from swaptron.networks.dfm import DfmError
    from swaptron.networks.pipeline import default_identity

    weights = args.weights or demo_weights()
    try:
        identity = args.identity or default_identity(FaceAutoencoder.load(weights))
        info = export_dfm(weights, identity, args.out, args.resolution)
    except (AssetError, DfmError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}")
        return 1
    print(f"wrote {info.path}: identity {identity}, R {info.resolution}, inputs "
          f"{', '.join(info.input_names)}, outputs {', '.join(info.output_names)}")
    return 0
