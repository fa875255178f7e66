"""The ports tritonserver listens on: which they are, free ones for tests, and whether they are
free before it starts."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from swaptron.server.errors import ServerError


@dataclass(frozen=True)
class ServerPorts:
    """The three ports tritonserver listens on."""

    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


def free_ports() -> ServerPorts:
    """Three ports that are free on 127.0.0.1 right now (for tests and benchmarks)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(3)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        http, grpc, metrics = (sock.getsockname()[1] for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()
    return ServerPorts(http=http, grpc=grpc, metrics=metrics)


def check_port_free(host: str, port: int, option: str) -> None:
    """Raise ServerError naming the option to change when something already listens on the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            raise ServerError(
                f"port {port} on {host} is already in use ({error.strerror}): "
                f"stop what holds it or pick another with {option}"
            ) from error


def check_ports_free(host: str, ports: ServerPorts) -> None:
    """Raise ServerError naming the option to change for the first of the ports already taken."""
    for port, option in ((ports.http, "--http-port"), (ports.grpc, "--grpc-port"),
                         (ports.metrics, "--metrics-port")):
        check_port_free(host, port, option)
