"""Shared-memory registration errors become messages that say what to do."""

from __future__ import annotations

import asyncio

import pytest
from tritonclient.utils import InferenceServerException

from swaptron.client.shm import ShmError, ShmRing


class RefusingClient:
    """Answers a registration as Triton 2.51 does (its error text, verbatim)."""

    def __init__(self, message: str) -> None:
        self.message = message

    async def register_system_shared_memory(self, *_args: object, **_kwargs: object) -> None:
        raise InferenceServerException(msg=self.message, status="StatusCode.INTERNAL")


@pytest.mark.parametrize(("answer", "expected"), [
    ("Unable to open shared memory region: '/swaptron_1_in0'", "does not share this host's"),
    ("This protocol is restricted, expecting header 'triton-grpc-protocol-admin-key'",
     "without the admin key"),
])
def test_a_refused_registration_says_why(answer: str, expected: str) -> None:
    ring = ShmRing(RefusingClient(answer), 1)  # type: ignore[arg-type]
    with pytest.raises(ShmError, match=expected):
        asyncio.run(ring.register("swaptron_1_in0", 64))


def test_other_errors_pass_through() -> None:
    ring = ShmRing(RefusingClient("something else"), 1)  # type: ignore[arg-type]
    with pytest.raises(InferenceServerException, match="something else"):
        asyncio.run(ring.register("swaptron_1_in0", 64))
