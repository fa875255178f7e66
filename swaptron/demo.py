"""`swaptron demo` (what `make run` does): export, serve, stream a pair's video, report, stop."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swaptron import assets
from swaptron.assets import DEMO_IDENTITIES, project_dir


@dataclass(frozen=True)
class Demo:
    """What `swaptron demo --pair` plays: a video, the identity its faces become, and where the
    pair's repository is exported (the Megamind pair is the default export, model_repository/)."""

    video: Callable[[], Path]
    identity: str
    description: str
    repository: Path
    default_export: bool = False

    def weights(self, pair: str) -> Path | None:
        """The pair's weights (None: the default export's)."""
        return None if self.default_export else assets.pair_weights(pair)


PEOPLE = "people"
DEMOS = {
    PEOPLE: Demo(lambda: assets.footage("single_face.mp4"), "w",
                 "the man of single_face.mp4 gets the woman's face (m2w)",
                 project_dir() / "build" / "repositories" / PEOPLE),
    DEMO_IDENTITIES: Demo(assets.demo_video, "b",
                          "Megamind.avi: the woman gets the man's face (a2b)",
                          project_dir() / "model_repository", default_export=True),
}
DEFAULT_PAIR = PEOPLE  # real people show the product best (docs/identities.md)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `swaptron demo`."""
    parser.add_argument("--pair", choices=sorted(DEMOS), default=DEFAULT_PAIR,
                        help="; ".join(f"{name}: {demo.description}" for name, demo in
                                       DEMOS.items()) + " (default: %(default)s)")
    parser.add_argument("--identity", default=None,
                        help="the identity faces become (default: the pair's, as above)")
    parser.add_argument("--output-dir", type=Path, default=project_dir() / "out",
                        help="where the swapped video, report and server log go")
    parser.add_argument("--unpaced", action="store_true",
                        help="send frames as fast as they go instead of at the video's own FPS")
    parser.add_argument("--model-repository", type=Path, default=None,
                        help="where the pair's models are exported and served from (default: "
                             "model_repository for megamind, build/repositories/people)")


def run(args: argparse.Namespace) -> int:
    """Export if needed, start the embedded server, stream the pair's video through it."""
    from swaptron.cli import build_parser
    from swaptron.client.cli import run as stream
    from swaptron.embedded import embedded_server
    from swaptron.networks.pipeline import PipelineOptions
    from swaptron.server.launcher import ServerError

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    demo = DEMOS[args.pair]
    identity = args.identity or demo.identity
    output = args.output_dir
    output.mkdir(parents=True, exist_ok=True)
    try:
        video = demo.video()
        repository = args.model_repository or demo.repository
        with embedded_server(repository, PipelineOptions(weights=demo.weights(args.pair)),
                             output / "triton.log",
                             progress=lambda line: print(line, flush=True)) as server:
            print(f"ready: gRPC {server.grpc_url}; streaming {video.name} into {identity}",
                  flush=True)
            stream_args = ["stream", "--source", str(video), "--no-display", "--url",
                           server.grpc_url, "--output",
                           str(output / f"{args.pair}-to-{identity}.mp4"),
                           "--report", str(output / "report.json"), "--identity", identity]
            if not args.unpaced:
                stream_args.append("--realtime")
            return stream(build_parser().parse_args(stream_args))
    except (ServerError, assets.AssetError) as error:
        print(f"error: {error}")
        return 1
