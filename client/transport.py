"""The transport core: frames in, answers out, on one connection to the stream ensemble.

Every driver (`swaptron stream`, the page's gateway, `swaptron scan`) hands frames to a
`Transport` and reads its `Outcome`s; the core owns the rest: the window of frames in flight,
the newest-frame-wins mailbox in front of it, the Triton sequence of a stateful ensemble,
reconnection after a lost server, and the accounting of every frame, which ends exactly once
received, dropped or failed.

    transport = Transport(connection, options)
    await transport.offer(captured)          # a newer frame replaces one still waiting
    async for outcome in transport.answers():  # runs the stream; ends after `end()`
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field, replace

import grpc
import numpy as np
from tritonclient.grpc import InferResult, service_pb2

from swaptron.client.connection import Connection
from swaptron.client.errors import (
    CONNECTION_ERRORS,
    is_connection_error,
    refused_stream,
    rpc_message,
)
from swaptron.client.infer import SequenceFlags, SwapChoices, frame_request, new_sequence_id
from swaptron.client.mailbox import Mailbox
from swaptron.client.metrics import FrameTiming, StreamMetrics
from swaptron.client.shm import ShmRing
from swaptron.client.sources import Captured
from swaptron.specs import FACES, FAKE_SCORE, STREAM, SWAPPED, stateful_ensemble

DRAIN_TIMEOUT_S = 10.0
END_REQUEST_ID = "end"  # the request that ends a stream's sequence; its answer is dropped


@dataclass(frozen=True)
class StreamOptions:
    """Where to send frames and how."""

    url: str = "127.0.0.1:8001"
    model: str = STREAM  # stateful: the server keeps each stream's faces steady
    outputs: tuple[str, ...] = (SWAPPED, FACES)
    mode: str = "stream"  # "stream" (pipelined) or "serial" (one blocking request per frame)
    max_inflight: int = 2
    shm: bool = False
    connect_timeout_s: float = 30.0
    reconnect_timeout_s: float = 30.0
    live: bool = True
    choices: SwapChoices | None = None  # the identity and faces to swap (swap ensembles)


@dataclass(frozen=True)
class Outcome:
    """How one frame ended: received (with its tensors, batch axis removed), dropped (a newer
    frame replaced it) or failed (with the error)."""

    item: Captured
    status: str
    timing: FrameTiming
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    error: str | None = None

    @property
    def swapped(self) -> np.ndarray | None:
        """The swapped frame of a received answer, when asked for."""
        return self.tensors.get(SWAPPED)


def frame_fake_score(scores: np.ndarray | None) -> float | None:
    """The frame's fake score: its most suspicious face (empty slots carry -1), None when the
    frame has no face or the model gives no score."""
    if scores is None:
        return None
    present = scores[scores >= 0]
    return round(float(present.max()), 4) if present.size else None


class StreamSequence:
    """The Triton sequence of one stream session on a stateful ensemble: a new id per session
    (so per reconnection), START on the first frame, and an END request when the stream ends
    so the server frees the stream's state at once."""

    def __init__(self) -> None:
        self.sequence_id = new_sequence_id()
        self.last: Captured | None = None

    def flags(self, item: Captured) -> SequenceFlags:
        """The sequence flags of the next frame."""
        flags = SequenceFlags(self.sequence_id, start=self.last is None)
        self.last = item
        return flags

    def end_request(self, model: str, choices: SwapChoices | None
                    ) -> service_pb2.ModelInferRequest | None:
        """The last frame again, marked END (None when no frame was sent)."""
        if self.last is None:
            return None
        return frame_request(model, END_REQUEST_ID, self.last.frame, [FACES],
                             sequence=SequenceFlags(self.sequence_id, end=True),
                             choices=choices)


