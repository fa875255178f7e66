"""Command-line options of `swaptron stream`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from swaptron.arguments import URL_HELP, fraction, grpc_url, positive_float, positive_int
from swaptron.specs import (
    ENSEMBLE,
    FACE_CHOICES,
    STREAM,
    STREAM_CHECKED,
)

if TYPE_CHECKING:
    from swaptron.client.metrics import StreamMetrics
    from swaptron.client.sinks import VideoSink
    from swaptron.client.sources import FrameSource
    from swaptron.client.stream import StreamOptions
    from swaptron.client.video_file import VideoFormat

CODECS = ("h264", "mp4v", "mjpg")  # of --output videos (client/video_file.py writes them)
EXIT_OK = 0
EXIT_FRAMES_FAILED = 1
EXIT_ERROR = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `swaptron stream`."""
    parser.add_argument("--source", default="0",
                        help="camera number (default 0), video file or image folder")
    parser.add_argument("--realtime", action="store_true",
                        help="play a file at its frame rate as a camera would; late frames drop")
    parser.add_argument("--fps", type=positive_float, default=None,
                        help="replay rate for --realtime")
    parser.add_argument("--loop", action="store_true", help="start the file again at its end")
    parser.add_argument("--frames", type=positive_int, default=None, help="stop after N frames")
    parser.add_argument("--url", type=grpc_url, default="127.0.0.1:8001", help=URL_HELP)
    parser.add_argument("--model", default=None,
                        help=f"ensemble to stream through (default {STREAM}: the server keeps "
                             f"the stream's faces steady; {STREAM_CHECKED} with --check; "
                             f"{ENSEMBLE} swaps each frame on its own)")
    parser.add_argument("--check", action="store_true",
                        help=f"stream through {STREAM_CHECKED}: each swapped frame also gets "
                             "the forgery detector's fake score (live line, window, report)")
    parser.add_argument("--identity", default=None,
                        help="the identity faces become (default: the server's; "
                             "`swaptron identities` lists them)")
    parser.add_argument("--faces", choices=FACE_CHOICES, default=None,
                        help="which faces to swap: all (the server's default) or the largest")
    parser.add_argument("--mode", choices=("stream", "serial"), default="stream",
                        help="stream: pipelined (default); serial: one blocking call per frame")
    parser.add_argument("--max-inflight", type=positive_int, default=2,
                        help="frames waiting for an answer at once (stream mode)")
    parser.add_argument("--shm", action="store_true",
                        help="pass frames through system shared memory (server on this host; "
                             "registering needs the admin key: SWAPTRON_ADMIN_KEY or the key "
                             "file `swaptron serve` writes)")
    parser.add_argument("--output", type=Path, default=None,
                        help="write the swapped video here (.mp4/.avi: one frame per captured "
                             "frame, a dropped or failed one repeats the last swapped frame), "
                             "or PNG frames (received ones only) into this folder when it has "
                             "no suffix")
    parser.add_argument("--codec", choices=CODECS, default="h264",
                        help="the --output video's codec: h264 (default: .mp4/.mov through "
                             "PyAV, yuv420p, faststart, plays in browsers), or mp4v / mjpg "
                             "through OpenCV; .avi/.mkv take mjpg")
    parser.add_argument("--no-sign", action="store_true",
                        help="write the H.264 --output without its C2PA manifest")
    parser.add_argument("--c2pa-key", type=Path, default=None,
                        help="your C2PA signing key (PEM; with --c2pa-chain). Default: a key and "
                             "certificate made on first use in ~/.config/swaptron/c2pa")
    parser.add_argument("--c2pa-chain", type=Path, default=None,
                        help="the certificate chain (PEM) of --c2pa-key")
    parser.add_argument("--report", type=Path, default=None,
                        help="write the JSON report here (on every exit)")
    parser.add_argument("--max-failed", type=fraction, default=0.0,
                        help="fraction of captured frames that may fail before the exit code "
                             "says so (default 0: any failed frame exits 1)")
    parser.add_argument("--no-display", action="store_true", help="no window")
    parser.add_argument("--virtual-camera", action="store_true",
                        help="send swapped frames to a virtual camera (pyvirtualcam)")
    parser.add_argument("--connect-timeout", type=positive_float, default=30.0,
                        help="seconds to wait for the server at start and after a loss")
    parser.add_argument("--quiet", action="store_true", help="no live status line")


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while streaming, so the report is still written."""
    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def failed_too_many(report: dict[str, object], allowed: float) -> bool:
    """True when more than `allowed` of the captured frames failed (any, when allowed is 0)."""
    failed = int(report["frames_failed"])  # type: ignore[arg-type]
    captured = int(report["frames_captured"])  # type: ignore[arg-type]
    return failed > 0 and failed > allowed * captured


def run(args: argparse.Namespace) -> int:
    """Stream, then print the report table and save the JSON report (whatever ended the run)."""
    from swaptron.client.infer import SwapChoices
    from swaptron.client.metrics import (
        ReportError,
        StreamMetrics,
        build_report,
        check_report_path,
        format_table,
        write_report,
    )
    from swaptron.client.sinks import SinkError, VideoSink
    from swaptron.client.sources import FrameSource, SourceError, SourceOptions
    from swaptron.client.stream import StreamOptions, answer_outputs

    try:
        if args.report:
            check_report_path(args.report)
        source = FrameSource(SourceOptions(args.source, args.realtime, args.fps, args.loop,
                                           args.frames))
    except (SourceError, ReportError) as error:
        print(f"error: {error}")
        return EXIT_ERROR
    model = args.model or (STREAM_CHECKED if args.check else STREAM)
    options = StreamOptions(url=args.url, model=model, outputs=answer_outputs(model),
                            mode=args.mode,
                            max_inflight=1 if args.mode == "serial" else args.max_inflight,
                            shm=args.shm, connect_timeout_s=args.connect_timeout,
                            reconnect_timeout_s=args.connect_timeout, live=not args.quiet,
                            choices=SwapChoices(args.identity, args.faces))
    metrics = StreamMetrics(origin=time.monotonic())
    video: VideoSink | None = None
    with terminate_as_interrupt():
        try:
            if args.output:
                video = VideoSink(args.output, source.fps, source.frame_size(),
                                  video_format(args))
            outcome = stream_frames(source, options, metrics, video, args)
        except SinkError as error:
            print(f"error: {error}")
            outcome = f"error: {error}"
        finally:
            source.close()
            if video is not None:
                video.close()
        settings = {"mode": args.mode, "source": args.source, "url": args.url,
                    "model": model, "realtime": args.realtime or source.is_camera,
                    "source_fps": round(source.fps, 3), "max_inflight": options.max_inflight,
                    "shm": args.shm, "output": str(args.output) if args.output else None,
                    "outcome": outcome}
        report = build_report(metrics, settings)
        print(format_table(report))
        if args.report:
            write_report(report, args.report)
            print(f"report: {args.report}")
    if video is not None:
        print(f"video: {args.output} ({video.written} frames, {video.repeated} of them "
              "repeating the last swapped frame for a dropped or failed one)")
    sys.stdout.flush()
    if outcome.startswith("error"):
        return EXIT_ERROR
    if failed_too_many(report, args.max_failed):
        print(f"error: {report['frames_failed']} of {report['frames_captured']} frames failed "
              f"(--max-failed {args.max_failed})")
        return EXIT_FRAMES_FAILED
    return EXIT_OK


def video_format(args: argparse.Namespace) -> VideoFormat:
    """How the --output video is written and signed (the manifest names the identity)."""
    from swaptron.client.video_file import VideoFormat

    identity = args.identity or "the server's default identity"
    return VideoFormat(args.codec, not args.no_sign, identity, args.c2pa_key, args.c2pa_chain)


def stream_frames(source: FrameSource, options: StreamOptions, metrics: StreamMetrics,
                  video: VideoSink | None, args: argparse.Namespace) -> str:
    """Run the streamer with its sinks; returns how the run ended ("completed", "stopped ...",
    or "error: ...")."""
    from swaptron.client.shm import ShmError
    from swaptron.client.sinks import (
        DisplaySink,
        SinkError,
        VirtualCameraSink,
        display_available,
    )
    from swaptron.client.stream import (
        Sink,
        Streamer,
        StreamError,
        camera_sink,
        display_sink,
        video_sink,
    )

    sinks: list[Sink] = [] if video is None else [video_sink(video)]
    closers: list[Callable[[], None]] = []
    try:
        if not args.no_display and display_available():
            display = DisplaySink(f"swaptron: {args.source}")
            closers.append(display.close)
            sinks.append(display_sink(display, metrics))
        if args.virtual_camera:
            width, height = source.frame_size()
            camera = VirtualCameraSink(width, height, source.fps)
            closers.append(camera.close)
            sinks.append(camera_sink(camera))
        streamer = Streamer(source, options, sinks, metrics)
        asyncio.run(streamer.run())
        return streamer.outcome
    except (StreamError, SinkError, ShmError) as error:
        print(f"error: {error}")
        return f"error: {error}"
    except KeyboardInterrupt:
        return "stopped by a signal"
    finally:
        for close in closers:
            close()
