"""How the client tells a lost server from a refused frame, and the words it reports.

A lost server (unreachable, restarted, its channel torn down) is waited for and reconnected to;
a refused frame fails alone and the stream goes on; a refused stream (no room for another, an
unknown identity or face choice) ends the run with the server's own words.
"""

from __future__ import annotations

import grpc
from tritonclient.utils import InferenceServerException

from swaptron.specs import IDENTITY, STREAM_LIMIT_ERROR, WHICH_FACES

CONNECTION_ERRORS = (InferenceServerException, grpc.RpcError, ConnectionError)
# gRPC codes that mean the server is gone, not that it refused this frame (INVALID_ARGUMENT,
# INTERNAL for a model failure, NOT_FOUND): those fail the frame and the stream goes on
LOST_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
              grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN)
LOST_STATUSES = tuple(str(code) for code in LOST_CODES)
# gRPC's own transport failing under a call (a send onto a server killed mid-stream): INTERNAL
# from the client's core, not a model failure, which comes with Triton's own words
CORE_FAILURE = "Internal error from Core"


class StreamError(RuntimeError):
    """The stream cannot go on (server unreachable, stream refused); the message says what to
    do."""


def first_line(error: BaseException | str) -> str:
    """The first line of an error's (or a text's) words; the error's type when it has none."""
    text = str(error).strip()
    if text:
        return text.splitlines()[0]
    return type(error).__name__ if isinstance(error, BaseException) else ""


def rpc_message(error: BaseException) -> str:
    """The first line of a gRPC (or other) error's text, with its status code."""
    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        return f"{error.code().name}: {first_line(error.details() or '')}"
    return first_line(error)


def is_connection_error(error: BaseException) -> bool:
    """True for errors that mean the server is gone rather than a refused frame."""
    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        core_failure = (error.code() == grpc.StatusCode.INTERNAL
                        and CORE_FAILURE in (error.details() or ""))
        return error.code() in LOST_CODES or core_failure
    if isinstance(error, InferenceServerException):
        return error.status() in LOST_STATUSES or error.status() is None
    return True


def refused_stream(error: str) -> StreamError | None:
    """The stream error for a server that keeps no more streams or that does not know the
    identity or face choice the stream names (every frame would fail), else None."""
    refusals = (STREAM_LIMIT_ERROR, *(f"unknown {name} " for name in (IDENTITY, WHICH_FACES)))
    if not any(refusal in error for refusal in refusals):
        return None
    return StreamError(f"the server refused this stream: {first_line(error)}")
