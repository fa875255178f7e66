"""System shared memory for frames when client and server share a host.

One slot per frame in flight: an input region for the frame and an output region for the swapped
frame, registered with the server and always unregistered and destroyed on the way out.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

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


class ShmRing:
    """Slots sized for one frame shape; re-created when frames grow."""

    def __init__(self, client: aioclient.InferenceServerClient, slots: int) -> None:
        self.client = client
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
                await self.client.register_system_shared_memory(name, f"/{name}", byte_size)
        self.byte_size = byte_size

    async def reregister(self) -> None:
        """Register the regions again (a restarted server forgot them)."""
        for slot in self.slots:
            for name in (slot.input_name, slot.output_name):
                with contextlib.suppress(InferenceServerException):
                    await self.client.unregister_system_shared_memory(name)
                await self.client.register_system_shared_memory(name, f"/{name}",
                                                                slot.byte_size)

    def request(self, slot: int, frame: np.ndarray
                ) -> tuple[list[grpcclient.InferInput], list[grpcclient.InferRequestedOutput]]:
        """Copy a frame into a slot; the inputs and outputs of its request."""
        region = self.slots[slot]
        shm.set_shared_memory_region(region.input_handle, [frame])
        tensor = grpcclient.InferInput("FRAME", [1, *frame.shape], "UINT8")
        tensor.set_shared_memory(region.input_name, frame.nbytes)
        swapped = grpcclient.InferRequestedOutput("SWAPPED")
        swapped.set_shared_memory(region.output_name, frame.nbytes)
        return [tensor], [swapped, grpcclient.InferRequestedOutput("FACES")]

    def swapped(self, slot: int, shape: tuple[int, ...]) -> np.ndarray:
        """A copy of the swapped frame the server wrote into a slot."""
        region = self.slots[slot]
        return np.array(shm.get_contents_as_numpy(region.output_handle, np.uint8, [1, *shape])[0])

    async def release(self) -> None:
        """Unregister and destroy every region."""
        for slot in self.slots:
            for name, handle in ((slot.input_name, slot.input_handle),
                                 (slot.output_name, slot.output_handle)):
                with contextlib.suppress(InferenceServerException):
                    await self.client.unregister_system_shared_memory(name)
                shm.destroy_shared_memory_region(handle)
        self.slots = []
        self.byte_size = 0
