"""perf_analyzer on one served model: each concurrency level measured on its own (again, looser,
when noise kept it from being stable), with Triton's statistics read around every level."""

from __future__ import annotations

import subprocess
from pathlib import Path

from swaptron.benchmarks import perf_analyzer, variants
from swaptron.benchmarks.plan import BenchPlan
from swaptron.benchmarks.state import Collected, MeasureContext

# perf_analyzer's words for a level that noise, not the server, kept from being measured
NOISE_FAILURES = ("stable", "time window", "time interval")
ANY_SPREAD_WINDOW = 16  # requests per window when a level is measured again, accepting any spread


def safe_statistics(url: str) -> dict[str, dict[str, int]]:
    """Triton's statistics, or {} when the server does not answer."""
    from tritonclient.utils import InferenceServerException

    try:
        return variants.statistics(url)
    except InferenceServerException:
        return {}


def measure_level(model: str, url: str, csv_path: Path, level: int, input_data: Path,
                  plan: BenchPlan) -> tuple[list[perf_analyzer.PerfRow], bool]:
    """One perf_analyzer level; when a noisy machine keeps it from being stable within 25%,
    measured again in windows of a request count, accepting any spread (the row is then marked
    not stable)."""
    timeout = 60.0 + plan.measurement_ms * 12 / 1000.0
    try:
        return perf_analyzer.run(model, url, csv_path, concurrency=(level,),
                                 measurement_ms=plan.measurement_ms, input_data=input_data,
                                 timeout_s=timeout), True
    except perf_analyzer.PerfAnalyzerError as error:
        if not any(marker in str(error) for marker in NOISE_FAILURES):
            raise
    return perf_analyzer.run(model, url, csv_path, concurrency=(level,),
                             measurement_ms=plan.measurement_ms, input_data=input_data,
                             stability_percentage=perf_analyzer.ANY_SPREAD_PERCENTAGE,
                             count_window=ANY_SPREAD_WINDOW, timeout_s=timeout), False


def profile_model(url: str, variant: str, model: str, levels: tuple[int, ...],
                  input_data: Path, plan: BenchPlan, context: MeasureContext,
                  found: Collected) -> None:
    """perf_analyzer at each level (one call per level, so one failure costs one level).

    Per-level CSVs stay in the work folder; their merge goes to `<csv_dir>/<variant>-<model>.csv`.
    """
    say = context.say
    work = context.work / "perf"
    work.mkdir(parents=True, exist_ok=True)
    merged: list[str] = []
    for level in levels:
        before = safe_statistics(url)
        level_csv = work / f"{variant}-{model}-c{level}.csv"
        try:
            rows, stable = measure_level(model, url, level_csv, level, input_data, plan)
        except (perf_analyzer.PerfAnalyzerError, subprocess.TimeoutExpired) as error:
            say(f"perf_analyzer {variant}/{model} c{level} failed: {error}")
            found.errors.append({"variant": variant, "model": model, "concurrency": level,
                                 "error": str(error)})
            continue
        models = variants.statistics_delta(before, safe_statistics(url))
        found.perf_profile.setdefault(variant, {})[f"{model}@c{level}"] = models
        for row in rows:
            found.rows.append({"variant": variant, "model": model, "concurrency": row.concurrency,
                               "throughput": round(row.throughput, 2),
                               "p50_ms": round(row.p50_ms, 2), "p95_ms": round(row.p95_ms, 2),
                               "p99_ms": round(row.p99_ms, 2),
                               "server_queue_ms": round(row.server_queue_ms, 2),
                               "server_compute_ms": round(row.server_compute_ms, 2),
                               "stable": stable})
            say(f"{variant}/{model} c{row.concurrency}: {row.throughput:.1f}/s, "
                f"p95 {row.p95_ms:.1f} ms" + ("" if stable else " (loose stability)"))
        lines = level_csv.read_text().splitlines()
        merged += lines if not merged else lines[1:]
    if merged:
        context.csv_dir.mkdir(parents=True, exist_ok=True)
        (context.csv_dir / f"{variant}-{model}.csv").write_text("\n".join(merged) + "\n")
