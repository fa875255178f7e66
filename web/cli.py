"""`swaptron web`: the page and its gateway; alone it also starts the embedded server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from swaptron.arguments import URL_HELP, grpc_url, positive_float, positive_int
from swaptron.assets import project_dir

if TYPE_CHECKING:
    from swaptron.web.gateway import GatewayOptions

TOKEN_VARIABLE = "SWAPTRON_WEB_TOKEN"
EXIT_ERROR = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `swaptron web`."""
    from swaptron.demo import DEFAULT_PAIR, DEMOS

    parser.add_argument("--url", type=grpc_url, default=None,
                        help=f"{URL_HELP}; without it the embedded server starts, as "
                             "`swaptron demo` does")
    parser.add_argument("--pair", choices=sorted(DEMOS), default=DEFAULT_PAIR,
                        help="the identities the embedded server swaps into (without --url)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default loopback only; any other needs "
                             "--token)")
    parser.add_argument("--port", type=positive_int, default=8080, help="port to listen on")
    parser.add_argument("--token", default=os.environ.get(TOKEN_VARIABLE),
                        help=f"secret the page must present (its URL's ?token=); default "
                             f"${TOKEN_VARIABLE}")
    parser.add_argument("--allow-origin", action="append", default=[],
                        help="another origin whose pages may open sessions (repeatable)")
    parser.add_argument("--max-sessions", type=positive_int, default=2,
                        help="live browser sessions at once; past it the page says server busy")
    parser.add_argument("--max-fps", type=positive_float, default=30.0,
                        help="frames a second one session may send")
    parser.add_argument("--max-inflight", type=positive_int, default=2,  # SessionLimits' default
                        help="frames of one session waiting for Triton at once; a newer frame "
                             "replaces one waiting for room")
    parser.add_argument("--max-message-bytes", type=positive_int, default=2 * 1024 * 1024,
                        help="largest websocket message (one JPEG frame)")
    parser.add_argument("--model", default=None,
                        help="stream ensemble (default: faceswap_stream_checked when served, "
                             "for the live fake score, else faceswap_stream)")
    parser.add_argument("--model-repository", type=Path, default=None,
                        help="where the pair's models are exported and served from (without "
                             "--url; default as `swaptron demo`)")
    parser.add_argument("--output-dir", type=Path, default=project_dir() / "out",
                        help="where the embedded server's log goes")


def run(args: argparse.Namespace) -> int:
    """Serve the page until interrupted."""
    from swaptron import assets
    from swaptron.demo import DEMOS
    from swaptron.server.launcher import ServerError, check_port_free
    from swaptron.web.gateway import GatewayError, GatewayOptions, SessionLimits, check_options

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    options = GatewayOptions(url=args.url or "", host=args.host, port=args.port,
                             token=args.token or None, allow_origins=tuple(args.allow_origin),
                             max_sessions=args.max_sessions,
                             max_message_bytes=args.max_message_bytes, model=args.model,
                             limits=SessionLimits(max_fps=args.max_fps,
                                                 max_inflight=args.max_inflight))
    try:
        check_options(options)
        check_port_free(args.host, args.port, "--port")
        if args.url:
            return serve_until_stopped(options)
        from swaptron.embedded import embedded_server
        from swaptron.networks.pipeline import PipelineOptions

        demo = DEMOS[args.pair]
        args.output_dir.mkdir(parents=True, exist_ok=True)
        repository = args.model_repository or demo.repository
        with embedded_server(repository, PipelineOptions(weights=demo.weights(args.pair)),
                             args.output_dir / "triton.log",
                             progress=lambda line: print(line, flush=True)) as server:
            return serve_until_stopped(replace(options, url=server.grpc_url))
    except (GatewayError, ServerError, assets.AssetError) as error:
        print(f"error: {error}")
        return EXIT_ERROR


def serve_until_stopped(options: GatewayOptions) -> int:
    """Run the gateway until SIGINT or SIGTERM."""
    from swaptron.client.stream import StreamError
    from swaptron.web.gateway import serve

    async def main() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(serve(options, ready))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if ready.is_set():
            token = f"?token={options.token}" if options.token else ""
            print(f"open http://{options.host}:{options.port}/{token}", flush=True)
        try:
            await task
        except asyncio.CancelledError:
            print("stopped", flush=True)

    try:
        asyncio.run(main())
    except StreamError as error:
        print(f"error: {error}")
        return EXIT_ERROR
    return 0
