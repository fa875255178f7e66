"""`swaptron stream`: frames to the ensemble over async gRPC and back, with trustworthy timings.

Pipelined mode keeps a bounded window of frames in flight on one bidirectional stream. When the
window is full, the newest captured frame waits in a one-frame mailbox and a newer one replaces
it (the older is dropped), so no queue builds up and latency stays short. Serial mode is the
prototype's way: one blocking request per frame. A lost server is waited for with backoff; the
frames it held are counted as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass

import grpc
import numpy as np
import tritonclient.grpc.aio as aioclient
from tritonclient.grpc import InferResult, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from swaptron.client.infer import (
    SequenceFlags,
    SwapChoices,
    aio_client,
    frame_request,
    infer_once,
    new_sequence_id,
    open_channel,
    open_stub,
    stream_answers,
)
from swaptron.client.metrics import StreamMetrics
from swaptron.client.shm import ShmRing, first_line
from swaptron.client.sinks import DisplaySink, VideoSink, VirtualCameraSink
from swaptron.client.sources import Captured, FrameSource
from swaptron.specs import (
    FACES,
    FAKE_SCORE,
    IDENTITY,
    STREAM,
    STREAM_LIMIT_ERROR,
    SWAPPED,
    WHICH_FACES,
    stateful_ensemble,
)

CONNECTION_ERRORS = (InferenceServerException, grpc.RpcError, ConnectionError)
# gRPC codes that mean the server is gone, not that it refused this frame (INVALID_ARGUMENT,
# INTERNAL for a model failure, NOT_FOUND): those fail the frame and the stream goes on
LOST_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
              grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN)
LOST_STATUSES = tuple(str(code) for code in LOST_CODES)
# gRPC's own transport failing under a call (a send onto a server killed mid-stream): INTERNAL
# from the client's core, not a model failure, which comes with Triton's own words
CORE_FAILURE = "Internal error from Core"
DRAIN_TIMEOUT_S = 10.0


class StreamError(RuntimeError):
    """The stream cannot go on (server unreachable); the message says what to do."""


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


class Mailbox:
    """The newest captured frame not yet sent; `None` marks the end of the source."""

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

    async def wait_wanted(self) -> None:
        """Wait until the sender asks for a frame and none is waiting."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._wanted and self._item is None)

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


Observer = Callable[[Captured, dict[str, np.ndarray]], None]


class Delivery:
    """Records each frame's fate and hands received frames to the sinks (and to an observer,
    which sees every answer's tensors: the scanner)."""

    def __init__(self, metrics: StreamMetrics, video: VideoSink | None,
                 display: DisplaySink | None, camera: VirtualCameraSink | None,
                 observer: Observer | None = None) -> None:
        self.metrics = metrics
        self.video = video
        self.display = display
        self.camera = camera
        self.observer = observer

    def captured(self, item: Captured) -> None:
        """A frame left the source."""
        self.metrics.captured(item.index, item.capture_time)

    def sent(self, item: Captured) -> None:
        """A frame's request went out."""
        self.metrics.sent(item.index, time.monotonic())

    def received(self, item: Captured, tensors: dict[str, np.ndarray]) -> None:
        """A frame's answer came back: its tensors (batch axis removed)."""
        fake_score = frame_fake_score(tensors.get(FAKE_SCORE))
        self.metrics.finish(item.index, "received", time.monotonic(), fake_score=fake_score)
        if self.observer is not None:
            self.observer(item, tensors)
        swapped = tensors.get(SWAPPED)
        if swapped is None:
            return
        if self.video is not None:
            self.video.put(item.index, swapped)
        if self.camera is not None:
            self.camera.put(swapped)
        if self.display is not None:
            fps, p95 = self.metrics.live(time.monotonic())
            status = f"{fps:.1f} fps  p95 {p95:.0f} ms"
            if fake_score is not None:
                status += f"  fake score {fake_score:.2f}"
            self.display.show(item.frame, swapped, status)

    def lost(self, item: Captured, status: str, error: str | None = None) -> None:
        """A frame was dropped (replaced by a newer one) or failed."""
        self.metrics.finish(item.index, status, error=error)
        if self.video is not None:
            self.video.put(item.index, None)


