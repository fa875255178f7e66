"""Per-stream state of a stateful network on the python-ort target (Triton's implicit state
does this for the onnxruntime and tensorrt backends; the Python backend has no state API).

Each Triton sequence (a video stream, keyed by its correlation id) owns the arrays its graph
wrote after its last frame. The table is bounded: a stream that has no state and finds `limit`
streams live is refused with an error naming the limit, and a stream silent for the sequence
batcher's idle time is dropped (Triton ends such a sequence without telling the model). Kept
free of Triton's stub module so that it can be tested anywhere.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from swaptron.specs import STREAM_LIMIT_ERROR

StreamId = Hashable  # Triton's correlation id: an int, or a str for string ids


@dataclass
class Stream:
    """The state a stream's next frame starts from, and when the stream was last served."""

    tensors: dict[str, np.ndarray]
    last_seen: float


class StreamLimitError(Exception):
    """A new stream found every place taken; the message says what to do."""


class StreamStates:
    """The states of live streams, by stream id."""

    def __init__(self, model: str, zeros: dict[str, np.ndarray], limit: int,
                 idle_s: float) -> None:
        """`zeros`: each state before a stream's first frame, batch axis 1."""
        self.model = model
        self.zeros = zeros
        self.limit = limit
        self.idle_s = idle_s
        self.streams: dict[StreamId, Stream] = {}

    def before(self, stream: StreamId, start: bool, now: float
               ) -> tuple[dict[str, np.ndarray], bool]:
        """The state a frame starts from and whether the stream starts afresh (its first
        frame, or a stream whose state is gone: ended, idle or refused before).
        StreamLimitError when a stream without state finds `limit` streams live."""
        self.evict(now)
        entry = self.streams.get(stream)
        if entry is None and len(self.streams) >= self.limit:
            raise StreamLimitError(
                f"{self.model}: {STREAM_LIMIT_ERROR} ({self.limit} streams are live, the most "
                f"one instance keeps); end a stream (sequence_end) or wait {self.idle_s:g} s "
                "for an idle one to expire")
        if entry is None or start:
            return dict(self.zeros), True
        entry.last_seen = now
        return entry.tensors, False

    def after(self, stream: StreamId, tensors: dict[str, np.ndarray], end: bool,
              now: float) -> None:
        """Keep the state a frame left, or free the stream at its end."""
        if end:
            self.streams.pop(stream, None)
        else:
            self.streams[stream] = Stream(tensors, now)

    def evict(self, now: float) -> None:
        """Drop the streams silent for longer than the idle time."""
        stale = [key for key, entry in self.streams.items() if now - entry.last_seen > self.idle_s]
        for key in stale:
            del self.streams[key]

    def __len__(self) -> int:
        return len(self.streams)


def rounds(streams: Sequence[StreamId]) -> list[list[int]]:
    """Positions of a batch split so that no round holds two frames of one stream (the Oldest
    batcher sends one per stream at a time; this keeps the model right if it ever does not)."""
    found: list[list[int]] = []
    depth: dict[StreamId, int] = {}
    for position, stream in enumerate(streams):
        level = depth.get(stream, 0)
        depth[stream] = level + 1
        if level == len(found):
            found.append([])
        found[level].append(position)
    return found
