"""The bars of the issue, checked on every run: value, bar, met, and the gap when missed."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

REFERENCE_CHAIN_FPS = 80.0  # the machine the issues' absolute speed bars were set on


@dataclass(frozen=True)
class Bar:
    """A target: what is measured, the bar, and which side of it passes. A `scaled` bar was set
    where the in-process chain runs at REFERENCE_CHAIN_FPS; it is scaled by this machine's
    chain FPS / 80 (throughputs down, latencies up) and both figures are reported."""

    name: str
    description: str
    bar: float
    unit: str
    higher_is_better: bool
    scaled: bool = False


BARS = (
    Bar("realtime_24_dropped_pct", "realtime at 24 FPS: frames dropped or failed", 2.0, "%",
        higher_is_better=False),
    Bar("realtime_24_p95_ms", "realtime at 24 FPS: p95 capture-to-receive latency", 50.0, "ms",
        higher_is_better=False),
    Bar("unpaced_fps", "unpaced stream throughput", 30.0, "FPS", higher_is_better=True),
    Bar("serving_ratio", "ensemble throughput at concurrency 1 / in-process chain", 0.9, "x",
        higher_is_better=True),
    Bar("unpaced_chain_ratio", "unpaced streaming throughput / in-process chain", 0.95, "x",
        higher_is_better=True),
    Bar("frame_1080_cost_ratio", "ensemble p50 at concurrency 1: a 1920x1080 frame (the face "
        "found) / the same 720x528 frame", 1.5, "x", higher_is_better=False),
    Bar("aggregate_realtime_ratio", "4 concurrent realtime streams at 24 x chain FPS / 80 each: "
        "frames/s of those with <= 2% dropped and p95 <= 2x one stream's alone / in-process "
        "chain", 1.2, "x", higher_is_better=True),
    Bar("server_rss_mb", "server plus backend processes, RSS", 1000.0, "MB",
        higher_is_better=False),
    Bar("recovery_s", "a killed Python stub: seconds until a frame is swapped again", 10.0, "s",
        higher_is_better=False),
    Bar("scan_fps", "`swaptron scan` of Megamind.avi, unpaced, one face per frame", 60.0, "FPS",
        higher_is_better=True, scaled=True),
    Bar("checked_realtime_24_p95_ms", "faceswap_checked at 24 FPS: p95 capture-to-receive",
        60.0, "ms", higher_is_better=False, scaled=True),
    Bar("checked_realtime_24_dropped_pct", "faceswap_checked at 24 FPS: frames dropped or failed",
        2.0, "%", higher_is_better=False),
)


@dataclass(frozen=True)
class TargetResult:
    """One target's outcome; `met` is None when the value could not be measured. For a scaled
    bar, `bar` is this machine's and `bar_at_80_fps` the issue's."""

    name: str
    description: str
    value: float | None
    bar: float
    unit: str
    comparison: str
    met: bool | None
    gap: float | None
    gap_text: str
    bar_at_80_fps: float | None = None


def number(value: object) -> float | None:
    """A finite float, or None (missing, None or NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def scaled_bar(bar: Bar, chain_fps: float | None) -> Bar:
    """The bar for this machine: a scaled bar times chain FPS / 80 (throughput) or divided by
    it (latency); unchanged when not scaled or the chain was not measured."""
    if not bar.scaled or not chain_fps:
        return bar
    factor = chain_fps / REFERENCE_CHAIN_FPS
    value = bar.bar * factor if bar.higher_is_better else bar.bar / factor
    return Bar(bar.name, bar.description, round(value, 2), bar.unit, bar.higher_is_better)


def check(bar: Bar, value: float | None) -> TargetResult:
    """Compare a value with its bar; the gap says by how much a missed bar is missed."""
    comparison = ">=" if bar.higher_is_better else "<="
    if value is None:
        return TargetResult(bar.name, bar.description, None, bar.bar, bar.unit, comparison,
                            None, None, "not measured")
    met = value >= bar.bar if bar.higher_is_better else value <= bar.bar
    if met:
        return TargetResult(bar.name, bar.description, round(value, 3), bar.bar, bar.unit,
                            comparison, True, None, "met")
    gap = bar.bar - value if bar.higher_is_better else value - bar.bar
    if bar.higher_is_better:
        share = f"{value / bar.bar:.0%} of the bar" if bar.bar else ""
        text = f"short by {gap:.3g} {bar.unit} ({share})"
    else:
        factor = f"{value / bar.bar:.2f}x the bar" if bar.bar else ""
        text = f"over by {gap:.3g} {bar.unit} ({factor})"
    return TargetResult(bar.name, bar.description, round(value, 3), bar.bar, bar.unit,
                        comparison, False, round(gap, 3), text)


def ratio(numerator: object, denominator: object) -> float | None:
    """numerator / denominator when both are measured and the denominator is positive."""
    top, bottom = number(numerator), number(denominator)
    if top is None or bottom is None or bottom <= 0:
        return None
    return top / bottom


def measured_values(baselines: dict[str, object], ensemble_c1_throughput: float | None,
                    server_rss_mb: float | None, recovery_s: object = None,
                    scan_fps: object = None, frame_cost_ratio: object = None,
                    aggregate_fps: object = None) -> dict[str, float | None]:
    """The value behind each bar, from the baselines, perf_analyzer, memory and recovery."""
    return {
        "realtime_24_dropped_pct": number(baselines.get("realtime_24_dropped_pct")),
        "realtime_24_p95_ms": number(baselines.get("realtime_24_p95_ms")),
        "unpaced_fps": number(baselines.get("stream_fps")),
        "serving_ratio": ratio(ensemble_c1_throughput, baselines.get("in_process_fps")),
        "unpaced_chain_ratio": ratio(baselines.get("stream_fps"),
                                     baselines.get("in_process_fps")),
        "frame_1080_cost_ratio": number(frame_cost_ratio),
        "aggregate_realtime_ratio": ratio(aggregate_fps, baselines.get("in_process_fps")),
        "server_rss_mb": number(server_rss_mb),
        "recovery_s": number(recovery_s),
        "scan_fps": number(scan_fps),
        "checked_realtime_24_p95_ms": number(baselines.get("checked_realtime_24_p95_ms")),
        "checked_realtime_24_dropped_pct": number(
            baselines.get("checked_realtime_24_dropped_pct")),
    }


def evaluate(values: dict[str, float | None], chain_fps: float | None = None
             ) -> list[dict[str, object]]:
    """Every bar checked against its value, scaled bars for this machine (JSON-ready)."""
    results = []
    for bar in BARS:
        result = asdict(check(scaled_bar(bar, chain_fps), values.get(bar.name)))
        if bar.scaled and chain_fps:
            result["bar_at_80_fps"] = bar.bar
        results.append(result)
    return results
