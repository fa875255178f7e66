"""`swaptron serve`: run the embedded tritonserver until SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

from swaptron.server.launcher import ServerError, ServerPorts, TritonServer


def serve(repository: Path, host: str, ports: ServerPorts, log_path: Path | None) -> int:
    """Start the server, print where it listens and logs, block until a stop signal."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        print(f"\nstopping ({signal.Signals(signum).name})", flush=True)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = TritonServer(repository, host=host, ports=ports, log_path=log_path)
    try:
        print(f"starting tritonserver on {repository} (log: {server.log_path})", flush=True)
        server.start()
        print(f"ready: HTTP {server.http_url}  gRPC {server.grpc_url}  "
              f"metrics {server.metrics_url}  (Ctrl-C stops)", flush=True)
        while not stop.wait(0.5):
            if not server.alive():
                print(f"error: tritonserver exited unexpectedly (log: {server.log_path})")
                return 1
    except ServerError as error:
        print(f"error: {error}")
        return 1
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped", flush=True)
    return 0
