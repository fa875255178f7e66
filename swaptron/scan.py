"""`swaptron scan SOURCE`: a verdict on a clip, from the served forgery detector."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from swaptron.arguments import URL_HELP, grpc_url, positive_int

EXIT_OK = 0
EXIT_ERROR = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `swaptron scan`."""
    parser.add_argument("source", help="video file, image, image folder, or camera number")
    parser.add_argument("--url", type=grpc_url, default=None,
                        help=f"{URL_HELP} (default: start the embedded server)")
    parser.add_argument("--report", type=Path, default=None,
                        help="JSON: per-frame, per-face scores and boxes, and the verdict")
    parser.add_argument("--plot", type=Path, default=None,
                        help="PNG: the score over time, the threshold, the stretches above it")
    parser.add_argument("--output", type=Path, default=None,
                        help="annotated video (.mp4/.avi): boxes coloured by score")
    parser.add_argument("--frames", type=positive_int, default=None, help="stop after N frames")
    parser.add_argument("--max-inflight", type=positive_int, default=3)


@contextmanager
def server_url(url: str | None) -> Iterator[str]:
    """The given URL, or the embedded server's for the run."""
    if url is not None:
        yield url
        return
    from swaptron.assets import project_dir
    from swaptron.embedded import embedded_server
    from swaptron.specs import SCAN

    with embedded_server(project_dir() / "model_repository", needs=(SCAN,)) as server:
        yield server.grpc_url


def run(args: argparse.Namespace) -> int:
    """Scan, print the verdict, write what was asked for."""
    from swaptron.client.metrics import ReportError, check_report_path
    from swaptron.client.scan import ScanError, scan
    from swaptron.client.scan_report import plot_scores, summary_lines
    from swaptron.client.sinks import SinkError, VideoSink
    from swaptron.client.sources import FrameSource, SourceError, SourceOptions
    from swaptron.client.stream import StreamError
    from swaptron.client.video_file import VideoFormat
    from swaptron.server.launcher import ServerError

    try:
        for path in (args.report, args.plot):
            if path is not None:
                check_report_path(path)
        source = FrameSource(SourceOptions(args.source, max_frames=args.frames))
    except (SourceError, ReportError) as error:
        print(f"error: {error}")
        return EXIT_ERROR
    video = None
    try:
        if args.output is not None:
            video = VideoSink(args.output, source.fps, source.frame_size(),
                              VideoFormat(sign=False))  # an annotated scan: nothing swapped
        with server_url(args.url) as url:
            report = scan(source, url, video, args.max_inflight)
    except (ScanError, StreamError, SinkError, SourceError, ServerError) as error:
        print(f"error: {error}")
        return EXIT_ERROR
    finally:
        source.close()
        if video is not None:
            video.close()
    print("\n".join(summary_lines(report)))
    if args.report is not None:
        args.report.write_text(json.dumps(report, indent=1) + "\n")
        print(f"report: {args.report}")
    if args.plot is not None:
        plot_scores(report, args.plot)
        print(f"plot: {args.plot}")
    if args.output is not None:
        print(f"annotated video: {args.output}")
    sys.stdout.flush()
    return EXIT_OK
