"""Per-frame timings and the stream report (each frame ends received, dropped or failed)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

STATUSES = ("received", "dropped", "failed")


class ReportError(ValueError):
    """The report cannot be written where asked; the message says why."""


@dataclass
class FrameTiming:
    """One frame's life, in seconds since the stream started."""

    index: int
    status: str = "captured"
    capture: float = math.nan
    send: float = math.nan
    receive: float = math.nan
    error: str | None = None
    fake_score: float | None = None  # the checked ensemble's score of the swapped frame


@dataclass
class StreamMetrics:
    """Timings of every frame, plus what the server says about its side."""

    origin: float  # time.monotonic() at start
    frames: dict[int, FrameTiming] = field(default_factory=dict)
    server: dict[str, object] = field(default_factory=dict)
    reconnects: int = 0

    def captured(self, index: int, at: float) -> None:
        """A frame left the source."""
        self.frames[index] = FrameTiming(index, "captured", capture=at - self.origin)

    def sent(self, index: int, at: float) -> None:
        """A frame's request went out."""
        self.frames[index].send = at - self.origin
        self.frames[index].status = "sent"

    def finish(self, index: int, status: str, at: float | None = None,
               error: str | None = None, fake_score: float | None = None) -> None:
        """A frame came back, was dropped, or failed."""
        timing = self.frames[index]
        timing.status = status
        if at is not None:
            timing.receive = at - self.origin
        timing.error = error
        timing.fake_score = fake_score

    def forget(self, index: int) -> None:
        """Drop a delivered frame's timing (a long-lived session keeps no history)."""
        self.frames.pop(index, None)

    def live_fake_score(self, last: int = 24) -> float | None:
        """Mean fake score of the last received frames that had one (None without any)."""
        scores = [t.fake_score for t in self.frames.values()
                  if t.status == "received" and t.fake_score is not None][-last:]
        return round(float(np.mean(scores)), 3) if scores else None

    def count(self, status: str) -> int:
        """Frames in a final status."""
        return sum(1 for t in self.frames.values() if t.status == status)

    def latencies_ms(self, start: str = "capture") -> np.ndarray:
        """Milliseconds from capture (or send) to receive of every received frame."""
        return np.array([(t.receive - getattr(t, start)) * 1000 for t in self.frames.values()
                         if t.status == "received"])

    def live(self, now: float, window_s: float = 2.0) -> tuple[float, float]:
        """(fps, p95 latency ms) over the last seconds, for the live display."""
        since = now - self.origin - window_s
        recent = [t for t in self.frames.values() if t.status == "received" and t.receive > since]
        if not recent:
            return 0.0, math.nan
        latency = [(t.receive - t.capture) * 1000 for t in recent]
        return len(recent) / window_s, float(np.percentile(latency, 95))


def summary(values: np.ndarray) -> dict[str, float]:
    """p50/p95/p99/max/mean of a series (NaN when empty)."""
    if len(values) == 0:
        return {key: math.nan for key in ("p50", "p95", "p99", "max", "mean")}
    return {"p50": round(float(np.percentile(values, 50)), 2),
            "p95": round(float(np.percentile(values, 95)), 2),
            "p99": round(float(np.percentile(values, 99)), 2),
            "max": round(float(values.max()), 2), "mean": round(float(values.mean()), 2)}


def build_report(metrics: StreamMetrics, settings: dict[str, object]) -> dict[str, object]:
    """The report: counts, FPS, latency percentiles, server times and per-frame timings."""
    timings = list(metrics.frames.values())
    unfinished = [t for t in timings if t.status not in STATUSES]
    for timing in unfinished:  # a stop in the middle: what was not answered failed
        timing.status = "failed"
        timing.error = timing.error or "stream stopped before an answer"
    received = [t for t in timings if t.status == "received"]
    if received:
        span = max(t.receive for t in received) - min(t.capture for t in timings)
        fps = len(received) / span if span > 0 else math.nan
    else:
        fps = 0.0
    return {
        **settings,
        "frames_captured": len(timings),
        "frames_sent": sum(1 for t in timings if not math.isnan(t.send)),
        "frames_received": len(received),
        "frames_dropped": metrics.count("dropped"),
        "frames_failed": metrics.count("failed"),
        "reconnects": metrics.reconnects,
        "fps": round(fps, 2),
        "latency_ms": summary(metrics.latencies_ms("capture")),
        "round_trip_ms": summary(metrics.latencies_ms("send")),
        "fake_score": fake_score_summary(timings),
        "server": metrics.server,
        "frames": [asdict(t) for t in sorted(timings, key=lambda t: t.index)],
    }


def fake_score_summary(timings: list[FrameTiming]) -> dict[str, object] | None:
    """The checked ensemble's scores over the run: mean, p95 and frames scored (None when the
    run was not checked)."""
    scores = np.array([t.fake_score for t in timings if t.fake_score is not None])
    if len(scores) == 0:
        return None
    return {"frames_scored": len(scores), "mean": round(float(scores.mean()), 4),
            "p95": round(float(np.percentile(scores, 95)), 4)}


def format_table(report: dict[str, object]) -> str:
    """Human-readable summary of a report."""
    latency = report["latency_ms"]
    trip = report["round_trip_ms"]
    lines = [
        f"mode {report.get('mode')}  source {report.get('source')}  url {report.get('url')}",
        f"frames  captured {report['frames_captured']}  sent {report['frames_sent']}  "
        f"received {report['frames_received']}  dropped {report['frames_dropped']}  "
        f"failed {report['frames_failed']}  reconnects {report['reconnects']}",
        f"fps     {report['fps']}",
        f"latency capture->receive ms  p50 {latency['p50']}  p95 {latency['p95']}  "  # type: ignore[index]
        f"p99 {latency['p99']}  max {latency['max']}",  # type: ignore[index]
        f"        send->receive ms     p50 {trip['p50']}  p95 {trip['p95']}  "  # type: ignore[index]
        f"p99 {trip['p99']}  max {trip['max']}",  # type: ignore[index]
    ]
    scores = report.get("fake_score")
    if isinstance(scores, dict):
        lines.append(f"fake score (checked) mean {scores['mean']}  p95 {scores['p95']}  "
                     f"over {scores['frames_scored']} frames with a face")
    server = report.get("server") or {}
    if isinstance(server, dict) and server.get("models"):
        parts = [f"{name} {times['queue_ms']}+{times['compute_ms']}"
                 for name, times in server["models"].items()]
        lines.append(f"server  per frame ms (queue+compute): {'  '.join(parts)}")
    return "\n".join(lines)


def check_report_path(path: Path) -> None:
    """Before streaming: ReportError with the reason when the report cannot be written there."""
    if path.is_dir():
        raise ReportError(f"cannot write the report {path}: it is a folder")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a"):
            pass
    except OSError as error:
        raise ReportError(f"cannot write the report {path}: {error.strerror}") from error
    if not existed:
        path.unlink()


def write_report(report: dict[str, object], path: Path) -> None:
    """Save the report as JSON (NaN written as null)."""
    def clean(value: object) -> object:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(report), indent=1) + "\n")