class Transport:
    """One stream of frames to a served ensemble over a connection."""

    def __init__(self, connection: Connection, options: StreamOptions,
                 metrics: StreamMetrics | None = None) -> None:
        self.connection = connection
        self.options = options
        self.metrics = metrics or StreamMetrics(origin=time.monotonic())
        self._choices = options.choices
        self._mailbox = Mailbox()
        self._stopping = asyncio.Event()
        self._outcomes: asyncio.Queue[Outcome | None] = asyncio.Queue()
        self._ring: ShmRing | None = None
        self._ready = False

    # frames in

    async def offer(self, item: Captured) -> None:
        """A new frame for the stream; one still waiting to be sent is dropped for it."""
        self.metrics.captured(item.index, item.capture_time)
        replaced = await self._mailbox.offer(item)
        if replaced is not None:
            self._finish(replaced, "dropped")

    async def wanted(self) -> bool:
        """Wait until the stream can send a frame at once (True), or takes no more (False): an
        unpaced source reads its next frame only then."""
        return await self._mailbox.wait_wanted()

    async def put(self, item: Captured) -> None:
        """A frame for a stream that asked for one (`wanted`)."""
        self.metrics.captured(item.index, item.capture_time)
        await self._mailbox.put(item)

    def choose(self, choices: SwapChoices) -> None:
        """The identity and faces of the frames sent from now on."""
        self._choices = choices

    async def end(self) -> None:
        """No more frames: the stream ends once the frames in flight are answered."""
        await self._mailbox.close()

    def stop(self) -> None:
        """Stop taking frames; what is in flight may finish (for a while), then the stream
        ends."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """True once `stop` was called."""
        return self._stopping.is_set()

    # answers out

    async def ready(self) -> bool:
        """Wait until the server and the model are ready on this connection (True), or a stop
        came first (False); StreamError when they are not within the connect timeout."""
        if not self._ready:
            self._ready = await self._unless_stopped(self.connection.wait_ready(
                self.options.model, self.options.connect_timeout_s))
        return self._ready

    async def answers(self) -> AsyncIterator[Outcome]:
        """Connect, stream until the frames end or a stop, and yield every frame's outcome as
        it happens; raises StreamError when the server cannot be reached or refuses the
        stream."""
        run = asyncio.create_task(self._run())
        run.add_done_callback(lambda _task: self._outcomes.put_nowait(None))
        try:
            while (outcome := await self._outcomes.get()) is not None:
                yield outcome
            run.result()
        finally:
            if not run.done():
                run.cancel()
                await asyncio.gather(run, return_exceptions=True)

    async def _run(self) -> None:
        """Wait for the server, then stream sessions (with shared memory when asked)."""
        if not await self.ready():
            return
        if self.options.shm:
            self._ring = ShmRing(self.connection, max(1, self.options.max_inflight))
        try:
            await self._sessions()
        finally:
            if self._ring is not None:
                with contextlib.suppress(*CONNECTION_ERRORS):
                    await self._ring.release()

    async def _sessions(self) -> None:
        """Run stream sessions until done; a lost connection starts a new one."""
        session = self._pipelined if self.options.mode == "stream" else self._serial
        while True:
            work = asyncio.create_task(session())
            stop = asyncio.create_task(self._stopping.wait())
            done, _ = await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
            if work not in done:  # stop requested: stop taking frames, let in flight finish
                await self._mailbox.close()
                with contextlib.suppress(asyncio.TimeoutError, *CONNECTION_ERRORS):
                    await asyncio.wait_for(work, DRAIN_TIMEOUT_S)
                return
            stop.cancel()
            error = work.exception()
            if error is None:
                return
            if not isinstance(error, CONNECTION_ERRORS) or not is_connection_error(error):
                raise error
            self.metrics.reconnects += 1
            print(f"\nconnection to {self.options.url} lost ({rpc_message(error)}); "
                  "reconnecting", file=sys.stderr, flush=True)
            if not await self._unless_stopped(self.connection.wait_ready(
                    self.options.model, self.options.reconnect_timeout_s)):
                return
            if self._ring is not None:
                await self._ring.reregister()

    async def _unless_stopped(self, work: Coroutine[object, object, None]) -> bool:
        """Run `work` unless a stop comes first; True when it finished."""
        task = asyncio.create_task(work)
        stop = asyncio.create_task(self._stopping.wait())
        done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if task in done:
            task.result()
            return True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False

    def _new_sequence(self) -> StreamSequence | None:
        """A session's sequence, for a stateful ensemble."""
        return StreamSequence() if stateful_ensemble(self.options.model) else None

    def _request(self, item: Captured, slot: int, sequence: StreamSequence | None
                 ) -> service_pb2.ModelInferRequest:
        """One frame's request, named by its index (through shared memory with --shm)."""
        frame_place, output_places = (self._ring.places(slot, item.frame)
                                      if self._ring is not None else (None, None))
        return frame_request(self.options.model, str(item.index), item.frame,
                             list(self.options.outputs), frame_place, output_places,
                             None if sequence is None else sequence.flags(item), self._choices)

    def _tensors(self, result: InferResult, item: Captured, slot: int
                 ) -> dict[str, np.ndarray]:
        """The outputs of a response, batch axis removed (SWAPPED from shared memory with
        --shm)."""
        found = {}
        for name in self.options.outputs:
            if name == SWAPPED and self._ring is not None:
                found[name] = self._ring.swapped(slot, item.frame.shape)
                continue
            value = result.as_numpy(name)
            if value is not None:
                found[name] = value[0]
        return found

    def _sent(self, item: Captured) -> None:
        """A frame's request went out."""
        self.metrics.sent(item.index, time.monotonic())

    def _finish(self, item: Captured, status: str, tensors: dict[str, np.ndarray] | None = None,
                error: str | None = None) -> None:
        """Account a frame's end and hand its outcome to the driver."""
        tensors = tensors or {}
        at = time.monotonic() if status == "received" else None
        self.metrics.finish(item.index, status, at, error=error,
                            fake_score=frame_fake_score(tensors.get(FAKE_SCORE)))
        timing = replace(self.metrics.frames[item.index])
        self._outcomes.put_nowait(Outcome(item, status, timing, tensors, error))

    async def _next_frame(self) -> Captured | None:
        """The next frame to send, with room for it in shared memory; None at the end."""
        item = await self._mailbox.take()
        if item is not None and self._ring is not None:
            await self._ring.ensure(item.frame.nbytes)
        return item

    async def _pipelined(self) -> None:
        """Frames on one bidirectional stream with at most max_inflight waiting for answers.

        Every answer names its request, so a refused frame is the one marked failed.
        """
        window = asyncio.Semaphore(self.options.max_inflight)
        inflight: OrderedDict[str, tuple[Captured, int]] = OrderedDict()
        free_slots = deque(range(self.options.max_inflight))
        sequence = self._new_sequence()

        async def requests() -> AsyncIterator[service_pb2.ModelInferRequest]:
            while True:
                await window.acquire()
                item = await self._next_frame()
                if item is None:
                    closing = None if sequence is None else sequence.end_request(
                        self.options.model, self._choices)
                    if closing is not None:
                        yield closing
                    return
                slot = free_slots.popleft()
                request = self._request(item, slot, sequence)
                inflight[request.id] = (item, slot)
                self._sent(item)
                yield request

        try:
            async for answer in self.connection.stream(requests()):
                if answer.request_id == END_REQUEST_ID:
                    continue
                item, slot = inflight.pop(answer.request_id)
                if answer.error is not None:
                    self._finish(item, "failed", error=answer.error)
                    refused = refused_stream(answer.error)
                    if refused is not None:
                        raise refused
                else:
                    self._finish(item, "received", self._tensors(answer.result, item, slot))
                free_slots.append(slot)
                window.release()
        finally:
            for item, _ in inflight.values():
                self._finish(item, "failed", error="connection lost with the frame in flight")
            inflight.clear()

    async def _serial(self) -> None:
        """The prototype's way: one blocking request per frame, nothing else in flight."""
        sequence = self._new_sequence()
        while True:
            item = await self._next_frame()
            if item is None:
                closing = None if sequence is None else sequence.end_request(
                    self.options.model, self._choices)
                if closing is not None:
                    with contextlib.suppress(grpc.RpcError):
                        await self.connection.infer(closing)
                return
            request = self._request(item, 0, sequence)
            self._sent(item)
            try:
                result = await self.connection.infer(request)
            except grpc.RpcError as error:
                self._finish(item, "failed", error=rpc_message(error))
                refused = refused_stream(rpc_message(error))
                if refused is not None:
                    raise refused from error
                if is_connection_error(error):
                    raise
                continue
            self._finish(item, "received", self._tensors(result, item, 0))
