"""`swaptron stream`: a source's frames through the transport core to the user's sinks.

The driver reads the source (a camera or a paced file replaces a waiting frame; an unpaced file
is read when the stream asks for a frame, as a camera that always has a fresh one), hands each
frame to the `Transport`, and gives every outcome to the sinks: the video file, the window, the
virtual camera, or a scanner's collector. It prints the live line, turns stop signals into a
drained end, and takes the server's statistics around the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Sequence

from swaptron.client.connection import Connection, statistics_delta
from swaptron.client.errors import CONNECTION_ERRORS, StreamError, refused_stream
from swaptron.client.metrics import StreamMetrics
from swaptron.client.sinks import DisplaySink, SinkClosed, VideoSink, VirtualCameraSink
from swaptron.client.sources import FrameSource
from swaptron.client.transport import Outcome, StreamOptions, Transport
from swaptron.specs import CHECKED, FACES, FAKE_SCORE, STREAM_CHECKED, SWAPPED

__all__ = ["StreamError", "StreamOptions", "Streamer", "answer_outputs", "refused_stream"]

Sink = Callable[[Outcome], None]  # takes every frame's outcome; may raise SinkClosed


def answer_outputs(model: str) -> tuple[str, ...]:
    """The outputs a stream asks of an ensemble: the swapped frame and the faces, and the fake
    score from a checked ensemble."""
    return (SWAPPED, FACES, FAKE_SCORE) if model in (CHECKED, STREAM_CHECKED) else (SWAPPED,
                                                                                     FACES)


def video_sink(video: VideoSink) -> Sink:
    """Write swapped frames; a dropped or failed frame repeats the last one."""
    def take(outcome: Outcome) -> None:
        swapped = outcome.swapped
        if outcome.status != "received":
            video.put(outcome.item.index, None)
        elif swapped is not None:
            video.put(outcome.item.index, swapped)
    return take


def camera_sink(camera: VirtualCameraSink) -> Sink:
    """Send swapped frames to the virtual camera."""
    def take(outcome: Outcome) -> None:
        if outcome.swapped is not None:
            camera.put(outcome.swapped)
    return take


def display_sink(display: DisplaySink, metrics: StreamMetrics) -> Sink:
    """Show each original and swapped frame with the live figures; SinkClosed once the user
    closed the window."""
    def take(outcome: Outcome) -> None:
        if outcome.swapped is not None:
            fps, p95 = metrics.live(time.monotonic())
            status = f"{fps:.1f} fps  p95 {p95:.0f} ms"
            if outcome.timing.fake_score is not None:
                status += f"  fake score {outcome.timing.fake_score:.2f}"
            display.show(outcome.item.frame, outcome.swapped, status)
        if display.closed:
            raise SinkClosed("the window was closed")
    return take


class Streamer:
    """One client run: capture, stream, deliver, report."""

    def __init__(self, source: FrameSource, options: StreamOptions, sinks: Sequence[Sink] = (),
                 metrics: StreamMetrics | None = None) -> None:
        self.source = source
        self.options = options
        self.sinks = tuple(sinks)
        self.metrics = metrics or StreamMetrics(origin=time.monotonic())
        self.outcome = "completed"
        self._transport: Transport | None = None

    def stop(self, why: str = "stopped by a signal") -> None:
        """Finish what is in flight, then end the run."""
        self.outcome = why
        if self._transport is not None:
            self._transport.stop()

    async def run(self) -> None:
        """Connect, stream until the source ends or a stop, reconnecting when needed.

        `outcome` says how the run ended; a StreamError means the server could not be reached
        or refused the stream.
        """
        loop = asyncio.get_running_loop()
        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        for signum in previous:
            loop.add_signal_handler(signum, self.stop)
        try:
            async with Connection.open(self.options.url) as connection:
                await self.stream_on(connection)
        finally:
            for signum, handler in previous.items():
                loop.remove_signal_handler(signum)
                signal.signal(signum, handler)

    async def stream_on(self, connection: Connection) -> None:
        """Capture and stream on a connection; server statistics around the run."""
        transport = self._transport = Transport(connection, self.options, self.metrics)
        if not await transport.ready():
            return
        before: dict[str, dict[str, int]] = {}
        with contextlib.suppress(*CONNECTION_ERRORS):
            before = await connection.statistics()
        tasks = [asyncio.create_task(self.capture(transport))]
        if self.options.live:
            tasks.append(asyncio.create_task(self.live_status()))
        try:
            async for outcome in transport.answers():
                self.deliver(outcome)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.options.live:
                print(file=sys.stderr)
            with contextlib.suppress(*CONNECTION_ERRORS):
                after = await connection.statistics()
                self.metrics.server = statistics_delta(before, after)

    def deliver(self, outcome: Outcome) -> None:
        """Hand an outcome to every sink; a closed sink (the window) stops the run."""
        for sink in self.sinks:
            try:
                sink(outcome)
            except SinkClosed as closed:
                self.stop(f"stopped: {closed}")

    async def capture(self, transport: Transport) -> None:
        """Read frames; paced sources replace waiting frames, others wait for room."""
        try:
            while not transport.stopping:
                if not self.source.paced and not await transport.wanted():
                    break
                item = await asyncio.to_thread(self.source.next)
                if item is None:
                    break
                if self.source.paced:
                    await transport.offer(item)
                else:
                    await transport.put(item)
        finally:
            await transport.end()

    async def live_status(self) -> None:
        """Print FPS and p95 latency once a second."""
        metrics = self.metrics
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
