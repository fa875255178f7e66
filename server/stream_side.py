"""What the stream models (tracker, sampler) share: calls to other models of the server, work
done beside the frames' path, and their per-stream table's bounds.

Self-contained on purpose (NumPy, threading and Triton's stub module only): `swaptron export`
copies this file as `stream_side.py` beside those models' `model.py` (the Python backend puts
the model's folder on sys.path), for every target.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

STREAM_LIMIT_ERROR = "no room for another stream"  # the client's cue (swaptron.specs)
JOIN_AFTER = 2  # frames after the one asked about that a lookout's result joins
JOIN_TIMEOUT_S = 10.0  # the most a frame waits for a result due on it


class StepFailedError(Exception):
    """A called model refused a request; carries its message and code."""

    def __init__(self, message: str, code: Any) -> None:
        super().__init__(message)
        self.code = code


def call_model(model: str, inputs: dict[str, np.ndarray], outputs: list[str]
               ) -> dict[str, np.ndarray]:
    """One request to another model of the server (BLS); StepFailedError with its message."""
    request = pb_utils.InferenceRequest(
        model_name=model, requested_output_names=outputs,
        inputs=[pb_utils.Tensor(name, value) for name, value in inputs.items()])
    response = request.exec()
    if response.has_error():
        error = response.error()
        code = error.code() if hasattr(error, "code") else pb_utils.TritonError.INTERNAL
        raise StepFailedError(error.message(), code)
    return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy()
            for name in outputs}


def call_for(positions: list[int], responses: list[Any], model: str,
             inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray] | None:
    """One call to another model for the requests at `positions`; when it refuses, each of
    them is answered with its error and None is returned."""
    try:
        return call_model(model, inputs, outputs)
    except StepFailedError as error:
        for position in positions:
            responses[position] = refusal(str(error), error.code)
        return None


def forget_idle(streams: dict[Any, Any], idle_s: float, now: float, lookout: Lookout) -> None:
    """Drop the streams (values with `last_seen`) silent for longer than `idle_s`: Triton ends
    such a sequence without telling the model."""
    for stream in [key for key, entry in streams.items() if now - entry.last_seen > idle_s]:
        del streams[stream]
        lookout.forget(stream)


def refusal(message: str, code: Any) -> Any:
    """An error response."""
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


def stream_limit_refusal(model: str, limit: int, idle_s: float) -> Any:
    """The answer to a new stream that finds `limit` streams live."""
    return refusal(f"{model}: {STREAM_LIMIT_ERROR} ({limit} streams are live, the most one "
                   f"instance keeps); end a stream (sequence_end) or wait {idle_s:g} s for an "
                   "idle one to expire", pb_utils.TritonError.UNAVAILABLE)


def sequence_flags(request: Any) -> tuple[bool, bool]:
    """Whether a request starts and whether it ends its sequence."""
    flags = request.flags()
    return (bool(flags & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START),
            bool(flags & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END))


class Lookout:
    """Work beside the frames' path that joins a stream a fixed number of frames later.

    `ask` queues a stream's inputs (copied: a request's buffers are gone after its response)
    for a worker thread; `joined`, called once on each of the stream's frames, returns the result
    on the JOIN_AFTER-th frame after the ask, waiting for it then if the worker is not done yet.
    The frame a result joins never depends on how fast the worker was, so a stream's answers
    are the same however its frames are timed."""

    def __init__(self, work: Callable[[tuple[np.ndarray, ...]], Any]) -> None:
        self.work = work
        self.waiting: dict[Any, tuple[int, tuple[np.ndarray, ...]]] = {}
        self.found: dict[Any, tuple[int, Any]] = {}
        self.asked: dict[Any, tuple[int, int]] = {}  # stream -> (ask number, frames to go)
        self.busy: set[Any] = set()
        self.asks = 0
        self.changed = threading.Condition()
        self.running = True
        self.worker = threading.Thread(target=self.loop, name="lookout", daemon=True)
        self.worker.start()

    def pending(self, stream: Any) -> bool:
        """True while a result is on its way to the stream."""
        return stream in self.asked

    def ask(self, stream: Any, *inputs: np.ndarray) -> None:
        """Work on these inputs; the result joins the stream JOIN_AFTER frames later."""
        with self.changed:
            self.asks += 1
            self.asked[stream] = (self.asks, JOIN_AFTER)
            self.waiting[stream] = (self.asks, tuple(array.copy() for array in inputs))
            self.changed.notify_all()

    def joined(self, stream: Any) -> Any | None:
        """The result that joins this frame of the stream, or None (none due, or the work
        failed or took longer than JOIN_TIMEOUT_S)."""
        with self.changed:
            if stream not in self.asked:
                return None
            number, to_go = self.asked[stream]
            if to_go > 1:
                self.asked[stream] = (number, to_go - 1)
                return None
            del self.asked[stream]
            self.changed.wait_for(lambda: self.found.get(stream, (0,))[0] == number or (
                stream not in self.busy and self.waiting.get(stream, (0,))[0] != number),
                timeout=JOIN_TIMEOUT_S)
            found = self.found.pop(stream, None)
            return found[1] if found is not None and found[0] == number else None

    def forget(self, stream: Any) -> None:
        """Drop what waits for or from an ended stream."""
        with self.changed:
            self.waiting.pop(stream, None)
            self.found.pop(stream, None)
            self.asked.pop(stream, None)

    def loop(self) -> None:
        """Work on one waiting stream at a time, until stopped."""
        while True:
            with self.changed:
                while self.running and not self.waiting:
                    self.changed.wait()
                if not self.running:
                    return
                stream = next(iter(self.waiting))
                number, inputs = self.waiting.pop(stream)
                self.busy.add(stream)
            try:
                result = self.work(inputs)
            except StepFailedError:
                result = None  # the frame's own path reports a refused frame
            with self.changed:
                self.busy.discard(stream)
                if result is not None:
                    self.found[stream] = (number, result)
                self.changed.notify_all()

    def stop(self) -> None:
        """End the worker after its current work."""
        with self.changed:
            self.running = False
            self.changed.notify_all()
        self.worker.join(timeout=30)
