"""The `swaptron` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from swaptron.assets import REPO_ROOT

DEFAULT_REPOSITORY = REPO_ROOT / "model_repository"


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by the commands that start the embedded server."""
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_REPOSITORY,
                        help="Triton model repository (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: %(default)s; 0.0.0.0 opens it)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--log-file", type=Path, default=None,
                        help="server log (default: a file in the temp folder, printed at start)")


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the embedded server."""
    from swaptron.server.launcher import ServerPorts
    from swaptron.server.serve import serve

    ports = ServerPorts(http=args.http_port, grpc=args.grpc_port, metrics=args.metrics_port)
    return serve(args.model_repository, args.host, ports, args.log_file)


def cmd_doctor(_args: argparse.Namespace) -> int:
    """Report versions and what is missing."""
    from swaptron.doctor import main

    return main()


def cmd_weights(_args: argparse.Namespace) -> int:
    """Fetch the pinned MediaPipe weights."""
    from swaptron.assets import AssetError, fetch_weights

    try:
        for path in fetch_weights():
            print(path)
    except AssetError as error:
        print(f"error: {error}")
        return 1
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export the models into a Triton repository."""
    from swaptron.export.cli import run

    return run(args)


def cmd_extract(args: argparse.Namespace) -> int:
    """Extract aligned faces for training."""
    from swaptron.export.train_cli import run_extract

    return run_extract(args)


def cmd_train(args: argparse.Namespace) -> int:
    """Train the swap autoencoder."""
    from swaptron.export.train_cli import run_train

    return run_train(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Measure a trained autoencoder and write its card."""
    from swaptron.export.train_cli import run_evaluate

    return run_evaluate(args)


def cmd_stream(args: argparse.Namespace) -> int:
    """Stream frames through the ensemble."""
    from swaptron.client.cli import run

    return run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    """Export, serve and stream the demo video (`make run`)."""
    from swaptron.demo import run

    return run(args)


def cmd_bench(args: argparse.Namespace) -> int:
    """Benchmark the server against the baselines and write the results."""
    from swaptron.benchmarks.cli import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="swaptron", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int],
            help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    add_server_options(add("serve", cmd_serve, "run the embedded Triton server"))
    from swaptron.demo import add_arguments as demo_arguments

    demo_arguments(add("demo", cmd_demo, "export, serve and stream the demo video, then report "
                       "FPS and latency (make run)"))
    add("doctor", cmd_doctor, "check this machine and print versions")
    add("weights", cmd_weights, "fetch the pinned MediaPipe weights into the cache")
    from swaptron.export.cli import add_arguments as export_arguments

    export_arguments(add("export", cmd_export, "export the models to ONNX and a Triton repository"))
    from swaptron.export import train_cli

    train_cli.add_extract_arguments(add("extract", cmd_extract,
                                        "aligned face datasets from a video or image folder"))
    train_cli.add_train_arguments(add("train", cmd_train, "train the swap autoencoder"))
    from swaptron.client.cli import add_arguments as stream_arguments

    stream_arguments(add("stream", cmd_stream, "stream a camera, video or image folder through "
                         "the ensemble and measure FPS and latency"))
    train_cli.add_evaluate_arguments(add("evaluate", cmd_evaluate,
                                         "quality card of trained weights on held-out faces"))
    from swaptron.benchmarks.cli import add_arguments as bench_arguments

    bench_arguments(add("bench", cmd_bench, "perf_analyzer and the baselines side by side, with "
                        "the targets, tables and plots (make bench)"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the chosen subcommand."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
