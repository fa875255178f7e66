"""The newest captured frame not yet sent: a one-frame mailbox where a newer frame wins.

When the window of frames in flight is full, the newest captured frame waits here and a newer one
replaces it (the older is dropped), so no queue builds up and latency stays short.
"""

from __future__ import annotations

import asyncio

from swaptron.client.sources import Captured


class Mailbox:
    """One waiting frame at most; `take` gives None once the source ended and nothing is
    left."""

    def __init__(self) -> None:
        self._item: Captured | None = None
        self._closed = False
        self._wanted = False
        self._changed = asyncio.Condition()

    async def offer(self, item: Captured) -> Captured | None:
        """Put a frame, replacing (and returning) one still waiting."""
        async with self._changed:
            replaced, self._item = self._item, item
            self._changed.notify_all()
            return replaced

    async def wait_wanted(self) -> bool:
        """Wait until the sender asks for a frame and none is waiting (True), or the mailbox
        closed (False)."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: self._closed or (self._wanted and self._item is None))
            return not self._closed

    async def put(self, item: Captured) -> None:
        """Put a frame into the empty mailbox (after `wait_wanted`)."""
        async with self._changed:
            self._item = item
            self._wanted = False
            self._changed.notify_all()

    async def take(self) -> Captured | None:
        """Ask for a frame and wait for it; None once the source ended and nothing is left."""
        async with self._changed:
            self._wanted = True
            self._changed.notify_all()
            await self._changed.wait_for(lambda: self._item is not None or self._closed)
            item, self._item = self._item, None
            self._changed.notify_all()
            return item

    async def close(self) -> None:
        """No more frames will come; a waiting frame is still handed out."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()
