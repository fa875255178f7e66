"""What a bench run carries from part to part: the measurements collected so far, what every
variant's measurement shares, and the clock its progress lines read."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

Progress = Callable[[str], None]


@dataclass
class Collected:
    """What the measurements produced, filled variant by variant."""

    rows: list[dict[str, object]] = field(default_factory=list)
    errors: list[dict[str, object]] = field(default_factory=list)
    variants: list[dict[str, object]] = field(default_factory=list)
    perf_profile: dict[str, dict[str, object]] = field(default_factory=dict)
    client_runs: dict[str, dict[str, object]] = field(default_factory=dict)
    client_latencies: dict[str, list[float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    server: dict[str, object] = field(default_factory=dict)
    recovery: dict[str, object] = field(default_factory=dict)
    scan: dict[str, object] = field(default_factory=dict)
    frame_sizes: dict[str, object] = field(default_factory=dict)
    aggregate: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class MeasureContext:
    """What every variant's measurement shares."""

    work: Path
    csv_dir: Path
    video: Path
    input_files: dict[str, Path]
    estimated_fps: float
    say: Progress


def stopwatch() -> Callable[[], float]:
    """Seconds since this call."""
    started = time.monotonic()
    return lambda: round(time.monotonic() - started, 1)


def printer(elapsed: Callable[[], float]) -> Progress:
    """Progress lines prefixed with the bench's elapsed time."""
    def say(message: str) -> None:
        print(f"[bench {elapsed():6.1f} s] {message}", flush=True)
    return say
