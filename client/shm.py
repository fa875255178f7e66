"""System shared memory for frames when client and server share a host.

One slot per frame in flight: an input region for the frame and an output region for the swapped
frame, registered with the server and always unregistered and destroyed on the way out.
Registering is a locked API: the admin key (SWAPTRON_ADMIN_KEY, or the key file that
`swaptron serve` writes) goes with every registration call.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass

import grpc
import numpy as np

from swaptron.client.connection import Connection
from swaptron.client.errors import first_line
from swaptron.client.infer import ShmPlace
from swaptron.server import access
from swaptron.specs import SWAPPED

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # its pkg_resources import is deprecated
    import tritonclient.utils.shared_memory as shm


@dataclass
class ShmSlot:
    """The input and output regions of one frame in flight."""

    input_name: str
    output_name: str
    input_handle: object
    output_handle: object
    byte_size: int


class ShmError(RuntimeError):
    """Shared memory cannot be used with this server; the message says why and what to do."""


class ShmRing:
    """Slots sized for one frame shape; re-created when frames grow."""

    def __init__(self, connection: Connection, slots: int) -> None:
        self.connection = connection
        self.headers = access.grpc_metadata(access.admin_key())
        self.count = slots
        self.prefix = f"swaptron_{os.getpid()}_{id(self):x}"
        self.slots: list[ShmSlot] = []
        self.byte_size = 0

    async def ensure(self, byte_size: int) -> None:
        """Have slots of at least byte_size, registered with the server."""
        if byte_size <= self.byte_size and self.slots:
            return
        await self.release()
        for number in range(self.count):
            names = (f"{self.prefix}_in{number}", f"{self.prefix}_out{number}")
            handles = [shm.create_shared_memory_region(name, f"/{name}", byte_size)
                       for name in names]
            self.slots.append(ShmSlot(names[0], names[1], handles[0], handles[1], byte_size))
            for name in names:
                await self.register(name, byte_size)
        self.byte_size = byte_size

    async def register(self, name: str, byte_size: int) -> None:
        """Register one region with the server (a locked API: the admin key goes along)."""
        try:
            await self.connection.register_shm(name, f"/{name}", byte_size, self.headers)
        except grpc.RpcError as error:
            words = rpc_details(error)
            if "Unable to open shared memory region" in words:
                raise ShmError(
                    f"the server cannot open the shared-memory region /{name} that this client "
                    "created: it does not share this host's /dev/shm (a container, or another "
                    "machine). --shm works only with a server on this host, such as "
                    "`swaptron serve`; stream without --shm") from error
            if "restricted" not in words:
                raise
            raise ShmError(f"the server refused to register shared memory without the admin key "
                           f"({first_line(words)}): set {access.ADMIN_KEY_ENV}, or run on the "
                           f"host where `swaptron serve` keeps it in {access.key_file()}"
                           ) from error

    async def reregister(self) -> None:
        """Register the regions again (a restarted server forgot them)."""
        for slot in self.slots:
            for name in (slot.input_name, slot.output_name):
                with contextlib.suppress(grpc.RpcError):
                    await self.connection.unregister_shm(name, self.headers)
                await self.register(name, slot.byte_size)

    def places(self, slot: int, frame: np.ndarray) -> tuple[ShmPlace, dict[str, ShmPlace]]:
        """Copy a frame into a slot; where its request finds the frame and puts SWAPPED."""
        region = self.slots[slot]
        shm.set_shared_memory_region(region.input_handle, [frame])
        return (ShmPlace(region.input_name, frame.nbytes),
                {SWAPPED: ShmPlace(region.output_name, frame.nbytes)})

    def swapped(self, slot: int, shape: tuple[int, ...]) -> np.ndarray:
        """A copy of the swapped frame the server wrote into a slot."""
        region = self.slots[slot]
        return np.array(shm.get_contents_as_numpy(region.output_handle, np.uint8, [1, *shape])[0])

    async def release(self) -> None:
        """Unregister and destroy every region."""
        for slot in self.slots:
            for name, handle in ((slot.input_name, slot.input_handle),
                                 (slot.output_name, slot.output_handle)):
                with contextlib.suppress(grpc.RpcError):
                    await self.connection.unregister_shm(name, self.headers)
                shm.destroy_shared_memory_region(handle)
        self.slots = []
        self.byte_size = 0


def rpc_details(error: grpc.RpcError) -> str:
    """The server's words in a failed call."""
    details = getattr(error, "details", None)
    return (details() if callable(details) else None) or str(error)
