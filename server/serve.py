"""`swaptron serve`: run the embedded tritonserver until SIGINT/SIGTERM, restarting it when it or
one of its Python stubs dies, with the control APIs behind the admin key."""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType

from swaptron.assets import project_dir
from swaptron.server import access
from swaptron.server.launcher import ServerError, ServerPorts, TritonServer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `swaptron serve`."""
    parser.add_argument("--model-repository", type=Path, default=project_dir() / "model_repository",
                        help="Triton model repository (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: %(default)s; 0.0.0.0 opens it)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--log-file", type=Path, default=None,
                        help="server log (default: a file in the temp folder, printed at start)")


def run(args: argparse.Namespace) -> int:
    """Run the embedded server until SIGINT/SIGTERM."""
    ports = ServerPorts(http=args.http_port, grpc=args.grpc_port, metrics=args.metrics_port)
    return serve(args.model_repository, args.host, ports, args.log_file)


def serve(repository: Path, host: str, ports: ServerPorts, log_path: Path | None) -> int:
    """Start the server, print where it listens and logs, block until a stop signal."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        print(f"\nstopping ({signal.Signals(signum).name})", flush=True)
        stop.set()

    try:
        server = TritonServer(repository, host=host, ports=ports, log_path=log_path,
                              supervise=True, on_event=lambda line: print(line, flush=True))
    except access.AccessError as error:
        print(f"error: {error}")
        return 1
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"starting tritonserver on {repository} (log: {server.log_path})", flush=True)
        server.start()
        print(f"ready: HTTP {server.http_url}  gRPC {server.grpc_url}  "
              f"metrics {server.metrics_url}  (Ctrl-C stops)", flush=True)
        print(f"admin key ({', '.join(access.LOCKED_HTTP)} over HTTP; "
              f"{', '.join(access.LOCKED_GRPC)} over gRPC): {key_origin()}", flush=True)
        while not stop.wait(0.5):
            if not server.alive():
                print(f"error: {server.failure or 'tritonserver exited'} "
                      f"(log: {server.log_path})")
                return 1
    except ServerError as error:
        print(f"error: {error}")
        return 1
    finally:
        stopping = time.monotonic()
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"stopped in {time.monotonic() - stopping:.1f} s", flush=True)
    return 0


def key_origin() -> str:
    """Where the admin key comes from, without printing it."""
    if access.ADMIN_KEY_ENV in os.environ:
        return f"${access.ADMIN_KEY_ENV}"
    return f"{access.key_file()} (mode 0600; send it as header `{access.ADMIN_HEADER}`)"
