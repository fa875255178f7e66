"""The client's accounting: every frame ends exactly once, and an error is charged to the frame
whose request failed, whatever order the answers come in (answers here come from a stand-in for
Triton's gRPC stream; the end-to-end tests run the real server)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from swaptron.client.connection import Connection
from swaptron.client.errors import StreamError
from swaptron.client.metrics import StreamMetrics
from swaptron.client.sources import Captured
from swaptron.client.transport import StreamOptions, Transport
from swaptron.specs import ENSEMBLE, STREAM, STREAM_LIMIT_ERROR, SWAPPED

FRAME_SHAPE = (4, 6, 3)


def answer(request: service_pb2.ModelInferRequest, error: str | None
           ) -> service_pb2.ModelStreamInferResponse:
    """Triton's stream response to a request: an error, or SWAPPED (the frame plus one)."""
    response = service_pb2.ModelStreamInferResponse()
    response.infer_response.id = request.id
    if error is not None:
        response.error_message = error
        return response
    frame = np.frombuffer(request.raw_input_contents[0], np.uint8).reshape(1, *FRAME_SHAPE)
    response.infer_response.outputs.add(name=SWAPPED, datatype="UINT8", shape=list(frame.shape))
    response.infer_response.raw_output_contents.append((frame + 1).tobytes())
    return response


class ReadyServer:
    """The readiness calls of a server that is up with every model loaded."""

    async def ServerReady(self, _request: object, timeout: float | None = None  # noqa: N802
                          ) -> service_pb2.ServerReadyResponse:
        return service_pb2.ServerReadyResponse(ready=True)

    async def ModelReady(self, _request: object, timeout: float | None = None  # noqa: N802
                         ) -> service_pb2.ModelReadyResponse:
        return service_pb2.ModelReadyResponse(ready=True)


class ReorderingStream(ReadyServer):
    """Answers once `window` requests are in: the failing ones first, then the rest in reverse
    order (as a fast refusal overtakes slow frames on a real server)."""

    def __init__(self, failing: set[str], window: int) -> None:
        self.failing = failing
        self.window = window

    def ModelStreamInfer(self, requests: AsyncIterator[service_pb2.ModelInferRequest]  # noqa: N802
                         ) -> AsyncIterator[service_pb2.ModelStreamInferResponse]:
        """The bidirectional stream."""
        return self.respond(requests)

    async def respond(self, requests: AsyncIterator[service_pb2.ModelInferRequest]
                      ) -> AsyncIterator[service_pb2.ModelStreamInferResponse]:
        pending: list[service_pb2.ModelInferRequest] = []
        async for request in requests:
            pending.append(request)
            if len(pending) == self.window:
                for held in sorted(pending, key=lambda r: (r.id not in self.failing, -int(r.id))):
                    yield answer(held, "refused" if held.id in self.failing else None)
                pending = []
        for held in pending:
            yield answer(held, "refused" if held.id in self.failing else None)


class RecordingStream(ReadyServer):
    """Answers every request at once and keeps them; refuses all with `error` when given."""

    def __init__(self, error: str | None = None) -> None:
        self.requests: list[service_pb2.ModelInferRequest] = []
        self.error = error

    def ModelStreamInfer(self, requests: AsyncIterator[service_pb2.ModelInferRequest]  # noqa: N802
                         ) -> AsyncIterator[service_pb2.ModelStreamInferResponse]:
        """The bidirectional stream."""
        return self.respond(requests)

    async def respond(self, requests: AsyncIterator[service_pb2.ModelInferRequest]
                      ) -> AsyncIterator[service_pb2.ModelStreamInferResponse]:
        async for request in requests:
            self.requests.append(request)
            yield answer(request, self.error)


async def run_stream(stub: ReorderingStream | RecordingStream, frames: int, window: int,
                     model: str = ENSEMBLE) -> StreamMetrics:
    """Stream `frames` frames through the transport core on the stand-in, as an unpaced source
    does; every outcome must match the accounting."""
    options = StreamOptions(model=model, max_inflight=window, outputs=(SWAPPED,))
    transport = Transport(Connection("stand-in", stub), options)  # type: ignore[arg-type]

    async def feed() -> None:
        for index in range(frames):
            await transport.wanted()
            await transport.put(Captured(index, np.full(FRAME_SHAPE, index, np.uint8),
                                         time.monotonic()))
        await transport.end()

    async def read() -> list[tuple[int, str]]:
        return [(outcome.item.index, outcome.status) async for outcome in transport.answers()]

    _, outcomes = await asyncio.gather(feed(), read())
    metrics = transport.metrics
    assert sorted(outcomes) == [(index, metrics.frames[index].status) for index in range(frames)]
    return metrics


