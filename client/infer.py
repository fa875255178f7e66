"""Inference requests on Triton's gRPC service, with the request id kept on every answer.

tritonclient's aio `stream_infer` drops the id of a response that carries an error, so a client
cannot tell which frame failed (Triton does send it). This module builds `ModelInferRequest`s
itself (frames inline or in shared memory) and runs them on the raw gRPC stub: a bidirectional
stream yields `Answer`s that always name their request, and `infer_once` is the unary call.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.grpc import InferResult, service_pb2, service_pb2_grpc

from swaptron.arguments import grpc_target
from swaptron.specs import FRAME, IDENTITY, WHICH_FACES

# Any allowed frame size; round_robin spreads calls (each stream is one call, so it stays on one
# server) over every address of the target, skipping servers that are down.
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 2**31 - 1),
                   ("grpc.max_receive_message_length", 2**31 - 1),
                   ("grpc.lb_policy_name", "round_robin")]


def aio_client(url: str) -> aioclient.InferenceServerClient:
    """tritonclient's aio client on a --url (one or several servers)."""
    return aioclient.InferenceServerClient(grpc_target(url), channel_args=CHANNEL_OPTIONS)


def sync_client(url: str) -> grpcclient.InferenceServerClient:
    """tritonclient's blocking client on a --url (one or several servers)."""
    return grpcclient.InferenceServerClient(grpc_target(url), channel_args=CHANNEL_OPTIONS)


@dataclass(frozen=True)
class ShmPlace:
    """A tensor's place in a registered system shared-memory region."""

    region: str
    byte_size: int


@dataclass(frozen=True)
class SequenceFlags:
    """A request's place in a Triton sequence (one video stream of a stateful ensemble)."""

    sequence_id: int
    start: bool = False
    end: bool = False


def new_sequence_id() -> int:
    """A random non-zero sequence id (the field is int64; ids above 2**63 - 1 cannot be sent):
    a reconnected stream takes a new one, so a server never mixes two runs' state."""
    return secrets.randbits(62) + 1


@dataclass(frozen=True)
class SwapChoices:
    """What a swap request names: the identity faces become and which faces (None: the
    server's default)."""

    identity: str | None = None
    which_faces: str | None = None

    def inputs(self) -> dict[str, str]:
        """The optional BYTES inputs to send."""
        return {name: value for name, value in ((IDENTITY, self.identity),
                                                (WHICH_FACES, self.which_faces)) if value}


@dataclass(frozen=True)
class Answer:
    """One response: the id of its request, and the result or the error text."""

    request_id: str
    result: InferResult | None
    error: str | None


def frame_request(model: str, request_id: str, frame: np.ndarray, outputs: list[str],
                  frame_place: ShmPlace | None = None,
                  output_places: dict[str, ShmPlace] | None = None,
                  sequence: SequenceFlags | None = None, choices: SwapChoices | None = None
                  ) -> service_pb2.ModelInferRequest:
    """A request of one uint8 frame [H,W,3] (batch 1), inline or in shared memory, in a
    sequence when given, with the swap's named choices when given."""
    request = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    if sequence is not None:
        request.parameters["sequence_id"].int64_param = sequence.sequence_id
        request.parameters["sequence_start"].bool_param = sequence.start
        request.parameters["sequence_end"].bool_param = sequence.end
    tensor = request.inputs.add(name=FRAME, datatype="UINT8", shape=[1, *frame.shape])
    if frame_place is None:
        request.raw_input_contents.append(np.ascontiguousarray(frame).tobytes())
    else:
        set_place(tensor.parameters, frame_place)
    for name, value in (choices.inputs() if choices is not None else {}).items():
        choice = request.inputs.add(name=name, datatype="BYTES", shape=[1, 1])
        if frame_place is None:  # raw contents are all or none of the inputs
            encoded = value.encode()
            request.raw_input_contents.append(len(encoded).to_bytes(4, "little") + encoded)
        else:
            choice.contents.bytes_contents.append(value.encode())
    for name in outputs:
        output = request.outputs.add(name=name)
        place = (output_places or {}).get(name)
        if place is not None:
            set_place(output.parameters, place)
    return request


def set_place(parameters: object, place: ShmPlace) -> None:
    """The request parameters that point a tensor at a shared-memory region."""
    parameters["shared_memory_region"].string_param = place.region  # type: ignore[index]
    parameters["shared_memory_byte_size"].int64_param = place.byte_size  # type: ignore[index]


def open_stub(channel: grpc.aio.Channel) -> service_pb2_grpc.GRPCInferenceServiceStub:
    """The inference service on a channel."""
    return service_pb2_grpc.GRPCInferenceServiceStub(channel)


def open_channel(url: str) -> grpc.aio.Channel:
    """An insecure aio channel on a --url that takes frames of any allowed size."""
    return grpc.aio.insecure_channel(grpc_target(url), options=CHANNEL_OPTIONS)


async def stream_answers(stub: service_pb2_grpc.GRPCInferenceServiceStub,
                         requests: AsyncIterator[service_pb2.ModelInferRequest]
                         ) -> AsyncIterator[Answer]:
    """Send requests on one bidirectional stream; yield each answer as it comes.

    A lost connection raises grpc.aio.AioRpcError; a failed request is an Answer with error.
    """
    async for response in stub.ModelStreamInfer(requests):
        request_id = response.infer_response.id
        if response.error_message:
            yield Answer(request_id, None, response.error_message)
        else:
            yield Answer(request_id, InferResult(response.infer_response), None)


async def infer_once(stub: service_pb2_grpc.GRPCInferenceServiceStub,
                     request: service_pb2.ModelInferRequest) -> InferResult:
    """One unary request (raises grpc.aio.AioRpcError on any failure)."""
    return InferResult(await stub.ModelInfer(request))
