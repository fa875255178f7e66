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

from swaptron.client.metrics import StreamMetrics
from swaptron.client.sources import Captured
from swaptron.client.stream import Delivery, Streamer, StreamError, StreamOptions
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


class ReorderingStream:
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


class RecordingStream:
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
    """Stream `frames` frames through the streamer's pipelined session on the stand-in."""
    metrics = StreamMetrics(origin=time.monotonic())
    options = StreamOptions(model=model, max_inflight=window, outputs=(SWAPPED,))
    streamer = Streamer(source=None, options=options,  # type: ignore[arg-type]
                        delivery=Delivery(metrics, None, None, None))

    async def feed() -> None:
        for index in range(frames):
            item = Captured(index, np.full(FRAME_SHAPE, index, np.uint8), time.monotonic())
            streamer.delivery.captured(item)
            await streamer.mailbox.wait_wanted()
            await streamer.mailbox.put(item)
        await streamer.mailbox.close()

    await asyncio.gather(feed(), streamer.pipelined(stub))  # type: ignore[arg-type]
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
