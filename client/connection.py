"""One gRPC channel to Triton, and everything a stream asks of the server over it.

Readiness, the frames' streams, statistics and shared-memory registration all travel on the same
channel, so the server found ready is one this channel streams to. With several addresses (or a
dns:/// name) the channel's round_robin policy hands each new stream to the next live server,
and each stream stays on its own.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from types import TracebackType

import grpc
from tritonclient.grpc import InferResult, service_pb2, service_pb2_grpc

from swaptron.client.errors import CONNECTION_ERRORS, StreamError, rpc_message
from swaptron.client.infer import Answer, infer_once, open_channel, open_stub, stream_answers

READY_TIMEOUT_S = 2.0
STATISTICS = ("success", "queue", "compute_input", "compute_infer", "compute_output")


class Connection:
    """A channel to one server or several, and the inference service on it."""

    def __init__(self, url: str, stub: service_pb2_grpc.GRPCInferenceServiceStub,
                 channel: grpc.aio.Channel | None = None) -> None:
        """`channel` None: the stub is not ours to close (a stand-in, or a shared stub)."""
        self.url = url
        self._stub = stub
        self._channel = channel

    @classmethod
    def open(cls, url: str) -> Connection:
        """A new channel on a --url (one or several servers)."""
        channel = open_channel(url)
        return cls(url, open_stub(channel), channel)

    async def close(self) -> None:
        """Close the channel (a connection opened here only)."""
        if self._channel is not None:
            await self._channel.close()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.close()

    async def readiness(self, model: str) -> str | None:
        """None when the server and the model are ready, else what is not."""
        server = await self._stub.ServerReady(service_pb2.ServerReadyRequest(),
                                              timeout=READY_TIMEOUT_S)
        if not server.ready:
            return "server up but not ready"
        answer = await self._stub.ModelReady(service_pb2.ModelReadyRequest(name=model),
                                             timeout=READY_TIMEOUT_S)
        return None if answer.ready else f"server up but model {model!r} not ready"

    async def wait_ready(self, model: str, timeout_s: float) -> None:
        """Poll until the server and model are ready, with backoff; StreamError after
        timeout_s."""
        deadline = time.monotonic() + timeout_s
        delay, last = 0.25, "no answer"
        while True:
            try:
                not_ready = await self.readiness(model)
            except CONNECTION_ERRORS as error:
                not_ready = rpc_message(error) or "no answer"
            if not_ready is None:
                return
            last = not_ready
            if time.monotonic() + delay > deadline:
                raise StreamError(f"cannot reach Triton at {self.url} within {timeout_s:.0f} s "
                                  f"({last}): start it with `swaptron serve` or pass --url")
            print(f"waiting for Triton at {self.url}: {last}; retrying in {delay:.1f} s",
                  file=sys.stderr, flush=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4.0)

    def stream(self, requests: AsyncIterator[service_pb2.ModelInferRequest]
               ) -> AsyncIterator[Answer]:
        """One bidirectional stream: each answer names its request."""
        return stream_answers(self._stub, requests)

    def infer(self, request: service_pb2.ModelInferRequest) -> Awaitable[InferResult]:
        """One unary request."""
        return infer_once(self._stub, request)

    async def statistics(self) -> dict[str, dict[str, int]]:
        """Cumulative per-model counts and nanoseconds from Triton's statistics API."""
        answer = await self._stub.ModelStatistics(service_pb2.ModelStatisticsRequest())
        table = {}
        for model in answer.model_stats:
            inference = model.inference_stats
            table[model.name] = {"count": int(inference.success.count),
                                 **{key: int(getattr(inference, key).ns) for key in STATISTICS}}
        return table

    async def register_shm(self, name: str, key: str, byte_size: int,
                           metadata: dict[str, str]) -> None:
        """Register a system shared-memory region (a locked API: the metadata carries the key)."""
        await self._stub.SystemSharedMemoryRegister(
            service_pb2.SystemSharedMemoryRegisterRequest(name=name, key=key,
                                                          byte_size=byte_size),
            metadata=tuple(metadata.items()))

    async def unregister_shm(self, name: str, metadata: dict[str, str]) -> None:
        """Unregister a system shared-memory region."""
        await self._stub.SystemSharedMemoryUnregister(
            service_pb2.SystemSharedMemoryUnregisterRequest(name=name),
            metadata=tuple(metadata.items()))


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


async def server_statistics(url: str) -> dict[str, dict[str, int]]:
    """The statistics of the server at `url`, on a connection of their own."""
    async with Connection.open(url) as connection:
        return await connection.statistics()

