"""Shared-memory registration errors become messages that say what to do."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from swaptron.client.connection import Connection
from swaptron.client.shm import ShmError, ShmRing


class RefusingServer:
    """Answers a registration as Triton 2.51 does over gRPC (its error text, verbatim)."""

    def __init__(self, message: str) -> None:
        self.message = message

    async def SystemSharedMemoryRegister(self, *_args: object,  # noqa: N802
                                         **_kwargs: object) -> None:
        raise grpc.aio.AioRpcError(grpc.StatusCode.INTERNAL, grpc.aio.Metadata(),
                                   grpc.aio.Metadata(), details=self.message)


def refusing(message: str) -> Connection:
    """A connection to a server that refuses registrations with `message`."""
    return Connection("stand-in", RefusingServer(message))  # type: ignore[arg-type]


@pytest.mark.parametrize(("answer", "expected"), [
    ("Unable to open shared memory region: '/swaptron_1_in0'", "does not share this host's"),
    ("This protocol is restricted, expecting header 'triton-grpc-protocol-admin-key'",
     "without the admin key"),
])
def test_a_refused_registration_says_why(answer: str, expected: str) -> None:
    ring = ShmRing(refusing(answer), 1)
    with pytest.raises(ShmError, match=expected):
        asyncio.run(ring.register("swaptron_1_in0", 64))


def test_other_errors_pass_through() -> None:
    ring = ShmRing(refusing("something else"), 1)
    with pytest.raises(grpc.RpcError, match="something else"):
        asyncio.run(ring.register("swaptron_1_in0", 64))
