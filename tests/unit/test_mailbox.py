"""The newest-frame-wins mailbox between the capture and the sender."""

from __future__ import annotations

import asyncio

import numpy as np

from swaptron.client.mailbox import Mailbox
from swaptron.client.sources import Captured


def item(index: int) -> Captured:
    """A captured frame with this index."""
    return Captured(index, np.zeros((2, 2, 3), np.uint8), float(index))


def test_a_newer_frame_replaces_the_waiting_one() -> None:
    async def scenario() -> tuple[Captured | None, Captured | None, Captured | None]:
        mailbox = Mailbox()
        first = await mailbox.offer(item(0))
        replaced = await mailbox.offer(item(1))
        taken = await mailbox.take()
        return first, replaced, taken

    first, replaced, taken = asyncio.run(scenario())
    assert first is None
    assert replaced is not None and replaced.index == 0
    assert taken is not None and taken.index == 1


def test_take_waits_for_a_frame_and_close_ends_it() -> None:
    async def scenario() -> list[int | None]:
        mailbox = Mailbox()
        got: list[int | None] = []

        async def sender() -> None:
            while (taken := await mailbox.take()) is not None:
                got.append(taken.index)
            got.append(None)

        task = asyncio.create_task(sender())
        for index in range(3):
            await mailbox.wait_wanted()
            await mailbox.put(item(index))
        await mailbox.wait_wanted()
        await mailbox.close()
        await asyncio.wait_for(task, 5)
        return got

    assert asyncio.run(scenario()) == [0, 1, 2, None]


def test_a_frame_waiting_at_close_is_still_handed_out() -> None:
    async def scenario() -> tuple[int | None, Captured | None]:
        mailbox = Mailbox()
        await mailbox.offer(item(7))
        await mailbox.close()
        first = await mailbox.take()
        return (first.index if first else None), await mailbox.take()

    assert asyncio.run(scenario()) == (7, None)