def test_an_error_is_charged_to_its_own_frame() -> None:
    metrics = asyncio.run(run_stream(ReorderingStream({"2", "4"}, window=3), frames=6,
                                     window=3))
    statuses = {index: timing.status for index, timing in metrics.frames.items()}
    assert statuses == {0: "received", 1: "received", 2: "failed", 3: "received",
                        4: "failed", 5: "received"}
    assert metrics.frames[2].error == "refused"


def test_every_frame_ends_once_when_all_fail() -> None:
    metrics = asyncio.run(run_stream(ReorderingStream({str(i) for i in range(5)}, window=2),
                                     frames=5, window=2))
    assert [t.status for t in metrics.frames.values()] == ["failed"] * 5


def test_a_stateful_stream_is_one_sequence_that_ends_after_its_last_frame() -> None:
    stub = RecordingStream()
    metrics = asyncio.run(run_stream(stub, frames=4, window=2, model=STREAM))
    assert [t.status for t in metrics.frames.values()] == ["received"] * 4
    flags = [(r.parameters["sequence_id"].int64_param, r.parameters["sequence_start"].bool_param,
              r.parameters["sequence_end"].bool_param) for r in stub.requests]
    assert len(flags) == 5 and len({sequence_id for sequence_id, _, _ in flags}) == 1
    assert flags[0][0] > 0
    assert [start for _, start, _ in flags] == [True, False, False, False, False]
    assert [end for _, _, end in flags] == [False, False, False, False, True]


def test_a_stateless_stream_sends_no_sequence() -> None:
    stub = RecordingStream()
    asyncio.run(run_stream(stub, frames=3, window=2))
    assert len(stub.requests) == 3
    assert all("sequence_id" not in r.parameters for r in stub.requests)


def test_a_refused_stream_stops_with_the_servers_reason() -> None:
    refusal = f"stabilizer: {STREAM_LIMIT_ERROR} (32 streams are live, ...)"
    with pytest.raises(StreamError, match="refused this stream"):
        asyncio.run(run_stream(RecordingStream(refusal), frames=3, window=1, model=STREAM))


def test_a_waiting_frame_is_dropped_for_a_newer_one_and_told() -> None:
    async def scenario() -> list[tuple[int, str]]:
        transport = Transport(Connection("stand-in", RecordingStream()),  # type: ignore[arg-type]
                              StreamOptions(model=ENSEMBLE, max_inflight=1, outputs=(SWAPPED,)))
        for index in range(3):
            await transport.offer(Captured(index, np.zeros(FRAME_SHAPE, np.uint8),
                                           time.monotonic()))
        await transport.end()
        return [(outcome.item.index, outcome.status) async for outcome in transport.answers()]

    assert asyncio.run(scenario()) == [(0, "dropped"), (1, "dropped"), (2, "received")]


class SlowToLoad(RecordingStream):
    """A server whose model becomes ready on the third readiness call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def ModelReady(self, _request: object, timeout: float | None = None  # noqa: N802
                         ) -> service_pb2.ModelReadyResponse:
        self.calls.append("ready?")
        return service_pb2.ModelReadyResponse(ready=self.calls.count("ready?") >= 3)

    async def respond(self, requests: AsyncIterator[service_pb2.ModelInferRequest]
                      ) -> AsyncIterator[service_pb2.ModelStreamInferResponse]:
        self.calls.append("stream")
        async for response in super().respond(requests):
            yield response


def test_readiness_is_waited_for_on_the_connection_that_streams() -> None:
    stub = SlowToLoad()
    metrics = asyncio.run(run_stream(stub, frames=2, window=1))
    assert [t.status for t in metrics.frames.values()] == ["received"] * 2
    assert stub.calls == ["ready?", "ready?", "ready?", "stream"]
