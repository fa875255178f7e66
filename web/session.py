"""One browser session: JPEG frames from a websocket into a Triton stream, swapped JPEGs back.

A session drives the client's transport core (client/transport.py) as `swaptron stream` does. The
websocket handler decodes each frame and offers it to the transport: a newer frame replaces one
still waiting (the page is told that one dropped). The transport keeps a bounded window in flight
on one stream with the session's own sequence id, and ends the sequence when the session ends,
so the server frees the stream's state at once. Each answer goes back to the page
with the page's own capture time, so the page measures glass to glass.

Wire format (the page's app.js speaks the same):
- page -> gateway, binary: float64 little-endian capture time (the page's performance.now(),
  ms), then one JPEG;
- page -> gateway, text: {"type": "choose", "identity": name|null, "faces": "all"|"largest"};
- gateway -> page, binary: uint32 little-endian header length, a JSON header {"t": capture
  time, "faces": [[x1, y1, x2, y2, score], ...] in pixels, "fake_score": float|null, "verdict":
  "likely real"|"uncertain"|"likely swapped"|null}, then the swapped JPEG;
- gateway -> page, text: {"type": "hello" | "dropped" | "failed" | "refused" | "busy" | "error",
  ...}.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np

from swaptron.client.connection import Connection
from swaptron.client.infer import SwapChoices
from swaptron.client.sources import Captured
from swaptron.client.transport import Outcome, StreamOptions, Transport, frame_fake_score
from swaptron.specs import (
    FACE_CHOICES,
    FACES,
    FAKE_SCORE,
    STRICTEST_FRAME_LIMITS,
    SWAPPED,
    identity_refusal,
)
from swaptron.verdicts import Cuts

TIMESTAMP = struct.Struct("<d")
HEADER_LENGTH = struct.Struct("<I")


class PageMessageError(ValueError):
    """A page message the gateway refuses (a malformed frame, an unknown choice); the message
    names what was wrong."""


@dataclass(frozen=True)
class SessionLimits:
    """What one session may do."""

    max_fps: float = 30.0  # frames a second a page may send; faster ones are refused
    max_inflight: int = 2  # frames waiting for Triton at once (the newest waiting frame wins)
    jpeg_quality: int = 85  # of the swapped frames sent back


def decode_frame(message: bytes) -> tuple[float, np.ndarray]:
    """(page capture time in ms, BGR frame [H,W,3] as FRAME takes it) of a page's binary
    message; PageMessageError naming the fault for a short message, bytes that are not a JPEG,
    or a frame outside the server's size limits."""
    if len(message) <= TIMESTAMP.size:
        raise PageMessageError(f"a frame message is an 8-byte timestamp and a JPEG; got "
                           f"{len(message)} bytes")
    (page_time,) = TIMESTAMP.unpack_from(message)
    if not np.isfinite(page_time):
        raise PageMessageError("the frame's timestamp is not a finite number")
    jpeg = memoryview(message)[TIMESTAMP.size:]
    size = jpeg_size(jpeg)
    if size is None:
        raise PageMessageError("the frame is not a JPEG the gateway can decode")
    check_frame_size(*size)  # before decoding: a 700-byte JPEG can declare 30000x30000
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise PageMessageError("the frame is not a JPEG the gateway can decode")
    check_frame_size(image.shape[1], image.shape[0])
    return page_time, image


def check_frame_size(width: int, height: int) -> None:
    """PageMessageError naming the size of a frame outside the strictest target's limits."""
    rule = STRICTEST_FRAME_LIMITS.rule_broken_by(width, height)
    if rule is not None:
        raise PageMessageError(f"the frame is {width}x{height} pixels; {rule}")


SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers, not DHT/JPG/DAC


