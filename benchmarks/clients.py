"""Client baselines: `swaptron stream` in serial, pipelined and realtime modes, and its reports."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

REALTIME_FPS = (24, 60)


class ClientRunError(RuntimeError):
    """`swaptron stream` failed; the message holds its output."""


@dataclass(frozen=True)
class ClientRun:
    """One `swaptron stream` run: a key for the results and its options."""

    key: str
    description: str
    options: tuple[str, ...]
    frames: int


def frames_for(seconds: float, fps: float, minimum: int = 10) -> int:
    """Frames that last about `seconds` at `fps` (at least `minimum`)."""
    return max(minimum, math.ceil(seconds * fps))


def serial_run(seconds: float, estimated_fps: float) -> ClientRun:
    """The prototype's way, sized to last about `seconds` at `estimated_fps`."""
    return ClientRun("serial", "prototype: one blocking request per frame",
                     ("--mode", "serial"), frames_for(seconds, estimated_fps))


def streaming_runs(seconds: float, estimated_fps: float, inflight: tuple[int, ...]
                   ) -> list[ClientRun]:
    """Unpaced pipelined runs (one per window), then realtime runs at 24 and 60 FPS.

    Unpaced runs get about `seconds` of frames at `estimated_fps`.
    """
    runs = []
    for window in inflight:
        key = "stream" if window == inflight[0] else f"stream_inflight{window}"
        runs.append(ClientRun(key, f"pipelined, unpaced, {window} frames in flight",
                              ("--max-inflight", str(window)),
                              frames_for(seconds, estimated_fps)))
    for fps in REALTIME_FPS:
        runs.append(ClientRun(f"realtime_{fps}", f"source paced at {fps} FPS, late frames drop",
                              ("--realtime", "--fps", str(fps)), frames_for(seconds, fps)))
    return runs


def checked_run(seconds: float) -> ClientRun:
    """Realtime at 24 FPS through `faceswap_checked` (`swaptron stream --check`)."""
    return ClientRun("checked_realtime_24", "faceswap_checked at 24 FPS: the swap and its fake "
                     "score", ("--realtime", "--fps", "24", "--check"), frames_for(seconds, 24))


def scan_throughput(url: str, video: Path) -> dict[str, object]:
    """`swaptron scan` of the demo video, unpaced: frames per second and the verdict."""
    from swaptron.client.scan import ScanError, scan
    from swaptron.client.sources import FrameSource, SourceOptions
    from swaptron.client.stream import StreamError

    source = FrameSource(SourceOptions(str(video)))
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            report = scan(source, url)
    except (ScanError, StreamError) as error:
        return {"error": str(error)}
    finally:
        source.close()
    return {key: report[key] for key in ("frames_per_second", "frames_read", "verdict",
                                         "majority_vote", "mean_score", "detector")}


def command_line(run: ClientRun, video: Path, url: str, report: Path) -> list[str]:
    """The `swaptron stream` arguments of a run (the same a user would type)."""
    return ["--source", str(video), "--loop", "--frames", str(run.frames), "--url", url,
            "--no-display", "--quiet", "--report", str(report), *run.options]


def run_client(run: ClientRun, video: Path, url: str, report: Path) -> dict[str, object]:
    """Run `swaptron stream` in this process and return its JSON report."""
    from swaptron.client.cli import add_arguments
    from swaptron.client.cli import run as stream

    parser = argparse.ArgumentParser(prog="swaptron stream")
    add_arguments(parser)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = stream(parser.parse_args(command_line(run, video, url, report)))
    if code != 0 or not report.is_file():
        raise ClientRunError(f"`swaptron stream` ({run.key}) exited {code}: "
                             f"{output.getvalue().strip()[-600:]}")
    return json.loads(report.read_text())


def latencies(report: dict[str, object]) -> list[float]:
    """Capture-to-receive milliseconds of every received frame of a report."""
    frames = report.get("frames")
    if not isinstance(frames, list):
        return []
    return [round((f["receive"] - f["capture"]) * 1000.0, 2) for f in frames
            if f.get("status") == "received" and f.get("receive") is not None]


def summary(run: ClientRun, report: dict[str, object]) -> dict[str, object]:
    """What the results keep of a report (no per-frame list)."""
    captured = int(report.get("frames_captured") or 0)
    dropped = int(report.get("frames_dropped") or 0)
    failed = int(report.get("frames_failed") or 0)
    server = report.get("server")
    return {
        "description": run.description,
        "command": "swaptron stream " + " ".join(run.options),
        "frames_captured": captured,
        "frames_received": report.get("frames_received"),
        "frames_dropped": dropped,
        "frames_failed": failed,
        "dropped_pct": round(100.0 * (dropped + failed) / captured, 2) if captured else None,
        "source_fps": report.get("source_fps"),
        "fps": report.get("fps"),
        "latency_ms": report.get("latency_ms"),
        "round_trip_ms": report.get("round_trip_ms"),
        "server_models": server.get("models", {}) if isinstance(server, dict) else {},
    }
