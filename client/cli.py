"""Command-line options of `swaptron stream`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `swaptron stream`."""
    parser.add_argument("--source", default="0",
                        help="camera number (default 0), video file or image folder")
    parser.add_argument("--realtime", action="store_true",
                        help="play a file at its frame rate as a camera would; late frames drop")
    parser.add_argument("--fps", type=float, default=None, help="replay rate for --realtime")
    parser.add_argument("--loop", action="store_true", help="start the file again at its end")
    parser.add_argument("--frames", type=int, default=None, help="stop after N frames")
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address")
    parser.add_argument("--model", default="faceswap")
    parser.add_argument("--mode", choices=("stream", "serial"), default="stream",
                        help="stream: pipelined (default); serial: one blocking call per frame")
    parser.add_argument("--max-inflight", type=int, default=2,
                        help="frames waiting for an answer at once (stream mode)")
    parser.add_argument("--shm", action="store_true",
                        help="pass frames through system shared memory (server on this host)")
    parser.add_argument("--output", type=Path, default=None,
                        help="write the swapped video here (.mp4/.avi), or PNG frames into this "
                             "folder when it has no suffix")
    parser.add_argument("--report", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--no-display", action="store_true", help="no window")
    parser.add_argument("--virtual-camera", action="store_true",
                        help="send swapped frames to a virtual camera (pyvirtualcam)")
    parser.add_argument("--connect-timeout", type=float, default=30.0,
                        help="seconds to wait for the server at start and after a loss")
    parser.add_argument("--quiet", action="store_true", help="no live status line")


def run(args: argparse.Namespace) -> int:
    """Stream, then print the report table and save the JSON report."""
    from swaptron.client.metrics import StreamMetrics, build_report, format_table, write_report
    from swaptron.client.sinks import (
        DisplaySink,
        SinkError,
        VideoSink,
        VirtualCameraSink,
        display_available,
    )
    from swaptron.client.sources import FrameSource, SourceError, SourceOptions
    from swaptron.client.stream import Delivery, Streamer, StreamError, StreamOptions

    if args.max_inflight < 1:
        print("error: --max-inflight must be at least 1")
        return 2
    try:
        source = FrameSource(SourceOptions(args.source, args.realtime, args.fps, args.loop,
                                           args.frames))
    except SourceError as error:
        print(f"error: {error}")
        return 2
    options = StreamOptions(url=args.url, model=args.model, mode=args.mode,
                            max_inflight=1 if args.mode == "serial" else args.max_inflight,
                            shm=args.shm, connect_timeout_s=args.connect_timeout,
                            reconnect_timeout_s=args.connect_timeout, live=not args.quiet)
    metrics = StreamMetrics(origin=time.monotonic())
    video = VideoSink(args.output, source.fps) if args.output else None
    display = None
    camera = None
    try:
        if not args.no_display and display_available():
            display = DisplaySink(f"swaptron: {args.source}")
        if args.virtual_camera:
            first = source.next()
            if first is None:
                print("error: the source has no frame")
                return 2
            height, width = first.frame.shape[:2]
            camera = VirtualCameraSink(width, height, source.fps)
            source = FrameSource(source.options)
        streamer = Streamer(source, options, Delivery(metrics, video, display, camera))
        asyncio.run(streamer.run())
    except (StreamError, SinkError) as error:
        print(f"error: {error}")
        return 2
    finally:
        source.close()
        for sink in (video, display, camera):
            if sink is not None:
                sink.close()
    settings = {"mode": args.mode, "source": args.source, "url": args.url, "model": args.model,
                "realtime": args.realtime or source.is_camera, "source_fps": round(source.fps, 3),
                "max_inflight": options.max_inflight, "shm": args.shm,
                "output": str(args.output) if args.output else None}
    report = build_report(metrics, settings)
    print(format_table(report))
    if args.report:
        write_report(report, args.report)
        print(f"report: {args.report}")
    if video is not None:
        print(f"video: {args.output} ({video.written} frames)")
    sys.stdout.flush()
    return 0
