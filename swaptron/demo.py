"""`swaptron demo` (what `make run` does): export, serve, stream the demo video, report, stop."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from swaptron import assets
from swaptron.assets import project_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `swaptron demo`."""
    parser.add_argument("--direction", choices=("a2b", "b2a"), default="a2b",
                        help="a2b: the woman gets the man's face (default); b2a: the reverse")
    parser.add_argument("--output-dir", type=Path, default=project_dir() / "out",
                        help="where the swapped video, report and server log go")
    parser.add_argument("--unpaced", action="store_true",
                        help="send frames as fast as they go instead of at the video's 24 FPS")
    parser.add_argument("--model-repository", type=Path, default=project_dir() / "model_repository")


def run(args: argparse.Namespace) -> int:
    """Export if needed, start the embedded server, stream the demo video through it."""
    from swaptron.cli import build_parser
    from swaptron.client.cli import run as stream
    from swaptron.embedded import embedded_server
    from swaptron.networks.pipeline import PipelineOptions
    from swaptron.server.launcher import ServerError

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    output = args.output_dir
    output.mkdir(parents=True, exist_ok=True)
    try:
        video = assets.demo_video()
        with embedded_server(args.model_repository, PipelineOptions(direction=args.direction),
                             output / "triton.log",
                             progress=lambda line: print(line, flush=True)) as server:
            print(f"ready: gRPC {server.grpc_url}; streaming {video.name}", flush=True)
            stream_args = ["stream", "--source", str(video), "--no-display", "--url",
                           server.grpc_url, "--output",
                           str(output / f"megamind-{args.direction}.mp4"),
                           "--report", str(output / "report.json")]
            if not args.unpaced:
                stream_args.append("--realtime")
            return stream(build_parser().parse_args(stream_args))
    except (ServerError, assets.AssetError) as error:
        print(f"error: {error}")
        return 1
