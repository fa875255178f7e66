"""Which errors end a stream's connection (reconnect) and which fail one frame."""

from __future__ import annotations

import grpc
from grpc.aio import AioRpcError, Metadata

from swaptron.client.errors import is_connection_error


def rpc_error(code: grpc.StatusCode, details: str) -> AioRpcError:
    """An error as a gRPC call raises it."""
    return AioRpcError(code, Metadata(), Metadata(), details=details)


def test_a_killed_server_is_a_lost_connection_whatever_grpc_calls_it() -> None:
    assert is_connection_error(rpc_error(grpc.StatusCode.UNAVAILABLE, "Socket closed"))
    assert is_connection_error(rpc_error(grpc.StatusCode.CANCELLED, "cancelled"))
    # a send onto a server killed mid-stream: gRPC's core fails the call with INTERNAL (seen
    # in the failover test on a loaded machine, where the client then died without a report)
    assert is_connection_error(rpc_error(grpc.StatusCode.INTERNAL, "Internal error from Core"))


def test_a_model_failure_is_not_a_lost_connection() -> None:
    assert not is_connection_error(rpc_error(grpc.StatusCode.INTERNAL,
                                             "in ensemble 'faceswap', inference failed"))
    assert not is_connection_error(rpc_error(grpc.StatusCode.INVALID_ARGUMENT,
                                             "FRAME is 5000x5000 pixels"))