def frame_fake_score(scores: np.ndarray | None) -> float | None:
    """The frame's fake score: its most suspicious face (empty slots carry -1), None when the
    frame has no face or the model gives no score."""
    if scores is None:
        return None
    present = scores[scores >= 0]
    return round(float(present.max()), 4) if present.size else None


def is_connection_error(error: BaseException) -> bool:
    """True for errors that mean the server is gone rather than a refused frame."""
    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        core_failure = (error.code() == grpc.StatusCode.INTERNAL
                        and CORE_FAILURE in (error.details() or ""))
        return error.code() in LOST_CODES or core_failure
    if isinstance(error, InferenceServerException):
        return error.status() in LOST_STATUSES or error.status() is None
    return True


async def wait_ready(client: aioclient.InferenceServerClient, model: str, url: str,
                     timeout_s: float) -> None:
    """Poll until the server and model are ready, with backoff; StreamError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    delay, last = 0.25, "no answer"
    while True:
        try:
            if await client.is_server_ready(client_timeout=2.0) and await client.is_model_ready(
                    model, client_timeout=2.0):
                return
            last = f"server up but model {model!r} not ready"
        except CONNECTION_ERRORS as error:
            last = str(error).splitlines()[0] if str(error) else type(error).__name__
        if time.monotonic() + delay > deadline:
            raise StreamError(f"cannot reach Triton at {url} within {timeout_s:.0f} s ({last}): "
                              "start it with `swaptron serve` or pass --url")
        print(f"waiting for Triton at {url}: {last}; retrying in {delay:.1f} s",
              file=sys.stderr, flush=True)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 4.0)


END_REQUEST_ID = "end"  # the request that ends a stream's sequence; its answer is dropped


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


def refused_stream(error: str) -> StreamError | None:
    """The stream error for a server that keeps no more streams or that does not know the
    identity or face choice the stream names (every frame would fail), else None."""
    refusals = (STREAM_LIMIT_ERROR, *(f"unknown {name} " for name in (IDENTITY, WHICH_FACES)))
    if not any(refusal in error for refusal in refusals):
        return None
    return StreamError(f"the server refused this stream: {error.strip().splitlines()[0]}")


class Streamer:
    """One client run: capture, send, receive, report."""

    def __init__(self, source: FrameSource | None, options: StreamOptions,
                 delivery: Delivery) -> None:
        """`source` None: frames are put into the mailbox by the caller (the web gateway)."""
        self.source = source
        self.options = options
        self.delivery = delivery
        self.mailbox = Mailbox()
        self.stopping = asyncio.Event()
        self.ring: ShmRing | None = None
        self.outcome = "completed"

    async def capture(self) -> None:
        """Read frames; paced sources replace waiting frames, others wait for room.

        An unpaced source is read only when the sender asks for a frame, so its capture time is
        when the client could send it, as with a camera that always has a fresh frame.
        """
        if self.source is None:
            return
        try:
            while not self.stopping.is_set():
                if not self.source.paced:
                    await self.mailbox.wait_wanted()
                item = await asyncio.to_thread(self.source.next)
                if item is None:
                    break
                self.delivery.captured(item)
                if self.source.paced:
                    replaced = await self.mailbox.offer(item)
                    if replaced is not None:
                        self.delivery.lost(replaced, "dropped")
                else:
                    await self.mailbox.put(item)
        finally:
            await self.mailbox.close()

    def build_request(self, item: Captured, slot: int, sequence: StreamSequence | None
                      ) -> service_pb2.ModelInferRequest:
        """One frame's request, named by its index (through shared memory with --shm)."""
        frame_place, output_places = (self.ring.places(slot, item.frame)
                                      if self.ring is not None else (None, None))
        return frame_request(self.options.model, str(item.index), item.frame,
                             list(self.options.outputs), frame_place, output_places,
                             None if sequence is None else sequence.flags(item),
                             self.options.choices)

    def new_sequence(self) -> StreamSequence | None:
        """A session's sequence, for a stateful ensemble."""
        return StreamSequence() if stateful_ensemble(self.options.model) else None

    def tensors(self, result: InferResult, item: Captured, slot: int) -> dict[str, np.ndarray]:
        """The outputs of a response, batch axis removed (SWAPPED from shared memory with
        --shm)."""
        found = {}
        for name in self.options.outputs:
            if name == SWAPPED and self.ring is not None:
                found[name] = self.ring.swapped(slot, item.frame.shape)
                continue
            value = result.as_numpy(name)
            if value is not None:
                found[name] = value[0]
        return found

    async def pipelined(self, stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
        """Frames on one bidirectional stream with at most max_inflight waiting for answers.

        Every answer names its request, so a refused frame is the one marked failed.
        """
        window = asyncio.Semaphore(self.options.max_inflight)
        inflight: OrderedDict[str, tuple[Captured, int]] = OrderedDict()
        free_slots = deque(range(self.options.max_inflight))
        sequence = self.new_sequence()

        async def requests() -> AsyncIterator[service_pb2.ModelInferRequest]:
            while True:
                await window.acquire()
                item = await self.mailbox.take()
                if item is None:
                    closing = None if sequence is None else sequence.end_request(
                        self.options.model, self.options.choices)
                    if closing is not None:
                        yield closing
                    return
                slot = free_slots.popleft()
                if self.ring is not None:
                    await self.ring.ensure(item.frame.nbytes)
                request = self.build_request(item, slot, sequence)
                inflight[request.id] = (item, slot)
                self.delivery.sent(item)
                yield request

        try:
            async for answer in stream_answers(stub, requests()):
                if answer.request_id == END_REQUEST_ID:
                    continue
                item, slot = inflight.pop(answer.request_id)
                if answer.error is not None:
                    self.delivery.lost(item, "failed", answer.error)
                    refused = refused_stream(answer.error)
                    if refused is not None:
                        raise refused
                else:
                    self.delivery.received(item, self.tensors(answer.result, item, slot))
                free_slots.append(slot)
                window.release()
        finally:
            for item, _ in inflight.values():
                self.delivery.lost(item, "failed", "connection lost with the frame in flight")
            inflight.clear()

    async def serial(self, stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
        """The prototype's way: one blocking request per frame, nothing else in flight."""
        sequence = self.new_sequence()
        while True:
            item = await self.mailbox.take()
            if item is None:
                closing = None if sequence is None else sequence.end_request(
                    self.options.model, self.options.choices)
                if closing is not None:
                    with contextlib.suppress(grpc.RpcError):
                        await infer_once(stub, closing)
                return
            if self.ring is not None:
                await self.ring.ensure(item.frame.nbytes)
            request = self.build_request(item, 0, sequence)
            self.delivery.sent(item)
            try:
                result = await infer_once(stub, request)
            except grpc.RpcError as error:
                self.delivery.lost(item, "failed", rpc_message(error))
                refused = refused_stream(rpc_message(error))
                if refused is not None:
                    raise refused from error
                if is_connection_error(error):
                    raise
                continue
            self.delivery.received(item, self.tensors(result, item, 0))

    async def live_status(self) -> None:
        """Print FPS and p95 latency once a second."""
        metrics = self.delivery.metrics
        while True:
            await asyncio.sleep(1.0)
            fps, p95 = metrics.live(time.monotonic())
            line = (f"\r{metrics.count('received')} received  {fps:5.1f} fps  "
                    f"p95 {p95:6.1f} ms  dropped {metrics.count('dropped')}  "
                    f"failed {metrics.count('failed')}")
            fake_score = metrics.live_fake_score()
            if fake_score is not None:
                line += f"  fake score {fake_score:.2f}"
            print(line, end="", file=sys.stderr, flush=True)
            if self.delivery.display is not None and self.delivery.display.closed:
                self.stopping.set()

    async def run(self) -> None:
        """Connect, stream until the source ends or a stop signal, reconnecting when needed.

        `outcome` says how the run ended; a StreamError means the server could not be reached.
        """
        options = self.options
        loop = asyncio.get_running_loop()
        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        for signum in previous:
            loop.add_signal_handler(signum, self.request_stop)
        try:
            async with aio_client(options.url) as client:
                if not await self.unless_stopped(wait_ready(
                        client, options.model, options.url, options.connect_timeout_s)):
                    return
                if options.shm:
                    self.ring = ShmRing(client, max(1, options.max_inflight))
                async with open_channel(options.url) as channel:
                    await self.stream_with(client, open_stub(channel))
        finally:
            for signum, handler in previous.items():
                loop.remove_signal_handler(signum)
                signal.signal(signum, handler)

    def request_stop(self) -> None:
        """A stop signal: finish what is in flight, then end the run."""
        self.outcome = "stopped by a signal"
        self.stopping.set()

    async def unless_stopped(self, work: Coroutine[object, object, None]) -> bool:
        """Run `work` unless a stop comes first; True when it finished."""
        task = asyncio.create_task(work)
        stop = asyncio.create_task(self.stopping.wait())
        done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if task in done:
            task.result()
            return True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False

    async def stream_with(self, client: aioclient.InferenceServerClient,
                          stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
        """Capture and stream sessions on a ready server; server statistics around them."""
        options = self.options
        before = await server_statistics(client)
        tasks = [asyncio.create_task(self.capture())]
        if options.live:
            tasks.append(asyncio.create_task(self.live_status()))
        try:
            await self.sessions(client, stub)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if options.live:
                print(file=sys.stderr)
            with contextlib.suppress(*CONNECTION_ERRORS):
                after = await server_statistics(client)
                self.delivery.metrics.server = statistics_delta(before, after)
            if self.ring is not None:
                with contextlib.suppress(*CONNECTION_ERRORS):
                    await self.ring.release()

    async def sessions(self, client: aioclient.InferenceServerClient,
                       stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
        """Run stream sessions until done; a lost connection starts a new one."""
        session = self.pipelined if self.options.mode == "stream" else self.serial
        while True:
            work = asyncio.create_task(session(stub))
            stop = asyncio.create_task(self.stopping.wait())
            done, _ = await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
            if work not in done:  # stop requested: stop capturing, let what is in flight finish
                await self.mailbox.close()
                with contextlib.suppress(asyncio.TimeoutError, *CONNECTION_ERRORS):
                    await asyncio.wait_for(work, DRAIN_TIMEOUT_S)
                return
            stop.cancel()
            error = work.exception()
            if error is None:
                return
            if not isinstance(error, CONNECTION_ERRORS) or not is_connection_error(error):
                raise error
            self.delivery.metrics.reconnects += 1
            print(f"\nconnection to {self.options.url} lost ({rpc_message(error)}); reconnecting",
                  file=sys.stderr, flush=True)
            if not await self.unless_stopped(wait_ready(
                    client, self.options.model, self.options.url,
                    self.options.reconnect_timeout_s)):
                return
            if self.ring is not None:
                await self.ring.reregister()


def rpc_message(error: BaseException) -> str:
    """The first line of a gRPC (or other) error's text, with its status code."""
    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        details = (error.details() or "").strip()
        return f"{error.code().name}: {details.splitlines()[0] if details else ''}"
    return first_line(error)


async def server_statistics(client: aioclient.InferenceServerClient) -> dict[str, dict[str, int]]:
    """Cumulative per-model counts and nanoseconds from Triton's statistics API."""
    stats = await client.get_inference_statistics(as_json=True)
    table = {}
    for model in stats.get("model_stats", []):
        inference = model.get("inference_stats", {})
        table[model["name"]] = {
            "count": int(inference.get("success", {}).get("count", 0)),
            **{key: int(inference.get(key, {}).get("ns", 0))
               for key in ("success", "queue", "compute_input", "compute_infer",
                           "compute_output")}}
    return table


def statistics_delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
                     ) -> dict[str, object]:
    """Mean server-side milliseconds per request during the run, per model."""
    models = {}
    for name, end in after.items():
        start = before.get(name, {})
        count = end["count"] - start.get("count", 0)
        if count <= 0:
            continue

        def per_request(*keys: str, end: dict[str, int] = end, start: dict[str, int] = start,
                        count: int = count) -> float:
            total = sum(end[k] - start.get(k, 0) for k in keys)
            return round(total / count / 1e6, 2)

        models[name] = {"requests": count, "request_ms": per_request("success"),
                        "queue_ms": per_request("queue"),
                        "compute_ms": per_request("compute_input", "compute_infer",
                                                  "compute_output")}
    return {"models": models, "note": "means over every request the server saw during the run"}