def jpeg_size(jpeg: memoryview) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, read without decoding; None when the bytes
    are not a JPEG with one before its scan data."""
    if bytes(jpeg[:2]) != b"\xff\xd8":
        return None
    position = 2
    while position + 4 <= len(jpeg):
        if jpeg[position] != 0xFF:
            return None
        marker = jpeg[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = int.from_bytes(jpeg[position + 2:position + 4], "big")
        if marker in SOF_MARKERS:
            if position + 9 > len(jpeg):
                return None
            height = int.from_bytes(jpeg[position + 5:position + 7], "big")
            width = int.from_bytes(jpeg[position + 7:position + 9], "big")
            return width, height
        if marker == 0xDA or length < 2:
            return None
        position += 2 + length
    return None


def encode_answer(page_time: float, tensors: dict[str, np.ndarray], quality: int,
                  timing: dict[str, float], cuts: Cuts | None = None) -> bytes:
    """The binary message of a swapped frame: header length, JSON header (with the gateway's
    own milliseconds: waiting for a window slot, and Triton's round trip; the frame's verdict
    when the served detector's `cuts` are known), JPEG."""
    swapped = tensors[SWAPPED]
    ok, jpeg = cv2.imencode(".jpg", swapped,
                            (cv2.IMWRITE_JPEG_QUALITY, quality))
    if not ok:
        raise PageMessageError("the swapped frame could not be encoded as JPEG")
    faces = tensors.get(FACES)
    boxes = [] if faces is None else [
        [round(float(v), 1) for v in row[:4]] + [round(float(row[4]), 3)]
        for row in faces if row[4] > 0]
    fake_score = frame_fake_score(tensors.get(FAKE_SCORE))
    verdict = None if fake_score is None or cuts is None else cuts.band(fake_score)
    header = json.dumps({"t": page_time, "faces": boxes, "fake_score": fake_score,
                         "verdict": verdict, "gateway_ms": timing}).encode()
    return HEADER_LENGTH.pack(len(header)) + header + jpeg.tobytes()


class RateCap:
    """A token bucket: at most `rate` frames a second, with a burst of two."""

    def __init__(self, rate: float, burst: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.clock = clock
        self.last = clock()

    def allow(self) -> bool:
        """True when one more frame fits under the cap now."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


Send = Callable[[bytes | str], Awaitable[None]]


class PageSession:
    """One websocket's stream: frames in through the transport core, outcomes back to the
    page."""

    def __init__(self, connection: Connection, options: StreamOptions, limits: SessionLimits,
                 send: Send, identities: list[str], cuts: Cuts | None = None) -> None:
        self.limits = limits
        self.cuts = cuts
        self.send = send
        self.identities = identities
        self.transport = Transport(connection, replace(options, max_inflight=limits.max_inflight,
                                                       live=False))
        self.page_times: dict[int, float] = {}
        self.rate = RateCap(limits.max_fps)
        self.next_index = 0

    def choose(self, message: dict[str, object]) -> None:
        """Apply a page's identity and face choice to the next frames; PageMessageError naming an
        unknown one."""
        identity, faces = message.get("identity"), message.get("faces")
        refusal = None if identity is None else identity_refusal(str(identity), self.identities,
                                                                  None)
        if refusal is not None:
            raise PageMessageError(refusal)
        if faces is not None and faces not in FACE_CHOICES:
            raise PageMessageError(f"unknown faces {faces!r}; choose {' or '.join(FACE_CHOICES)}")
        self.transport.choose(SwapChoices(identity if isinstance(identity, str) else None,
                                          faces if isinstance(faces, str) else None))

    async def frame(self, message: bytes) -> None:
        """A page frame: refused over the rate cap or when malformed, else offered to the
        stream (a frame still waiting is dropped for it)."""
        if not self.rate.allow():
            page_time = TIMESTAMP.unpack_from(message)[0] if len(message) >= 8 else None
            await self.send(json.dumps({"type": "dropped", "t": page_time,
                                        "reason": "over the session's frame-rate cap "
                                                  f"({self.limits.max_fps:g} fps)"}))
            return
        page_time, image = await asyncio.to_thread(decode_frame, message)
        item = Captured(self.next_index, image, time.monotonic())
        self.next_index += 1
        self.page_times[item.index] = page_time
        await self.transport.offer(item)

    async def run(self) -> None:
        """Stream until the page leaves or the stream ends, sending each outcome to the page in
        the order it happened; StreamError when the server refuses or cannot be reached."""
        async for outcome in self.transport.answers():
            await self.deliver(outcome)

    async def deliver(self, outcome: Outcome) -> None:
        """One frame's outcome to the page: the swapped JPEG, or why it has none."""
        index = outcome.item.index
        page_time = self.page_times.pop(index, None)
        self.transport.metrics.forget(index)
        if outcome.status == "received":
            timing = {"wait": round((outcome.timing.send - outcome.timing.capture) * 1000, 1),
                      "triton": round((outcome.timing.receive - outcome.timing.send) * 1000, 1)}
            try:
                answer = await asyncio.to_thread(encode_answer, page_time, outcome.tensors,
                                                 self.limits.jpeg_quality, timing, self.cuts)
            except PageMessageError as error:
                await self.send(json.dumps({"type": "failed", "t": page_time,
                                            "error": str(error)}))
                return
            await self.send(answer)
        else:
            await self.send(json.dumps({"type": outcome.status, "t": page_time,
                                        "error": outcome.error}))

    async def finish(self) -> None:
        """The page left: stop taking frames, let what is in flight end, end the sequence."""
        self.transport.stop()
        await self.transport.end()
